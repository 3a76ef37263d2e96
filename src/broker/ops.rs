//! What a shard does for the partitions it owns, and the controller's topic and dynamic
//! config operations.
//!
//! These functions are called for local partitions directly and for remote ones through the
//! mesh; their inputs and outputs are plain `Send` data, free of protocol versions.

use std::collections::BTreeMap;
use std::rc::Rc;

use std::time::Duration;

use bytes::BytesMut;

use super::metadata::{self, ConfigTable, TopicRecord};
use super::shard::{Shard, TopicPartition};
use crate::cluster::controller::assign;
use crate::cluster::state::{Applied, ClusterState, MetadataRecord, TopicState};
use crate::cluster::wire::{ControllerAnswer, ControllerCall};
use crate::config::{
    self, BrokerConfig, GroupConfig, TimestampType, TopicCompression, TopicConfig,
};
use crate::protocol::batch::{self, BatchHeader};
use crate::protocol::error_code as code;
use crate::protocol::recompress;
use crate::runtime;
use crate::storage::{Chunk, LogError};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Produce

/// A produce wait with no limit of its own (acks=1, or a timeout the client left out).
pub const PRODUCE_WAIT_UNBOUNDED: Duration = Duration::from_secs(365 * 24 * 3600);

pub struct ProduceBatch {
    pub topic: String,
    pub partitions: Vec<(i32, Option<BytesMut>)>,
    pub acks: i16,
    /// The request's `timeout_ms`: how long an acknowledgement may wait for durability (and,
    /// with replication, for the replicas) before it is answered REQUEST_TIMED_OUT.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ProduceResult {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// KIP-467: the records that made the batch fail, by index in the record set, and why.
    pub record_errors: Vec<(i32, String)>,
}

impl ProduceResult {
    /// A batch the client got wrong: logged at debug level (it is the client's error, not the
    /// broker's) and answered with `error_code` and the reason.
    fn refused(
        topic: &str,
        partition: i32,
        error_code: i16,
        reason: &dyn std::fmt::Display,
    ) -> Self {
        tracing::debug!(topic, partition, error = %reason, "produce refused");
        ProduceResult::error(topic, partition, error_code, Some(reason.to_string()))
    }

    pub fn error(topic: &str, partition: i32, error_code: i16, message: Option<String>) -> Self {
        ProduceResult {
            topic: topic.to_owned(),
            partition,
            error_code,
            message,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            record_errors: Vec::new(),
        }
    }
}

/// Validates and appends every partition's records now (in call order), then returns a future
/// that resolves once the appended bytes are durable as `acks` requires.
pub fn produce_local(
    shard: &Rc<Shard>,
    batch: ProduceBatch,
) -> impl std::future::Future<Output = Vec<ProduceResult>> + 'static {
    let now = now_ms();
    let mut results = Vec::with_capacity(batch.partitions.len());
    let mut waits = Vec::new();
    for (partition, records) in batch.partitions {
        let Some(log) = shard.log(&batch.topic, partition) else {
            results.push(ProduceResult::error(
                &batch.topic,
                partition,
                code::UNKNOWN_TOPIC_OR_PARTITION,
                None,
            ));
            continue;
        };
        let Some(records) = records else {
            results.push(ProduceResult::error(
                &batch.topic,
                partition,
                code::INVALID_RECORD,
                Some("null record set".into()),
            ));
            continue;
        };
        let config = log.config();
        let (records, headers) = match stored_records(&config, records, now) {
            Ok(stored) => stored,
            Err(refusal) => {
                results.push(refusal.into_result(&batch.topic, partition));
                continue;
            }
        };
        let appended_bytes = records.len() as u64;
        match log.append(records, &headers, now) {
            Ok(info) => {
                if !info.duplicate {
                    let records: u64 = headers.iter().map(|h| h.record_count.max(0) as u64).sum();
                    shard.metrics.produce_records.add(records);
                    shard.metrics.produce_bytes.add(appended_bytes);
                }
                if batch.acks != 0 {
                    waits.push((results.len(), log.wait_durable(info.last_offset + 1)));
                }
                results.push(ProduceResult {
                    topic: batch.topic.clone(),
                    partition,
                    error_code: code::NONE,
                    message: None,
                    base_offset: info.base_offset,
                    log_append_time_ms: info.log_append_time_ms,
                    log_start_offset: info.log_start_offset,
                    record_errors: Vec::new(),
                });
            }
            Err(LogError::Sequence(e)) => results.push(ProduceResult::refused(
                &batch.topic,
                partition,
                e.kafka_code(),
                &e,
            )),
            Err(e) => results.push(ProduceResult::error(
                &batch.topic,
                partition,
                code::KAFKA_STORAGE_ERROR,
                Some(e.to_string()),
            )),
        }
    }
    let timeout = batch.timeout;
    async move {
        let deadline = std::time::Instant::now() + timeout;
        for (index, wait) in waits {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let result = &mut results[index];
            match runtime::timeout(left, wait).await {
                Some(Ok(())) => {}
                Some(Err(reason)) => {
                    result.error_code = code::KAFKA_STORAGE_ERROR;
                    result.message = Some(reason);
                }
                // As Kafka: the records may still become durable; the client retries (an
                // idempotent producer's retry is recognised as a duplicate).
                None => {
                    result.error_code = code::REQUEST_TIMED_OUT;
                    result.message = Some(format!(
                        "not durable within the request's timeout of {} ms",
                        timeout.as_millis()
                    ));
                }
            }
        }
        results
    }
}

/// Why a produced record set is not appended.
enum Refusal {
    Batch(batch::BatchError),
    /// Records without a key on a compacted topic, by index in the set (KIP-467).
    Keyless(Vec<i32>),
    Recompress(recompress::RecompressError),
}

impl Refusal {
    fn into_result(self, topic: &str, partition: i32) -> ProduceResult {
        match self {
            Refusal::Batch(e) => ProduceResult::refused(topic, partition, e.kafka_code(), &e),
            Refusal::Recompress(e) => ProduceResult::refused(topic, partition, e.kafka_code(), &e),
            Refusal::Keyless(indexes) => {
                let mut refused = ProduceResult::refused(
                    topic,
                    partition,
                    code::INVALID_RECORD,
                    &format_args!(
                        "{} of the records have no key, which a compacted topic requires",
                        indexes.len()
                    ),
                );
                let reason = format!(
                    "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                );
                refused.record_errors = indexes.into_iter().map(|i| (i, reason.clone())).collect();
                refused
            }
        }
    }
}

/// Checks a produced record set against the topic's rules (the batches themselves, a key on
/// every record of a compacted topic, the CreateTime window) and gives it in the form the
/// topic stores.
fn stored_records(
    config: &TopicConfig,
    records: BytesMut,
    now: i64,
) -> Result<(BytesMut, Vec<BatchHeader>), Refusal> {
    let headers = batch::validate_record_set(&records, config.max_message_bytes as usize)
        .map_err(Refusal::Batch)?;
    if config.cleanup_policy.compact {
        let keyless = batch::keyless_records(&records, &headers).map_err(Refusal::Batch)?;
        if !keyless.is_empty() {
            return Err(Refusal::Keyless(keyless));
        }
    }
    if config.timestamp_type == TimestampType::CreateTime {
        let before = config.timestamp_before_window_ms();
        let after = config.timestamp_after_window_ms();
        batch::check_timestamps(&headers, now, before, after).map_err(Refusal::Batch)?;
    }
    stored_form(config, records, headers).map_err(Refusal::Recompress)
}

/// The record set as the topic stores it: as produced under `compression.type=producer` (or
/// when every batch already has the topic's codec), else recompressed into that codec.
fn stored_form(
    config: &TopicConfig,
    records: BytesMut,
    headers: Vec<BatchHeader>,
) -> Result<(BytesMut, Vec<BatchHeader>), recompress::RecompressError> {
    let Some(codec) = config.compression.attribute() else {
        return Ok((records, headers));
    };
    let level = match config.compression {
        TopicCompression::Gzip => config.compression_gzip_level,
        TopicCompression::Lz4 => config.compression_lz4_level,
        TopicCompression::Zstd => config.compression_zstd_level,
        _ => 0,
    };
    let target = recompress::Target { codec, level };
    if !recompress::needed(&headers, target) {
        return Ok((records, headers));
    }
    recompress::recompress(
        &records,
        &headers,
        target,
        config.max_message_bytes as usize,
    )
}

// ---------------------------------------------------------------------------------------------
// Fetch

#[derive(Debug, Clone)]
pub struct FetchItem {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
    pub current_leader_epoch: i32,
}

pub struct FetchResult<R> {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Vec<R>,
    pub bytes: usize,
}

impl<R> FetchResult<R> {
    pub fn map_records<S>(self, f: impl FnMut(R) -> S) -> FetchResult<S> {
        FetchResult {
            topic: self.topic,
            partition: self.partition,
            error_code: self.error_code,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            records: self.records.into_iter().map(f).collect(),
            bytes: self.bytes,
        }
    }

    fn error(item: &FetchItem, error_code: i16) -> Self {
        FetchResult {
            topic: item.topic.clone(),
            partition: item.partition,
            error_code,
            high_watermark: -1,
            log_start_offset: -1,
            records: Vec::new(),
            bytes: 0,
        }
    }
}

/// Reads `items` in order under Kafka's response limit (`ReplicaManager.readFromLog`): each
/// partition gets at most `min(its max_bytes, what is left of response_max_bytes)`, and only
/// until the first partition that returns data may a batch larger than that be returned
/// whole (so a fetch always makes progress). A request split over shards applies this on each
/// shard over its own partitions, then again over the merged results in request order
/// (`api::fetch`), which only ever removes whole batches: what a shard read is a superset of
/// what the merge keeps.
pub async fn fetch_local(
    shard: &Rc<Shard>,
    items: Vec<FetchItem>,
    response_max_bytes: usize,
) -> Vec<FetchResult<Chunk>> {
    let mut results = Vec::with_capacity(items.len());
    let mut budget = ResponseBudget::new(response_max_bytes);
    for item in items {
        let Some(log) = shard.log(&item.topic, item.partition) else {
            results.push(FetchResult::error(&item, code::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        let epoch = log.leader_epoch();
        if item.current_leader_epoch >= 0 && item.current_leader_epoch != epoch {
            let error = if item.current_leader_epoch > epoch {
                code::UNKNOWN_LEADER_EPOCH
            } else {
                code::FENCED_LEADER_EPOCH
            };
            results.push(FetchResult::error(&item, error));
            continue;
        }
        let limit = budget.partition_limit(item.max_bytes);
        // With the budget spent, only the offset check and the partition's offsets are wanted:
        // an upper bound at the fetch offset reads nothing.
        let upper_bound = (limit == 0 && !budget.min_one).then_some(item.offset);
        match log.read(item.offset, limit, upper_bound).await {
            Ok(out) => {
                let (records, bytes) = keep_batches(out.chunks, limit, budget.min_one);
                budget.spend(bytes);
                results.push(FetchResult {
                    topic: item.topic,
                    partition: item.partition,
                    error_code: code::NONE,
                    high_watermark: out.high_watermark,
                    log_start_offset: out.log_start_offset,
                    records,
                    bytes,
                })
            }
            Err(LogError::OffsetOutOfRange { start, .. }) => {
                let mut result = FetchResult::error(&item, code::OFFSET_OUT_OF_RANGE);
                result.high_watermark = log.high_watermark();
                result.log_start_offset = start;
                results.push(result);
            }
            Err(e) => {
                tracing::error!(topic = %item.topic, partition = item.partition, error = %e, "read failed");
                results.push(FetchResult::error(&item, code::KAFKA_STORAGE_ERROR));
            }
        }
    }
    results
}

/// What is left of a fetch response's `max_bytes`, walked in response order.
#[derive(Debug, Clone, Copy)]
pub struct ResponseBudget {
    remaining: usize,
    /// True until a partition has returned data: that partition's first batch is returned
    /// whole even when it is larger than the limits (Kafka's `minOneMessage`).
    pub min_one: bool,
}

impl ResponseBudget {
    pub fn new(response_max_bytes: usize) -> Self {
        ResponseBudget {
            remaining: response_max_bytes,
            min_one: true,
        }
    }

    /// The bytes the next partition may return.
    pub fn partition_limit(&self, partition_max_bytes: usize) -> usize {
        partition_max_bytes.min(self.remaining)
    }

    pub fn spend(&mut self, bytes: usize) {
        if bytes > 0 {
            self.min_one = false;
        }
        self.remaining = self.remaining.saturating_sub(bytes);
    }
}

/// The leading whole batches of `records` that fit in `limit` bytes (with `min_one`, the first
/// batch even if it alone is larger), and their size. Every chunk starts at a batch boundary
/// and holds whole batches, as `PartitionLog::read` returns them.
pub fn keep_batches(records: Vec<Chunk>, limit: usize, min_one: bool) -> (Vec<Chunk>, usize) {
    let mut kept = Vec::with_capacity(records.len());
    let mut total = 0usize;
    for chunk in records {
        let data = chunk.as_ref();
        let mut cut = 0usize;
        let mut full = true;
        while cut < data.len() {
            let size = stored_batch_size(&data[cut..]);
            let first = min_one && total == 0;
            if total + size > limit && !first {
                full = false;
                break;
            }
            cut += size;
            total += size;
        }
        if full {
            kept.push(chunk);
            continue;
        }
        if let Some(prefix) = chunk.prefix(cut) {
            kept.push(prefix);
        }
        break;
    }
    (kept, total)
}

/// The size of the stored batch at the start of `data`, from its length field. The data was
/// checked when it was read; a length that does not fit is taken as the rest of the buffer.
fn stored_batch_size(data: &[u8]) -> usize {
    let declared = data
        .get(8..batch::LOG_OVERHEAD_BYTES)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_be_bytes)
        .and_then(|length| usize::try_from(length).ok())
        .map(|length| length + batch::LOG_OVERHEAD_BYTES);
    match declared {
        Some(size) if size > batch::LOG_OVERHEAD_BYTES && size <= data.len() => size,
        _ => data.len(),
    }
}

/// Waits until one of the partitions has data at or past its offset, or `timeout` passes.
pub async fn wait_for_data_local(
    shard: &Rc<Shard>,
    items: &[(TopicPartition, i64)],
    timeout: Duration,
) {
    let mut waits = Vec::new();
    for ((topic, partition), offset) in items {
        if let Some(log) = shard.log(topic, *partition) {
            match log.wait_for_data(*offset) {
                None => return,
                Some(rx) => waits.push(rx),
            }
        }
    }
    if waits.is_empty() {
        runtime::sleep(timeout).await;
        return;
    }
    let any = futures::future::select_all(waits);
    let _ = runtime::timeout(timeout, any).await;
}

// ---------------------------------------------------------------------------------------------
// ListOffsets

pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;

#[derive(Debug, Clone)]
pub struct ListOffsetsItem {
    pub topic: String,
    pub partition: i32,
    pub timestamp: i64,
    pub current_leader_epoch: i32,
}

#[derive(Debug, Clone)]
pub struct ListOffsetsResult {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}

pub async fn list_offsets_local(
    shard: &Rc<Shard>,
    items: Vec<ListOffsetsItem>,
) -> Vec<ListOffsetsResult> {
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let mut result = ListOffsetsResult {
            topic: item.topic.clone(),
            partition: item.partition,
            error_code: code::NONE,
            timestamp: -1,
            offset: -1,
            leader_epoch: -1,
        };
        let Some(log) = shard.log(&item.topic, item.partition) else {
            result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
            results.push(result);
            continue;
        };
        let epoch = log.leader_epoch();
        if item.current_leader_epoch >= 0 && item.current_leader_epoch != epoch {
            result.error_code = if item.current_leader_epoch > epoch {
                code::UNKNOWN_LEADER_EPOCH
            } else {
                code::FENCED_LEADER_EPOCH
            };
            results.push(result);
            continue;
        }
        result.leader_epoch = epoch;
        match item.timestamp {
            LATEST_TIMESTAMP => result.offset = log.high_watermark(),
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => result.offset = log.log_start_offset(),
            MAX_TIMESTAMP => {
                if let Some((offset, timestamp)) = log.max_timestamp() {
                    result.offset = offset;
                    result.timestamp = timestamp;
                }
            }
            timestamp if timestamp >= 0 => match log.offset_for_timestamp(timestamp).await {
                Ok(Some((offset, found))) => {
                    result.offset = offset;
                    result.timestamp = found;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "offset for timestamp failed");
                    result.error_code = code::KAFKA_STORAGE_ERROR;
                }
            },
            _ => result.error_code = code::INVALID_REQUEST,
        }
        results.push(result);
    }
    results
}

// ---------------------------------------------------------------------------------------------
// Controller operations (run on shard 0)

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1: the broker default.
    pub partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ConfigChange {
    /// AlterConfigs: the given set replaces all overrides.
    Replace(Vec<(String, String)>),
    /// IncrementalAlterConfigs: (key, op, value); op 0 set, 1 delete, 2 append, 3 subtract.
    Incremental(Vec<(String, i8, Option<String>)>),
}

/// A resource whose configs live in the controller's config table rather than on a topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DynamicResource {
    /// A broker id, or the empty name for the cluster-wide default.
    Broker(String),
    /// A KIP-848 group id.
    Group(String),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ControlRequest {
    CreateTopics {
        topics: Vec<CreateTopicSpec>,
        validate_only: bool,
    },
    DeleteTopics(Vec<String>),
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    AlterConfigs {
        topics: Vec<(String, ConfigChange)>,
        validate_only: bool,
    },
    /// Broker and group configs; answered with one outcome per resource, in request order.
    AlterDynamicConfigs {
        resources: Vec<(DynamicResource, ConfigChange)>,
        validate_only: bool,
    },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ControlOutcome {
    pub name: String,
    pub error_code: i16,
    pub message: Option<String>,
    pub topic_id: [u8; 16],
    pub partitions: i32,
    pub replication_factor: i16,
}

impl ControlOutcome {
    fn error(name: &str, error_code: i16, message: impl Into<String>) -> Self {
        ControlOutcome {
            name: name.to_owned(),
            error_code,
            message: Some(message.into()),
            topic_id: [0; 16],
            partitions: -1,
            replication_factor: -1,
        }
    }

    /// A change to a resource that is not a topic.
    fn done(name: &str) -> Self {
        ControlOutcome {
            name: name.to_owned(),
            error_code: code::NONE,
            message: None,
            topic_id: [0; 16],
            partitions: -1,
            replication_factor: -1,
        }
    }

    fn ok(record: &TopicRecord) -> Self {
        ControlOutcome {
            name: record.name.clone(),
            error_code: code::NONE,
            message: None,
            topic_id: record.id,
            partitions: record.partitions as i32,
            replication_factor: record.replication_factor,
        }
    }
}

pub type ControlReply = Vec<ControlOutcome>;

/// Partitions a topic may have: a bound so one request cannot make a shard open millions of files.
pub const TOPIC_PARTITIONS_MAX: i32 = 100_000;

/// Serves a controller request on shard 0: here when this node is the active controller,
/// else forwarded to it (any broker takes topic and config changes, as Kafka's do).
pub async fn control(shard: &Rc<Shard>, request: ControlRequest) -> ControlReply {
    let Some(node) = shard.cluster.get().cloned() else {
        return refuse_all(
            &request,
            code::NOT_CONTROLLER,
            "controller requests go to shard 0",
        );
    };
    if node.leader() == Some(node.me) {
        return control_as_controller(shard, &node, request).await.0;
    }
    match node
        .call_controller(ControllerCall::Control(request.clone()))
        .await
    {
        ControllerAnswer::Control(outcomes, index) => {
            // Answer once this broker sees the change too, so the client's next request here
            // finds it (bounded: the change is committed whatever happens here).
            let _ = runtime::timeout(Duration::from_secs(5), node.wait_published(index)).await;
            outcomes
        }
        ControllerAnswer::NotController { .. } => refuse_all(
            &request,
            code::NOT_CONTROLLER,
            "no active controller: the controller quorum has no leader",
        ),
        other => refuse_all(
            &request,
            code::REQUEST_TIMED_OUT,
            &format!("the controller did not answer: {other:?}"),
        ),
    }
}

/// The resource names a request is about, in request order.
fn request_names(request: &ControlRequest) -> Vec<String> {
    match request {
        ControlRequest::CreateTopics { topics, .. } => {
            topics.iter().map(|t| t.name.clone()).collect()
        }
        ControlRequest::DeleteTopics(names) => names.clone(),
        ControlRequest::CreatePartitions { topics, .. } => {
            topics.iter().map(|(name, _)| name.clone()).collect()
        }
        ControlRequest::AlterConfigs { topics, .. } => {
            topics.iter().map(|(name, _)| name.clone()).collect()
        }
        ControlRequest::AlterDynamicConfigs { resources, .. } => resources
            .iter()
            .map(|(resource, _)| match resource {
                DynamicResource::Broker(name) | DynamicResource::Group(name) => name.clone(),
            })
            .collect(),
    }
}

fn refuse_all(request: &ControlRequest, error_code: i16, message: &str) -> ControlReply {
    request_names(request)
        .iter()
        .map(|name| ControlOutcome::error(name, error_code, message))
        .collect()
}

/// Validates a change against the applied cluster state, proposes its records to the quorum
/// and answers once they are committed and applied on this broker's shards.
pub async fn control_as_controller(
    shard: &Rc<Shard>,
    node: &Rc<crate::cluster::Node>,
    request: ControlRequest,
) -> (ControlReply, u64) {
    let _permit = node.control_lock.acquire_permit(1).await;
    if !node.is_leader() {
        let refused = refuse_all(
            &request,
            code::NOT_CONTROLLER,
            "this broker is not the active controller",
        );
        return (refused, 0);
    }
    let state = node.state();
    let image = shard.image();
    let mut table = metadata::TopicTable {
        version: state.applied_index,
        topics: state.topics.values().map(|t| t.record.clone()).collect(),
    };
    let mut configs = state.configs.clone();
    let config = &*image.broker;
    let mut outcomes = Vec::new();
    // Each record with the outcome it answers for (None: several, as SetConfigs).
    let mut records: Vec<(MetadataRecord, Option<usize>)> = Vec::new();
    let mut configs_changed = false;
    let mut dry_run = false;
    match request {
        ControlRequest::CreateTopics {
            topics,
            validate_only,
        } => {
            dry_run = validate_only;
            for spec in topics {
                let mut outcome = create_topic(&mut table, spec, config);
                if outcome.error_code == code::NONE {
                    let record = table.topics.last().cloned().expect("created above");
                    match assign(
                        &state,
                        &record.name,
                        0,
                        record.partitions,
                        record.replication_factor,
                    ) {
                        Ok(partitions) => records.push((
                            MetadataRecord::CreateTopic(TopicState { record, partitions }),
                            Some(outcomes.len()),
                        )),
                        Err(e) => {
                            table.topics.pop();
                            outcome = ControlOutcome::error(
                                &outcome.name,
                                code::INVALID_REPLICATION_FACTOR,
                                e,
                            );
                        }
                    }
                }
                outcomes.push(outcome);
            }
        }
        ControlRequest::DeleteTopics(names) => {
            for name in names {
                if !config.delete_topic_enable {
                    outcomes.push(ControlOutcome::error(
                        &name,
                        code::TOPIC_DELETION_DISABLED,
                        "delete.topic.enable is false",
                    ));
                    continue;
                }
                if name == crate::broker::group::OFFSETS_TOPIC {
                    outcomes.push(ControlOutcome::error(
                        &name,
                        code::INVALID_REQUEST,
                        "an internal topic cannot be deleted",
                    ));
                    continue;
                }
                match table.topics.iter().position(|t| t.name == name) {
                    Some(index) => {
                        let record = table.topics.remove(index);
                        records.push((
                            MetadataRecord::DeleteTopic {
                                name: record.name.clone(),
                                id: record.id,
                            },
                            Some(outcomes.len()),
                        ));
                        outcomes.push(ControlOutcome::ok(&record));
                    }
                    None => outcomes.push(ControlOutcome::error(
                        &name,
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        "no such topic",
                    )),
                }
            }
        }
        ControlRequest::CreatePartitions {
            topics,
            validate_only,
        } => {
            dry_run = validate_only;
            for (name, count) in topics {
                let Some(record) = table.topics.iter_mut().find(|t| t.name == name) else {
                    outcomes.push(ControlOutcome::error(
                        &name,
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        "no such topic",
                    ));
                    continue;
                };
                if count <= record.partitions as i32 || count > TOPIC_PARTITIONS_MAX {
                    outcomes.push(ControlOutcome::error(
                        &name,
                        code::INVALID_PARTITIONS,
                        format!(
                            "topic has {} partitions; the new count must be larger and at most {TOPIC_PARTITIONS_MAX}",
                            record.partitions
                        ),
                    ));
                    continue;
                }
                let added = match assign(
                    &state,
                    &name,
                    record.partitions,
                    count as u32 - record.partitions,
                    record.replication_factor,
                ) {
                    Ok(added) => added,
                    Err(e) => {
                        outcomes.push(ControlOutcome::error(
                            &name,
                            code::INVALID_REPLICATION_FACTOR,
                            e,
                        ));
                        continue;
                    }
                };
                record.partitions = count as u32;
                records.push((
                    MetadataRecord::AddPartitions {
                        name: name.clone(),
                        partitions: added,
                    },
                    Some(outcomes.len()),
                ));
                outcomes.push(ControlOutcome::ok(record));
            }
        }
        ControlRequest::AlterConfigs {
            topics,
            validate_only,
        } => {
            dry_run = validate_only;
            for (name, change) in topics {
                let Some(record) = table.topics.iter_mut().find(|t| t.name == name) else {
                    outcomes.push(ControlOutcome::error(
                        &name,
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        "no such topic",
                    ));
                    continue;
                };
                let mut overrides: BTreeMap<String, String> =
                    record.overrides.iter().cloned().collect();
                match change {
                    ConfigChange::Replace(set) => overrides = set.into_iter().collect(),
                    ConfigChange::Incremental(ops) => {
                        for (key, op, value) in ops {
                            match (op, value) {
                                (0, Some(v)) => {
                                    overrides.insert(key, v);
                                }
                                (1, _) => {
                                    overrides.remove(&key);
                                }
                                (2, Some(v)) | (3, Some(v)) if key == "cleanup.policy" => {
                                    let current = overrides
                                        .get(&key)
                                        .cloned()
                                        .unwrap_or_else(|| "delete".into());
                                    let mut items: Vec<String> =
                                        current.split(',').map(|s| s.trim().to_owned()).collect();
                                    if op == 2 {
                                        if !items.contains(&v) {
                                            items.push(v);
                                        }
                                    } else {
                                        items.retain(|i| *i != v);
                                    }
                                    overrides.insert(key, items.join(","));
                                }
                                _ => {
                                    outcomes.push(ControlOutcome::error(
                                        &name,
                                        code::INVALID_CONFIG,
                                        format!("operation {op} is not valid for {key}"),
                                    ));
                                    break;
                                }
                            }
                        }
                    }
                }
                if outcomes
                    .last()
                    .is_some_and(|o| o.name == name && o.error_code != 0)
                {
                    continue;
                }
                if let Err(e) = TopicConfig::with_overrides(
                    &config.topic_defaults,
                    overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ) {
                    outcomes.push(ControlOutcome::error(
                        &name,
                        code::INVALID_CONFIG,
                        e.to_string(),
                    ));
                    continue;
                }
                record.overrides = overrides.into_iter().collect();
                records.push((
                    MetadataRecord::SetTopicConfig {
                        name: name.clone(),
                        overrides: record.overrides.clone(),
                    },
                    Some(outcomes.len()),
                ));
                outcomes.push(ControlOutcome::ok(record));
            }
        }
        ControlRequest::AlterDynamicConfigs {
            resources,
            validate_only,
        } => {
            dry_run = validate_only;
            for (resource, change) in resources {
                let outcome = match &resource {
                    DynamicResource::Broker(name) => {
                        alter_broker_configs(&mut configs, &shard.config, &state, name, change)
                    }
                    DynamicResource::Group(name) => {
                        alter_group_configs(&mut configs, config, name, change)
                    }
                };
                configs_changed |= outcome.error_code == code::NONE;
                outcomes.push(outcome);
            }
        }
    }
    if configs_changed {
        configs.version += 1;
        records.push((MetadataRecord::SetConfigs(configs), None));
    }
    if records.is_empty() || dry_run {
        return (outcomes, 0);
    }
    let mut index = 0;
    let (records, answers_for): (Vec<MetadataRecord>, Vec<Option<usize>>) =
        records.into_iter().unzip();
    match node.propose_and_publish(records).await {
        Ok(committed) => {
            index = committed.index;
            for (answer, at) in committed.answers.iter().zip(answers_for) {
                if let (Applied::Refused(why), Some(at)) = (answer, at) {
                    let name = outcomes[at].name.clone();
                    outcomes[at] = ControlOutcome::error(&name, code::INVALID_REQUEST, why.clone());
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "a metadata change did not commit");
            for outcome in outcomes.iter_mut().filter(|o| o.error_code == 0) {
                outcome.error_code = code::NOT_CONTROLLER;
                outcome.message = Some(e.clone());
            }
        }
    }
    (outcomes, index)
}

fn create_topic(
    table: &mut metadata::TopicTable,
    spec: CreateTopicSpec,
    config: &BrokerConfig,
) -> ControlOutcome {
    let name = spec.name.clone();
    if let Err(e) = metadata::validate_topic_name(&name) {
        return ControlOutcome::error(&name, code::INVALID_TOPIC_EXCEPTION, e);
    }
    if table.topics.iter().any(|t| t.name == name) {
        return ControlOutcome::error(
            &name,
            code::TOPIC_ALREADY_EXISTS,
            format!("topic '{name}' already exists"),
        );
    }
    let partitions = if spec.partitions == -1 {
        config.num_partitions
    } else {
        spec.partitions
    };
    if partitions <= 0 || partitions > TOPIC_PARTITIONS_MAX {
        return ControlOutcome::error(
            &name,
            code::INVALID_PARTITIONS,
            format!("partition count {partitions} must be between 1 and {TOPIC_PARTITIONS_MAX}"),
        );
    }
    let replication_factor = if spec.replication_factor == -1 {
        config.default_replication_factor
    } else {
        spec.replication_factor
    };
    if replication_factor < 1 {
        return ControlOutcome::error(
            &name,
            code::INVALID_REPLICATION_FACTOR,
            format!("replication factor {replication_factor} must be at least 1"),
        );
    }
    if replication_factor > 1 {
        return ControlOutcome::error(
            &name,
            code::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {replication_factor}: this broker keeps one replica per partition (replication is not served yet)"
            ),
        );
    }
    if let Err(e) = TopicConfig::with_overrides(
        &config.topic_defaults,
        spec.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        return ControlOutcome::error(&name, code::INVALID_CONFIG, e.to_string());
    }
    let record = TopicRecord {
        name,
        id: *uuid::Uuid::new_v4().as_bytes(),
        partitions: partitions as u32,
        replication_factor,
        overrides: spec.configs,
    };
    let outcome = ControlOutcome::ok(&record);
    table.topics.push(record);
    outcome
}

/// A BROKER resource's change, as Kafka's `ConfigAdminManager` and controller take it: the
/// resource names this broker (its id) or the cluster default (empty); the resulting set is
/// checked key by key, then as the effective config it would make.
fn alter_broker_configs(
    configs: &mut ConfigTable,
    static_config: &BrokerConfig,
    state: &ClusterState,
    name: &str,
    change: ConfigChange,
) -> ControlOutcome {
    let broker_id = if name.is_empty() {
        None
    } else {
        match name.parse::<i32>() {
            Ok(id) if id == static_config.broker_id || state.brokers.contains_key(&id) => Some(id),
            _ => {
                return ControlOutcome::error(
                    name,
                    code::INVALID_REQUEST,
                    format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        static_config.broker_id
                    ),
                )
            }
        }
    };
    let current = match broker_id {
        Some(id) => configs.broker(id),
        None => configs.broker_default(),
    };
    let list_base = |key: &str| {
        config::broker_key(key)
            .filter(config::BrokerKeyInfo::is_list)
            .map(|info| info.default_value().map(str::to_owned))
    };
    let updated = match apply_change(current, change, list_base) {
        Ok(updated) => updated,
        Err((error_code, message)) => return ControlOutcome::error(name, error_code, message),
    };
    if let Err(e) = config::check_broker_configs(&updated, broker_id.is_some()) {
        return ControlOutcome::error(name, e.kafka_code(), e.to_string());
    }
    let (default, own) = match broker_id {
        Some(_) => (configs.broker_default(), updated.clone()),
        None => (updated.clone(), configs.broker(static_config.broker_id)),
    };
    if let Err(e) = static_config.with_dynamic(&default, &own) {
        return ControlOutcome::error(name, code::INVALID_REQUEST, e.to_string());
    }
    match broker_id {
        Some(id) => configs.set_broker(id, updated),
        None => configs.set_broker_default(updated),
    }
    ControlOutcome::done(name)
}

/// A GROUP resource's change: the group need not exist (as in Kafka); the resulting set must
/// pass `GroupConfig`'s checks against the broker's bounds.
fn alter_group_configs(
    configs: &mut ConfigTable,
    broker: &BrokerConfig,
    name: &str,
    change: ConfigChange,
) -> ControlOutcome {
    if name.is_empty() {
        return ControlOutcome::error(name, code::INVALID_REQUEST, "the group id is empty");
    }
    let updated = match apply_change(configs.group(name), change, |_| None) {
        Ok(updated) => updated,
        Err((error_code, message)) => return ControlOutcome::error(name, error_code, message),
    };
    if let Err(e) = GroupConfig::with_overrides(broker, &updated) {
        return ControlOutcome::error(name, code::INVALID_CONFIG, e.to_string());
    }
    configs.set_group(name, updated);
    ControlOutcome::done(name)
}

/// Applies an AlterConfigs set (replacing every config) or IncrementalAlterConfigs operations
/// to `current`. `list_base(key)` is `None` for a key that is not a list, else the value an
/// APPEND or SUBTRACT starts from when the resource has none (the key's default), as in
/// Kafka's `prepareIncrementalConfigs`.
fn apply_change(
    mut current: BTreeMap<String, String>,
    change: ConfigChange,
    list_base: impl Fn(&str) -> Option<Option<String>>,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let ops = match change {
        ConfigChange::Replace(set) => return Ok(set.into_iter().collect()),
        ConfigChange::Incremental(ops) => ops,
    };
    let mut seen = std::collections::BTreeSet::new();
    if let Some((key, _, _)) = ops.iter().find(|(key, _, _)| !seen.insert(key.as_str())) {
        return Err((
            code::INVALID_CONFIG,
            format!("Error due to duplicate config keys: {key}"),
        ));
    }
    for (key, op, value) in ops {
        match (op, value) {
            (0, Some(value)) => {
                current.insert(key, value);
            }
            (1, _) => {
                current.remove(&key);
            }
            (2 | 3, Some(value)) => {
                let Some(base) = list_base(&key) else {
                    let verb = if op == 2 { "append" } else { "subtract" };
                    return Err((
                        code::INVALID_CONFIG,
                        format!("Config value {verb} is not allowed for config key: {key}"),
                    ));
                };
                let list = current.get(&key).cloned().or(base).unwrap_or_default();
                let mut items: Vec<String> = split_list(&list);
                let given = split_list(&value);
                if op == 2 {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !given.contains(item));
                }
                current.insert(key, items.join(","));
            }
            (0 | 2 | 3, None) => {
                return Err((
                    code::INVALID_REQUEST,
                    format!("Null value not supported for: {key}"),
                ))
            }
            (other, _) => {
                return Err((
                    code::INVALID_REQUEST,
                    format!("unknown config operation {other} for {key}"),
                ))
            }
        }
    }
    Ok(current)
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// A stored batch of `size` bytes as far as its length field goes.
    fn batch_of(size: usize) -> Vec<u8> {
        let mut data = vec![0u8; size];
        data[8..12].copy_from_slice(&((size - batch::LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
        data
    }

    /// One chunk holding batches of `sizes`, as a disk read returns them.
    fn chunk(sizes: &[usize]) -> Chunk {
        Chunk::Memory(Bytes::from(
            sizes.iter().flat_map(|&s| batch_of(s)).collect::<Vec<u8>>(),
        ))
    }

    fn sizes(chunks: &[Chunk]) -> Vec<usize> {
        chunks.iter().map(|c| c.as_ref().len()).collect()
    }

    #[test]
    fn incremental_operations_follow_kafka() {
        let base = |key: &str| (key == "log.cleanup.policy").then(|| Some("delete".to_owned()));
        let ops = |list: &[(&str, i8, Option<&str>)]| {
            ConfigChange::Incremental(
                list.iter()
                    .map(|(k, op, v)| (k.to_string(), *op, v.map(str::to_owned)))
                    .collect(),
            )
        };
        let set = apply_change(
            BTreeMap::new(),
            ops(&[
                ("background.threads", 0, Some("9")),
                ("log.cleanup.policy", 2, Some("compact")),
            ]),
            base,
        )
        .unwrap();
        assert_eq!(set["background.threads"], "9");
        assert_eq!(set["log.cleanup.policy"], "delete,compact");
        let again = apply_change(
            set.clone(),
            ops(&[("log.cleanup.policy", 2, Some("compact"))]),
            base,
        )
        .unwrap();
        assert_eq!(again["log.cleanup.policy"], "delete,compact");
        let removed = apply_change(
            set,
            ops(&[
                ("background.threads", 1, Some("")),
                ("log.cleanup.policy", 3, Some("compact")),
            ]),
            base,
        )
        .unwrap();
        assert!(!removed.contains_key("background.threads"));
        assert_eq!(removed["log.cleanup.policy"], "delete");

        let refused = |list: &[(&str, i8, Option<&str>)]| {
            apply_change(BTreeMap::new(), ops(list), base)
                .unwrap_err()
                .0
        };
        assert_eq!(
            refused(&[("background.threads", 2, Some("1"))]),
            code::INVALID_CONFIG
        );
        assert_eq!(
            refused(&[("a", 0, Some("1")), ("a", 1, None)]),
            code::INVALID_CONFIG
        );
        assert_eq!(refused(&[("a", 0, None)]), code::INVALID_REQUEST);
        assert_eq!(refused(&[("a", 9, Some("1"))]), code::INVALID_REQUEST);
    }

    #[test]
    fn keep_batches_cuts_at_whole_batches_inside_a_chunk() {
        let (kept, bytes) = keep_batches(vec![chunk(&[100, 100, 100])], 250, false);
        assert_eq!((sizes(&kept), bytes), (vec![200], 200));
        let (kept, bytes) = keep_batches(
            vec![chunk(&[100]), chunk(&[100]), chunk(&[100])],
            250,
            false,
        );
        assert_eq!((sizes(&kept), bytes), (vec![100, 100], 200));
        let (kept, bytes) = keep_batches(vec![chunk(&[100, 100])], 1_000, false);
        assert_eq!((sizes(&kept), bytes), (vec![200], 200));
    }

    #[test]
    fn only_the_first_partition_with_data_may_exceed_the_limit() {
        let (kept, bytes) = keep_batches(vec![chunk(&[500, 100])], 100, true);
        assert_eq!(
            (sizes(&kept), bytes),
            (vec![500], 500),
            "first batch whole, no more"
        );
        let (kept, bytes) = keep_batches(vec![chunk(&[500, 100])], 100, false);
        assert_eq!((kept.len(), bytes), (0, 0));
        let (kept, bytes) = keep_batches(vec![chunk(&[500])], 0, true);
        assert_eq!((sizes(&kept), bytes), (vec![500], 500));
    }

    #[test]
    fn the_response_budget_lets_one_first_batch_through_then_holds() {
        let mut budget = ResponseBudget::new(1_000);
        assert_eq!(budget.partition_limit(5_000), 1_000);
        let (_, bytes) = keep_batches(
            vec![chunk(&[900])],
            budget.partition_limit(5_000),
            budget.min_one,
        );
        budget.spend(bytes);
        assert!(!budget.min_one);
        assert_eq!(budget.partition_limit(5_000), 100);
        let (kept, bytes) = keep_batches(
            vec![chunk(&[900])],
            budget.partition_limit(5_000),
            budget.min_one,
        );
        assert_eq!((kept.len(), bytes), (0, 0));
        // An empty partition before the first with data does not spend the exception.
        let mut budget = ResponseBudget::new(10);
        budget.spend(0);
        assert!(budget.min_one);
    }

    #[test]
    fn a_length_field_that_does_not_fit_takes_the_rest_of_the_chunk() {
        let mut data = batch_of(100);
        data[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        let (kept, bytes) = keep_batches(vec![Chunk::Memory(Bytes::from(data))], 10, true);
        assert_eq!((sizes(&kept), bytes), (vec![100], 100));
    }
}

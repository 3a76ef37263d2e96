//! Fetch: reads from the owner shards, long-polls for `min_bytes`, answers with stored buffers.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages as m;

use super::Response;
use crate::broker::ops::{self, FetchItem, FetchResult};
use crate::broker::shard::{Shard, ShardReply, ShardRequest, TopicPartition};
use crate::protocol::error_code as code;
use crate::protocol::fetch as fetch_codec;
use crate::protocol::frame::RequestHeader;
use crate::runtime::ShardId;
use crate::storage::Chunk;

/// Bound on a fetch's `max_wait_ms`, so a bad client cannot park a request for hours.
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;

pub(super) async fn fetch(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    request: m::FetchRequest,
) -> Response {
    let version = header.api_version;
    let image = shard.image();
    let started = Instant::now();
    // Sessions (KIP-227) are optional for a broker: answering session id 0 tells the client
    // to keep sending full requests. An incremental request for a session we never gave out
    // is answered as Kafka does.
    if version >= 7 && request.session_id != 0 {
        if let Some(api) = shard.metrics.api(m::ApiKey::Fetch as i16) {
            api.errors.increment();
        }
        let response = fetch_codec::FetchResponse::<Chunk> {
            throttle_time_ms: 0,
            error_code: code::FETCH_SESSION_ID_NOT_FOUND,
            session_id: 0,
            topics: Vec::new(),
        };
        return Response::Parts(fetch_codec::encode_frame(
            response,
            header.correlation_id,
            version,
        ));
    }
    let read_committed = request.isolation_level == 1;
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let response_max_bytes = if request.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        request.max_bytes as usize
    };
    // Resolve names (v13+ sends topic ids) and split by owner.
    let mut order: Vec<(String, [u8; 16], i32)> = Vec::new();
    let mut unknown: Vec<(String, [u8; 16], i32, i16)> = Vec::new();
    let mut items: Vec<FetchItem> = Vec::new();
    for topic in &request.topics {
        let (name, id) = if version >= 13 {
            let id = *topic.topic_id.as_bytes();
            match image.by_id.get(&id) {
                Some(name) => (name.clone(), id),
                None => {
                    for p in &topic.partitions {
                        unknown.push((String::new(), id, p.partition, code::UNKNOWN_TOPIC_ID));
                    }
                    continue;
                }
            }
        } else {
            let name = topic.topic.0.as_str().to_owned();
            let id = image.topic(&name).map_or([0; 16], |t| t.record.id);
            (name, id)
        };
        for p in &topic.partitions {
            if !image.partition_exists(&name, p.partition) {
                unknown.push((
                    name.clone(),
                    id,
                    p.partition,
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                ));
                continue;
            }
            order.push((name.clone(), id, p.partition));
            items.push(FetchItem {
                topic: name.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
            });
        }
    }
    let results = loop {
        let results = fetch_all(shard, &items).await;
        let total: usize = results.iter().map(|r| r.bytes).sum();
        let any_error = results.iter().any(|r| r.error_code != code::NONE);
        let elapsed = started.elapsed();
        if total >= min_bytes || any_error || elapsed >= max_wait || items.is_empty() {
            break results;
        }
        // Long poll: wait until a partition has data past what we asked for, or time is up.
        let waits: BTreeMap<ShardId, Vec<(TopicPartition, i64)>> =
            items.iter().fold(BTreeMap::new(), |mut acc, item| {
                acc.entry(shard.owner(&item.topic, item.partition))
                    .or_default()
                    .push(((item.topic.clone(), item.partition), item.offset));
                acc
            });
        let remaining = max_wait - elapsed;
        let calls = waits.into_iter().map(|(owner, items)| {
            let shard = shard.clone();
            Box::pin(async move {
                shard
                    .call(
                        owner,
                        ShardRequest::WaitForData {
                            items,
                            timeout: remaining,
                        },
                    )
                    .await
            })
        });
        let _ = futures::future::select_all(calls).await;
        if shard.shutting_down.get() {
            break fetch_all(shard, &items).await;
        }
    };
    // Apply the response-wide byte limit: the first partition with data always gets its first
    // batch, later ones only while the total fits.
    let mut budget = response_max_bytes;
    let mut first = true;
    let mut sent_bytes = 0usize;
    let mut topics: Vec<fetch_codec::FetchTopicResponse<Chunk>> = Vec::new();
    for ((name, id, _), mut result) in order.into_iter().zip(results) {
        if result.bytes > budget && !first {
            result.records.clear();
            result.bytes = 0;
        }
        if result.bytes > 0 {
            first = false;
            budget = budget.saturating_sub(result.bytes);
            sent_bytes += result.bytes;
        }
        let partition = fetch_codec::FetchPartitionResponse {
            partition: result.partition,
            error_code: result.error_code,
            high_watermark: result.high_watermark,
            last_stable_offset: result.high_watermark,
            log_start_offset: result.log_start_offset,
            aborted_transactions: read_committed.then(Vec::new),
            records: result.records,
        };
        push_partition(&mut topics, name, id, partition);
    }
    for (name, id, partition, error) in unknown {
        let partition = fetch_codec::FetchPartitionResponse {
            partition,
            error_code: error,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: None,
            records: Vec::new(),
        };
        push_partition(&mut topics, name, id, partition);
    }
    let metrics = &shard.metrics;
    metrics.fetch_bytes.add(sent_bytes as u64);
    let any_error = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code != code::NONE);
    if any_error {
        if let Some(api) = metrics.api(m::ApiKey::Fetch as i16) {
            api.errors.increment();
        }
    }
    let response = fetch_codec::FetchResponse {
        throttle_time_ms: 0,
        error_code: code::NONE,
        session_id: 0,
        topics,
    };
    Response::Parts(fetch_codec::encode_frame(
        response,
        header.correlation_id,
        version,
    ))
}

pub(super) fn push_partition(
    topics: &mut Vec<fetch_codec::FetchTopicResponse<Chunk>>,
    name: String,
    id: [u8; 16],
    partition: fetch_codec::FetchPartitionResponse<Chunk>,
) {
    match topics.last_mut() {
        Some(last) if last.name == name && last.topic_id == id => last.partitions.push(partition),
        _ => topics.push(fetch_codec::FetchTopicResponse {
            name,
            topic_id: id,
            partitions: vec![partition],
        }),
    }
}

/// Reads every item from its owner shard; results come back in item order.
pub(super) async fn fetch_all(shard: &Rc<Shard>, items: &[FetchItem]) -> Vec<FetchResult<Chunk>> {
    let mut by_shard: BTreeMap<ShardId, Vec<(usize, FetchItem)>> = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        by_shard
            .entry(shard.owner(&item.topic, item.partition))
            .or_default()
            .push((index, item.clone()));
    }
    let mut slots: Vec<Option<FetchResult<Chunk>>> = (0..items.len()).map(|_| None).collect();
    let calls = by_shard.into_iter().map(|(owner, entries)| {
        let shard = shard.clone();
        async move {
            let (indexes, items): (Vec<usize>, Vec<FetchItem>) = entries.into_iter().unzip();
            let results: Vec<FetchResult<Chunk>> = if owner == shard.id {
                ops::fetch_local(&shard, items).await
            } else {
                match shard.call(owner, ShardRequest::Fetch(items.clone())).await {
                    ShardReply::Fetch(results) => results
                        .into_iter()
                        .map(|r| r.map_records(Chunk::Memory))
                        .collect(),
                    _ => items
                        .iter()
                        .map(|i| FetchResult {
                            topic: i.topic.clone(),
                            partition: i.partition,
                            error_code: code::NOT_LEADER_OR_FOLLOWER,
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: Vec::new(),
                            bytes: 0,
                        })
                        .collect(),
                }
            };
            indexes.into_iter().zip(results).collect::<Vec<_>>()
        }
    });
    for batch in futures::future::join_all(calls).await {
        for (index, result) in batch {
            slots[index] = Some(result);
        }
    }
    slots
        .into_iter()
        .map(|s| s.expect("every item answered"))
        .collect()
}

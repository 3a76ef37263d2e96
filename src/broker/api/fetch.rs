//! Fetch: fetch sessions (KIP-227, `broker::fetch_session`), reads from the owner shards
//! within the response's byte budget, long-polls for `min_bytes`, answers with stored buffers.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages as m;

use super::Response;
use crate::broker::fetch_session::{
    Context, FetchParams, PartitionKey, PartitionOutcome, SessionRequest, TopicRef,
    INVALID_SESSION_ID,
};
use crate::broker::ops::{self, FetchItem, FetchResult, ResponseBudget};
use crate::broker::shard::{Shard, ShardReply, ShardRequest, TopicPartition};
use crate::protocol::error_code as code;
use crate::protocol::fetch as fetch_codec;
use crate::protocol::frame::RequestHeader;
use crate::runtime::ShardId;
use crate::storage::Chunk;

/// Bound on a fetch's `max_wait_ms`, so a bad client cannot park a request for hours.
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;

/// How the answer relates to a session, once the reads are done.
enum Answer {
    Sessionless,
    /// Open a session with what is answered.
    Full,
    Incremental {
        session_id: i32,
        epoch: i32,
    },
}

/// One partition to answer, in response order.
struct Target {
    key: PartitionKey,
    params: FetchParams,
    name: String,
    topic_id: [u8; 16],
    /// Set when the partition cannot be read (unknown topic or partition); then it has no
    /// entry among the reads.
    error: Option<i16>,
}

pub(super) async fn fetch(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    request: m::FetchRequest,
) -> Response {
    let version = header.api_version;
    let started = Instant::now();
    let uses_topic_ids = version >= 13;
    let requested = requested_partitions(&request, uses_topic_ids);
    // Before v7 there are no sessions: every request is a sessionless full one.
    let context = if version >= 7 {
        let forgotten = forgotten_partitions(&request, uses_topic_ids);
        let session = SessionRequest {
            session_id: request.session_id,
            epoch: request.session_epoch,
            privileged: request.replica_id.0 >= 0 || request.replica_state.replica_id.0 >= 0,
            uses_topic_ids,
            partitions: &requested,
            forgotten: &forgotten,
        };
        let now = shard.monotonic_ms();
        shard.fetch_sessions.borrow_mut().new_context(session, now)
    } else {
        Context::Sessionless
    };
    let (answer, to_read) = match context {
        Context::Error(error) => return session_error(shard, header, error),
        Context::Sessionless => (Answer::Sessionless, requested),
        Context::Full => (Answer::Full, requested),
        Context::Incremental {
            session_id,
            epoch,
            partitions,
        } => (Answer::Incremental { session_id, epoch }, partitions),
    };
    let read_committed = request.isolation_level == 1;
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let response_max_bytes = if request.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        request.max_bytes as usize
    };
    let (targets, items) = resolve(shard, to_read);
    let results = loop {
        let results = fetch_all(shard, &items, response_max_bytes).await;
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
            break fetch_all(shard, &items, response_max_bytes).await;
        }
    };
    // Each owner kept to the budget over its own partitions; across owners it is applied
    // again here, in response order, dropping whole batches (a partition cut here is read
    // again by the next request, from the same offset).
    let mut budget = ResponseBudget::new(response_max_bytes);
    let mut results = results.into_iter();
    let mut answered: Vec<(Target, fetch_codec::FetchPartitionResponse<Chunk>)> =
        Vec::with_capacity(targets.len());
    let mut sent_bytes = 0usize;
    for target in targets {
        let partition = match target.error {
            Some(error) => fetch_codec::FetchPartitionResponse {
                partition: target.key.partition,
                error_code: error,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                aborted_transactions: None,
                records: Vec::new(),
            },
            None => {
                let Some(result) = results.next() else {
                    // fetch_all answers every item; a missing one is a bug.
                    unreachable!("a read result for every readable partition");
                };
                let limit = budget.partition_limit(target.params.max_bytes.max(0) as usize);
                let (records, bytes) = ops::keep_batches(result.records, limit, budget.min_one);
                budget.spend(bytes);
                sent_bytes += bytes;
                fetch_codec::FetchPartitionResponse {
                    partition: result.partition,
                    error_code: result.error_code,
                    high_watermark: result.high_watermark,
                    last_stable_offset: result.high_watermark,
                    log_start_offset: result.log_start_offset,
                    aborted_transactions: read_committed.then(Vec::new),
                    records,
                }
            }
        };
        answered.push((target, partition));
    }
    let session_id = match answer {
        Answer::Sessionless => INVALID_SESSION_ID,
        Answer::Full => {
            let session: Vec<_> = answered
                .iter()
                .map(|(t, p)| (t.key.clone(), t.params, outcome(p)))
                .collect();
            let now = shard.monotonic_ms();
            let privileged = request.replica_id.0 >= 0 || request.replica_state.replica_id.0 >= 0;
            shard
                .fetch_sessions
                .borrow_mut()
                .create(now, privileged, uses_topic_ids, session)
        }
        Answer::Incremental { session_id, epoch } => {
            let outcomes: Vec<_> = answered
                .iter()
                .map(|(t, p)| (t.key.clone(), outcome(p)))
                .collect();
            let include = shard
                .fetch_sessions
                .borrow_mut()
                .incremental_response(session_id, epoch, &outcomes);
            match include {
                Ok(include) => {
                    let mut include = include.into_iter();
                    answered.retain(|_| include.next().unwrap_or(true));
                    sent_bytes = answered
                        .iter()
                        .flat_map(|(_, p)| &p.records)
                        .map(|r| r.as_ref().len())
                        .sum();
                    session_id
                }
                Err(error) => return session_error(shard, header, error),
            }
        }
    };
    let mut topics: Vec<fetch_codec::FetchTopicResponse<Chunk>> = Vec::new();
    let mut any_error = false;
    for (target, partition) in answered {
        any_error |= partition.error_code != code::NONE;
        push_partition(&mut topics, target.name, target.topic_id, partition);
    }
    let metrics = &shard.metrics;
    metrics.fetch_bytes.add(sent_bytes as u64);
    if any_error {
        if let Some(api) = metrics.api(m::ApiKey::Fetch as i16) {
            api.errors.increment();
        }
    }
    let response = fetch_codec::FetchResponse {
        throttle_time_ms: 0,
        error_code: code::NONE,
        session_id,
        topics,
    };
    Response::Parts(fetch_codec::encode_frame(
        response,
        header.correlation_id,
        version,
    ))
}

/// The request's partitions in request order, named as its version names topics.
fn requested_partitions(
    request: &m::FetchRequest,
    uses_topic_ids: bool,
) -> Vec<(PartitionKey, FetchParams)> {
    let mut partitions = Vec::new();
    for topic in &request.topics {
        let topic_ref = topic_ref(&topic.topic, &topic.topic_id, uses_topic_ids);
        for p in &topic.partitions {
            partitions.push((
                PartitionKey {
                    topic: topic_ref.clone(),
                    partition: p.partition,
                },
                FetchParams {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                },
            ));
        }
    }
    partitions
}

fn forgotten_partitions(request: &m::FetchRequest, uses_topic_ids: bool) -> Vec<PartitionKey> {
    let mut forgotten = Vec::new();
    for topic in &request.forgotten_topics_data {
        let topic_ref = topic_ref(&topic.topic, &topic.topic_id, uses_topic_ids);
        for &partition in &topic.partitions {
            forgotten.push(PartitionKey {
                topic: topic_ref.clone(),
                partition,
            });
        }
    }
    forgotten
}

fn topic_ref(name: &m::TopicName, id: &uuid::Uuid, uses_topic_ids: bool) -> TopicRef {
    if uses_topic_ids {
        TopicRef::Id(*id.as_bytes())
    } else {
        TopicRef::Name(name.0.as_str().to_owned())
    }
}

/// Names and ids for the partitions to answer, and the reads for the ones that exist.
fn resolve(
    shard: &Shard,
    partitions: Vec<(PartitionKey, FetchParams)>,
) -> (Vec<Target>, Vec<FetchItem>) {
    let image = shard.image();
    let mut targets = Vec::with_capacity(partitions.len());
    let mut items = Vec::with_capacity(partitions.len());
    for (key, params) in partitions {
        let (name, topic_id, mut error) = match &key.topic {
            TopicRef::Id(id) => match image.by_id.get(id) {
                Some(name) => (name.clone(), *id, None),
                None => (String::new(), *id, Some(code::UNKNOWN_TOPIC_ID)),
            },
            TopicRef::Name(name) => {
                let id = image.topic(name).map_or([0; 16], |t| t.record.id);
                (name.clone(), id, None)
            }
        };
        if error.is_none() && !image.partition_exists(&name, key.partition) {
            error = Some(code::UNKNOWN_TOPIC_OR_PARTITION);
        }
        if error.is_none() && !image.leads(&name, key.partition) {
            error = Some(code::NOT_LEADER_OR_FOLLOWER);
        }
        if error.is_none() {
            items.push(FetchItem {
                topic: name.clone(),
                partition: key.partition,
                offset: params.fetch_offset,
                max_bytes: params.max_bytes.max(0) as usize,
                current_leader_epoch: params.current_leader_epoch,
            });
        }
        targets.push(Target {
            key,
            params,
            name,
            topic_id,
            error,
        });
    }
    (targets, items)
}

fn outcome(partition: &fetch_codec::FetchPartitionResponse<Chunk>) -> PartitionOutcome {
    PartitionOutcome {
        error_code: partition.error_code,
        high_watermark: partition.high_watermark,
        last_stable_offset: partition.last_stable_offset,
        log_start_offset: partition.log_start_offset,
        has_records: partition.records.iter().any(|r| !r.as_ref().is_empty()),
    }
}

/// A response with a top-level session error and no partitions, as Kafka's
/// `SessionErrorContext` answers.
fn session_error(shard: &Shard, header: &RequestHeader, error: i16) -> Response {
    if let Some(api) = shard.metrics.api(m::ApiKey::Fetch as i16) {
        api.errors.increment();
    }
    let response = fetch_codec::FetchResponse::<Chunk> {
        throttle_time_ms: 0,
        error_code: error,
        session_id: INVALID_SESSION_ID,
        topics: Vec::new(),
    };
    Response::Parts(fetch_codec::encode_frame(
        response,
        header.correlation_id,
        header.api_version,
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

/// Reads every item from its owner shard, each owner keeping to `response_max_bytes` over its
/// own items (in item order); results come back in item order.
pub(super) async fn fetch_all(
    shard: &Rc<Shard>,
    items: &[FetchItem],
    response_max_bytes: usize,
) -> Vec<FetchResult<Chunk>> {
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
                ops::fetch_local(&shard, items, response_max_bytes).await
            } else {
                let request = ShardRequest::Fetch {
                    items: items.clone(),
                    response_max_bytes,
                };
                match shard.call(owner, request).await {
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

//! Request handlers, one function per Kafka API: decode the request, do the work through `ops`
//! (locally or on the owning shard), encode the response for the request's version.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::ops::{self, ControlOutcome, ControlRequest, FetchItem, FetchResult};
use super::shard::{Shard, ShardReply, ShardRequest, TopicPartition};
use crate::protocol::fetch::{self as fetch_codec, Part};
use crate::protocol::frame::RequestHeader;
use crate::protocol::{self, error_code as code, produce as produce_codec};
use crate::runtime::{self, ShardId};
use crate::storage::Chunk;

/// What the connection writes back for one request.
pub enum Response {
    /// acks=0 produce: nothing is sent.
    None,
    Frame(Bytes),
    Parts(Vec<Part<Chunk>>),
    /// The request cannot be answered; the connection is closed after earlier responses.
    Close(String),
}

/// Bound on a fetch's `max_wait_ms`, so a bad client cannot park a request for hours.
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;

fn ready(response: Response) -> runtime::Task<Response> {
    runtime::spawn_task(async move { response })
}

fn encoded<M: Encodable>(key: ApiKey, header: &RequestHeader, body: &M) -> Response {
    match protocol::encode_response(key, header.api_version, header.correlation_id, body) {
        Ok(bytes) => Response::Frame(bytes),
        Err(e) => Response::Close(format!("cannot encode {key:?} response: {e}")),
    }
}

fn decode<M: Decodable>(body: BytesMut, header: &RequestHeader) -> Result<M, String> {
    let mut bytes = body.freeze();
    M::decode(&mut bytes, header.api_version).map_err(|e| {
        format!(
            "malformed request (api key {}, version {}): {e}",
            header.api_key, header.api_version
        )
    })
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Starts serving one request; the returned task resolves to its response.
pub async fn start(
    shard: &Rc<Shard>,
    header: RequestHeader,
    mut frame: BytesMut,
) -> Result<runtime::Task<Response>, String> {
    let key = ApiKey::try_from(header.api_key).map_err(|_| "unknown API key".to_string())?;
    if key == ApiKey::ApiVersions {
        return Ok(ready(api_versions(&header)));
    }
    let Some((min, max)) = protocol::served_range(key) else {
        return Err(format!("API {key:?} is not supported by this broker"));
    };
    if header.api_version < min || header.api_version > max {
        return Err(format!(
            "{key:?} version {} is not supported (this broker serves {min}..={max})",
            header.api_version
        ));
    }
    let body = frame.split_off(header.body_offset);
    let shard = shard.clone();
    Ok(match key {
        ApiKey::Produce => {
            let request = produce_codec::decode(body, header.api_version).map_err(|e| {
                format!(
                    "malformed produce request (version {}): {e}",
                    header.api_version
                )
            })?;
            let pending = produce_start(&shard, request, header.api_version).await;
            runtime::spawn_task(async move {
                match pending.await {
                    None => Response::None,
                    Some(response) => encoded(key, &header, &response),
                }
            })
        }
        ApiKey::Fetch => {
            let request: m::FetchRequest = decode(body, &header)?;
            runtime::spawn_task(async move { fetch(&shard, &header, request).await })
        }
        ApiKey::ListOffsets => {
            let request: m::ListOffsetsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = list_offsets(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::Metadata => {
            let request: m::MetadataRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = metadata(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::CreateTopics => {
            let request: m::CreateTopicsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = create_topics(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::DeleteTopics => {
            let request: m::DeleteTopicsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = delete_topics(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::CreatePartitions => {
            let request: m::CreatePartitionsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = create_partitions(&shard, request).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::DescribeConfigs => {
            let request: m::DescribeConfigsRequest = decode(body, &header)?;
            let response = describe_configs(&shard, request);
            ready(encoded(key, &header, &response))
        }
        ApiKey::AlterConfigs => {
            let request: m::AlterConfigsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = alter_configs(&shard, request).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::IncrementalAlterConfigs => {
            let request: m::IncrementalAlterConfigsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = incremental_alter_configs(&shard, request).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::DescribeCluster => {
            let _request: m::DescribeClusterRequest = decode(body, &header)?;
            ready(encoded(
                key,
                &header,
                &describe_cluster(&shard, header.api_version),
            ))
        }
        other => return Err(format!("API {other:?} is not supported by this broker")),
    })
}

// ---------------------------------------------------------------------------------------------

fn api_versions(header: &RequestHeader) -> Response {
    let mut response = m::ApiVersionsResponse::default();
    for &(key, min, max) in protocol::SUPPORTED_APIS {
        let mut api = m::api_versions_response::ApiVersion::default();
        api.api_key = key as i16;
        api.min_version = min;
        api.max_version = max;
        response.api_keys.push(api);
    }
    let (_, _, max) = protocol::SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == ApiKey::ApiVersions)
        .copied()
        .expect("ApiVersions is listed");
    let version = if header.api_version > max || header.api_version < 0 {
        // A version we do not know: answer in v0, which every client can read, with the list
        // of what we support, so the client retries with a version we share.
        response.error_code = code::UNSUPPORTED_VERSION;
        0
    } else {
        header.api_version
    };
    match protocol::encode_response(
        ApiKey::ApiVersions,
        version,
        header.correlation_id,
        &response,
    ) {
        Ok(bytes) => Response::Frame(bytes),
        Err(e) => Response::Close(format!("cannot encode ApiVersions: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------

async fn produce_start(
    shard: &Rc<Shard>,
    request: produce_codec::ProduceRequest,
    version: i16,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<m::ProduceResponse>>>> {
    let acks = request.acks;
    let image = shard.image();
    let mut immediate: Vec<ops::ProduceResult> = Vec::new();
    let mut pending = Vec::new();
    let valid_acks = matches!(acks, -1..=1);
    for topic in request.topics {
        let name = match &topic.topic {
            produce_codec::TopicRef::Name(name) => name.clone(),
            produce_codec::TopicRef::Id(id) => match image.by_id.get(id) {
                Some(name) => name.clone(),
                None => {
                    for p in &topic.partitions {
                        let mut r = ops::ProduceResult::error(
                            "",
                            p.partition,
                            code::UNKNOWN_TOPIC_ID,
                            None,
                        );
                        r.topic = uuid::Uuid::from_bytes(*id).to_string();
                        immediate.push(r);
                    }
                    continue;
                }
            },
        };
        // Group this topic's partitions by owner shard, keeping their order.
        let mut by_shard: BTreeMap<ShardId, Vec<(i32, Option<BytesMut>)>> = BTreeMap::new();
        for partition in topic.partitions {
            if !valid_acks {
                immediate.push(ops::ProduceResult::error(
                    &name,
                    partition.partition,
                    code::INVALID_REQUIRED_ACKS,
                    None,
                ));
                continue;
            }
            if !image.partition_exists(&name, partition.partition) {
                immediate.push(ops::ProduceResult::error(
                    &name,
                    partition.partition,
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    None,
                ));
                continue;
            }
            by_shard
                .entry(shard.owner(&name, partition.partition))
                .or_default()
                .push((partition.partition, partition.records));
        }
        for (owner, partitions) in by_shard {
            let batch = ops::ProduceBatch {
                topic: name.clone(),
                partitions,
                acks,
            };
            if owner == shard.id {
                let future = ops::produce_local(shard, batch);
                pending.push(futures::future::Either::Left(future));
            } else {
                let call = shard.mesh().call(owner, ShardRequest::Produce(batch)).await;
                let topic = name.clone();
                pending.push(futures::future::Either::Right(async move {
                    match call {
                        Ok(reply) => match reply.await {
                            Ok(ShardReply::Produce(results)) => results,
                            _ => vec![ops::ProduceResult::error(
                                &topic,
                                -1,
                                code::UNKNOWN_SERVER_ERROR,
                                None,
                            )],
                        },
                        Err(_) => vec![ops::ProduceResult::error(
                            &topic,
                            -1,
                            code::UNKNOWN_SERVER_ERROR,
                            None,
                        )],
                    }
                }));
            }
        }
    }
    Box::pin(async move {
        let mut results = immediate;
        for batch in futures::future::join_all(pending).await {
            results.extend(batch);
        }
        if acks == 0 {
            return None;
        }
        let mut response = m::ProduceResponse::default();
        let mut topics: BTreeMap<String, Vec<ops::ProduceResult>> = BTreeMap::new();
        for result in results {
            topics.entry(result.topic.clone()).or_default().push(result);
        }
        for (name, results) in topics {
            let mut topic = m::produce_response::TopicProduceResponse::default();
            topic.name = TopicName(str_bytes(&name));
            if version >= 13 {
                if let Some(t) = image.topic(&name) {
                    topic.topic_id = uuid::Uuid::from_bytes(t.record.id);
                }
            }
            for r in results {
                let mut p = m::produce_response::PartitionProduceResponse::default();
                p.index = r.partition;
                p.error_code = r.error_code;
                p.base_offset = r.base_offset;
                p.log_append_time_ms = r.log_append_time_ms;
                if version >= 5 {
                    p.log_start_offset = r.log_start_offset;
                }
                if version >= 8 {
                    p.error_message = r.message.as_deref().map(str_bytes);
                }
                topic.partition_responses.push(p);
            }
            response.responses.push(topic);
        }
        Some(response)
    })
}

// ---------------------------------------------------------------------------------------------

async fn fetch(shard: &Rc<Shard>, header: &RequestHeader, request: m::FetchRequest) -> Response {
    let version = header.api_version;
    let image = shard.image();
    let started = Instant::now();
    // Sessions (KIP-227) are optional for a broker: answering session id 0 tells the client
    // to keep sending full requests. An incremental request for a session we never gave out
    // is answered as Kafka does.
    if version >= 7 && request.session_id != 0 {
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
    let mut topics: Vec<fetch_codec::FetchTopicResponse<Chunk>> = Vec::new();
    for ((name, id, _), mut result) in order.into_iter().zip(results) {
        if result.bytes > budget && !first {
            result.records.clear();
            result.bytes = 0;
        }
        if result.bytes > 0 {
            first = false;
            budget = budget.saturating_sub(result.bytes);
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

fn push_partition(
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
async fn fetch_all(shard: &Rc<Shard>, items: &[FetchItem]) -> Vec<FetchResult<Chunk>> {
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

// ---------------------------------------------------------------------------------------------

async fn list_offsets(
    shard: &Rc<Shard>,
    request: m::ListOffsetsRequest,
    version: i16,
) -> m::ListOffsetsResponse {
    let image = shard.image();
    let mut by_shard: BTreeMap<ShardId, Vec<ops::ListOffsetsItem>> = BTreeMap::new();
    let mut results = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        for p in &topic.partitions {
            if !image.partition_exists(name, p.partition_index) {
                results.push(ops::ListOffsetsResult {
                    topic: name.to_owned(),
                    partition: p.partition_index,
                    error_code: code::UNKNOWN_TOPIC_OR_PARTITION,
                    timestamp: -1,
                    offset: -1,
                    leader_epoch: -1,
                });
                continue;
            }
            by_shard
                .entry(shard.owner(name, p.partition_index))
                .or_default()
                .push(ops::ListOffsetsItem {
                    topic: name.to_owned(),
                    partition: p.partition_index,
                    timestamp: p.timestamp,
                    current_leader_epoch: p.current_leader_epoch,
                });
        }
    }
    let calls = by_shard
        .into_iter()
        .map(|(owner, items)| shard.call(owner, ShardRequest::ListOffsets(items)));
    for reply in futures::future::join_all(calls).await {
        if let ShardReply::ListOffsets(r) = reply {
            results.extend(r);
        }
    }
    let mut grouped: BTreeMap<String, Vec<ops::ListOffsetsResult>> = BTreeMap::new();
    for r in results {
        grouped.entry(r.topic.clone()).or_default().push(r);
    }
    let mut response = m::ListOffsetsResponse::default();
    for (name, results) in grouped {
        let mut topic = m::list_offsets_response::ListOffsetsTopicResponse::default();
        topic.name = TopicName(str_bytes(&name));
        for r in results {
            let mut p = m::list_offsets_response::ListOffsetsPartitionResponse::default();
            p.partition_index = r.partition;
            p.error_code = r.error_code;
            p.timestamp = r.timestamp;
            p.offset = r.offset;
            if version >= 4 {
                p.leader_epoch = r.leader_epoch;
            }
            topic.partitions.push(p);
        }
        response.topics.push(topic);
    }
    response
}

// ---------------------------------------------------------------------------------------------

async fn control(shard: &Rc<Shard>, request: ControlRequest) -> Vec<ControlOutcome> {
    match shard.call(0, ShardRequest::Control(request)).await {
        ShardReply::Control(outcomes) => outcomes,
        _ => Vec::new(),
    }
}

async fn metadata(
    shard: &Rc<Shard>,
    request: m::MetadataRequest,
    version: i16,
) -> m::MetadataResponse {
    let mut image = shard.image();
    // Version 0 has no "all topics" null: an empty list means all.
    let wanted: Option<Vec<(String, Option<[u8; 16]>)>> = match &request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .iter()
                .map(|t| match &t.name {
                    Some(name) => (name.0.as_str().to_owned(), None),
                    None => (
                        image
                            .by_id
                            .get(t.topic_id.as_bytes())
                            .cloned()
                            .unwrap_or_default(),
                        Some(*t.topic_id.as_bytes()),
                    ),
                })
                .collect(),
        ),
    };
    let auto_create = shard.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);
    if let Some(wanted) = &wanted {
        let missing: Vec<ops::CreateTopicSpec> = wanted
            .iter()
            .filter(|(name, id)| id.is_none() && !name.is_empty() && image.topic(name).is_none())
            .filter(|(name, _)| super::metadata::validate_topic_name(name).is_ok())
            .map(|(name, _)| ops::CreateTopicSpec {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                configs: Vec::new(),
            })
            .collect();
        if auto_create && !missing.is_empty() {
            let outcomes = control(
                shard,
                ControlRequest::CreateTopics {
                    topics: missing,
                    validate_only: false,
                },
            )
            .await;
            for o in outcomes
                .iter()
                .filter(|o| o.error_code != 0 && o.error_code != code::TOPIC_ALREADY_EXISTS)
            {
                tracing::warn!(topic = %o.name, error = ?o.message, "auto-create failed");
            }
            image = shard.image();
        }
    }
    let mut response = m::MetadataResponse::default();
    let broker_id = BrokerId(shard.config.broker_id);
    let (host, port) = advertised(shard);
    let mut broker = m::metadata_response::MetadataResponseBroker::default();
    broker.node_id = broker_id;
    broker.host = str_bytes(&host);
    broker.port = port as i32;
    response.brokers.push(broker);
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&shard.config.cluster_id));
    }
    if version >= 1 {
        response.controller_id = broker_id;
    }
    let names: Vec<(String, Option<[u8; 16]>)> = match wanted {
        None => image.topics.keys().map(|n| (n.clone(), None)).collect(),
        Some(w) => w,
    };
    for (name, id) in names {
        let mut topic = m::metadata_response::MetadataResponseTopic::default();
        match image.topic(&name) {
            None => {
                topic.error_code = if id.is_some() {
                    code::UNKNOWN_TOPIC_ID
                } else if super::metadata::validate_topic_name(&name).is_err() {
                    code::INVALID_TOPIC_EXCEPTION
                } else {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                };
                topic.name = (!name.is_empty()).then(|| TopicName(str_bytes(&name)));
                if let (Some(id), true) = (id, version >= 10) {
                    topic.topic_id = uuid::Uuid::from_bytes(id);
                }
            }
            Some(t) => {
                topic.name = Some(TopicName(str_bytes(&name)));
                if version >= 10 {
                    topic.topic_id = uuid::Uuid::from_bytes(t.record.id);
                }
                for index in 0..t.record.partitions as i32 {
                    let mut p = m::metadata_response::MetadataResponsePartition::default();
                    p.partition_index = index;
                    p.leader_id = broker_id;
                    if version >= 7 {
                        p.leader_epoch = 0;
                    }
                    p.replica_nodes = vec![broker_id];
                    p.isr_nodes = vec![broker_id];
                    topic.partitions.push(p);
                }
            }
        }
        response.topics.push(topic);
    }
    response
}

fn advertised(shard: &Shard) -> (String, u16) {
    let listener = shard
        .config
        .advertised_listeners
        .first()
        .or(shard.config.listeners.first());
    let host = listener.map_or("127.0.0.1".to_owned(), |l| l.host.clone());
    let port = match listener.map(|l| l.port) {
        Some(0) | None => shard.port.get(),
        Some(port) => port,
    };
    (host, port)
}

async fn create_topics(
    shard: &Rc<Shard>,
    request: m::CreateTopicsRequest,
    version: i16,
) -> m::CreateTopicsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| ops::CreateTopicSpec {
            name: t.name.0.as_str().to_owned(),
            partitions: if t.assignments.is_empty() {
                t.num_partitions
            } else {
                t.assignments.len() as i32
            },
            replication_factor: if t.assignments.is_empty() {
                t.replication_factor
            } else {
                t.assignments[0].broker_ids.len() as i16
            },
            configs: t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.as_str().to_owned(), v.as_str().to_owned()))
                })
                .collect(),
        })
        .collect();
    let outcomes = control(
        shard,
        ControlRequest::CreateTopics {
            topics,
            validate_only: request.validate_only,
        },
    )
    .await;
    let mut response = m::CreateTopicsResponse::default();
    for o in outcomes {
        let mut t = m::create_topics_response::CreatableTopicResult::default();
        t.name = TopicName(str_bytes(&o.name));
        if version >= 7 {
            t.topic_id = uuid::Uuid::from_bytes(o.topic_id);
        }
        t.error_code = o.error_code;
        t.error_message = o.message.as_deref().map(str_bytes);
        if version >= 5 {
            t.num_partitions = o.partitions;
            t.replication_factor = o.replication_factor;
        }
        response.topics.push(t);
    }
    response
}

async fn delete_topics(
    shard: &Rc<Shard>,
    request: m::DeleteTopicsRequest,
    version: i16,
) -> m::DeleteTopicsResponse {
    let image = shard.image();
    let mut names: Vec<String> = request
        .topic_names
        .iter()
        .map(|n| n.0.as_str().to_owned())
        .collect();
    let mut unknown_ids = Vec::new();
    for state in &request.topics {
        match &state.name {
            Some(name) => names.push(name.0.as_str().to_owned()),
            None => match image.by_id.get(state.topic_id.as_bytes()) {
                Some(name) => names.push(name.clone()),
                None => unknown_ids.push(state.topic_id),
            },
        }
    }
    let outcomes = control(shard, ControlRequest::DeleteTopics(names)).await;
    let mut response = m::DeleteTopicsResponse::default();
    for o in outcomes {
        let mut r = m::delete_topics_response::DeletableTopicResult::default();
        r.name = Some(TopicName(str_bytes(&o.name)));
        if version >= 6 {
            r.topic_id = uuid::Uuid::from_bytes(o.topic_id);
        }
        r.error_code = o.error_code;
        if version >= 5 {
            r.error_message = o.message.as_deref().map(str_bytes);
        }
        response.responses.push(r);
    }
    for id in unknown_ids {
        let mut r = m::delete_topics_response::DeletableTopicResult::default();
        r.topic_id = id;
        r.error_code = code::UNKNOWN_TOPIC_ID;
        response.responses.push(r);
    }
    response
}

async fn create_partitions(
    shard: &Rc<Shard>,
    request: m::CreatePartitionsRequest,
) -> m::CreatePartitionsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| (t.name.0.as_str().to_owned(), t.count))
        .collect();
    let outcomes = control(
        shard,
        ControlRequest::CreatePartitions {
            topics,
            validate_only: request.validate_only,
        },
    )
    .await;
    let mut response = m::CreatePartitionsResponse::default();
    for o in outcomes {
        let mut r = m::create_partitions_response::CreatePartitionsTopicResult::default();
        r.name = TopicName(str_bytes(&o.name));
        r.error_code = o.error_code;
        r.error_message = o.message.as_deref().map(str_bytes);
        response.results.push(r);
    }
    response
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn describe_configs(
    shard: &Rc<Shard>,
    request: m::DescribeConfigsRequest,
) -> m::DescribeConfigsResponse {
    let image = shard.image();
    let mut response = m::DescribeConfigsResponse::default();
    for resource in &request.resources {
        let mut result = m::describe_configs_response::DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        let described = match resource.resource_type {
            RESOURCE_TOPIC => match image.topic(name) {
                Some(topic) => Some(topic.config.describe(&topic.overrides, &shard.config)),
                None => {
                    result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    result.error_message =
                        Some(str_bytes(&format!("topic '{name}' does not exist")));
                    None
                }
            },
            RESOURCE_BROKER => {
                if name.is_empty() || name == shard.config.broker_id.to_string() {
                    Some(
                        shard
                            .config
                            .topic_defaults
                            .describe(&Default::default(), &shard.config),
                    )
                } else {
                    result.error_code = code::INVALID_REQUEST;
                    result.error_message = Some(str_bytes(&format!("unknown broker {name}")));
                    None
                }
            }
            other => {
                result.error_code = code::INVALID_REQUEST;
                result.error_message = Some(str_bytes(&format!(
                    "resource type {other} is not supported"
                )));
                None
            }
        };
        for config in described.unwrap_or_default() {
            // Null or empty: every key.
            if let Some(keys) = resource
                .configuration_keys
                .as_ref()
                .filter(|k| !k.is_empty())
            {
                if !keys.iter().any(|k| k.as_str() == config.name) {
                    continue;
                }
            }
            let mut entry = m::describe_configs_response::DescribeConfigsResourceResult::default();
            entry.name = str_bytes(&config.name);
            entry.value = Some(str_bytes(&config.value));
            entry.read_only = config.read_only;
            entry.config_source = config.source.kafka_code();
            entry.is_sensitive = config.sensitive;
            result.configs.push(entry);
        }
        response.results.push(result);
    }
    response
}

/// Per resource of an (Incremental)AlterConfigs request: type, name, error code, message.
type AlterOutcome = (i8, StrBytes, i16, Option<StrBytes>);

/// What AlterConfigs and IncrementalAlterConfigs share: only topics can change at run time,
/// and the controller applies each topic's change whole or not at all.
async fn alter_topic_configs(
    shard: &Rc<Shard>,
    changes: Vec<(i8, StrBytes, ops::ConfigChange)>,
    validate_only: bool,
) -> Vec<AlterOutcome> {
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut topics = Vec::with_capacity(changes.len());
    for (resource_type, name, change) in changes {
        if resource_type == RESOURCE_TOPIC {
            topics.push((name.as_str().to_owned(), change));
        } else {
            let message = str_bytes("only topic configs can be altered at run time");
            outcomes.push((resource_type, name, code::INVALID_REQUEST, Some(message)));
        }
    }
    let request = ControlRequest::AlterConfigs {
        topics,
        validate_only,
    };
    for o in control(shard, request).await {
        let message = o.message.as_deref().map(str_bytes);
        outcomes.push((RESOURCE_TOPIC, str_bytes(&o.name), o.error_code, message));
    }
    outcomes
}

async fn alter_configs(
    shard: &Rc<Shard>,
    request: m::AlterConfigsRequest,
) -> m::AlterConfigsResponse {
    let changes = request
        .resources
        .iter()
        .map(|resource| {
            let set = resource
                .configs
                .iter()
                .filter_map(|c| {
                    let value = c.value.as_ref()?;
                    Some((c.name.as_str().to_owned(), value.as_str().to_owned()))
                })
                .collect();
            let change = ops::ConfigChange::Replace(set);
            (
                resource.resource_type,
                resource.resource_name.clone(),
                change,
            )
        })
        .collect();
    let mut response = m::AlterConfigsResponse::default();
    for (resource_type, name, error_code, message) in
        alter_topic_configs(shard, changes, request.validate_only).await
    {
        let mut r = m::alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = resource_type;
        r.resource_name = name;
        r.error_code = error_code;
        r.error_message = message;
        response.responses.push(r);
    }
    response
}

async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    request: m::IncrementalAlterConfigsRequest,
) -> m::IncrementalAlterConfigsResponse {
    let changes = request
        .resources
        .iter()
        .map(|resource| {
            let ops = resource
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_ref().map(|v| v.as_str().to_owned());
                    (c.name.as_str().to_owned(), c.config_operation, value)
                })
                .collect();
            let change = ops::ConfigChange::Incremental(ops);
            (
                resource.resource_type,
                resource.resource_name.clone(),
                change,
            )
        })
        .collect();
    let mut response = m::IncrementalAlterConfigsResponse::default();
    for (resource_type, name, error_code, message) in
        alter_topic_configs(shard, changes, request.validate_only).await
    {
        let mut r = m::incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = resource_type;
        r.resource_name = name;
        r.error_code = error_code;
        r.error_message = message;
        response.responses.push(r);
    }
    response
}

fn describe_cluster(shard: &Rc<Shard>, version: i16) -> m::DescribeClusterResponse {
    let mut response = m::DescribeClusterResponse::default();
    let (host, port) = advertised(shard);
    response.cluster_id = str_bytes(&shard.config.cluster_id);
    response.controller_id = BrokerId(shard.config.broker_id);
    if version >= 1 {
        response.endpoint_type = 1;
    }
    let mut broker = m::describe_cluster_response::DescribeClusterBroker::default();
    broker.broker_id = BrokerId(shard.config.broker_id);
    broker.host = str_bytes(&host);
    broker.port = port as i32;
    response.brokers.push(broker);
    response
}

//! Produce: appends on the owner shards, in wire order; answered once durable as `acks` asks.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::{self as m, BrokerId, TopicName};

use super::str_bytes;
use crate::broker::ops;
use crate::broker::shard::{Shard, ShardReply, ShardRequest};
use crate::protocol::{error_code as code, produce as produce_codec};
use crate::runtime::ShardId;

pub(super) async fn produce_start(
    shard: &Rc<Shard>,
    request: produce_codec::ProduceRequest,
    version: i16,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<m::ProduceResponse>>>> {
    let acks = request.acks;
    // How long acks=all may wait. Kafka's acks=1 does not wait at all (its leader does not
    // sync), so only acks=all is bounded here. A timeout of zero or less cannot be met by a
    // sync; it is taken as no limit, so that such a client sees its records acknowledged.
    let timeout = match (acks, u64::try_from(request.timeout_ms)) {
        (-1, Ok(ms)) if ms > 0 => std::time::Duration::from_millis(ms),
        _ => ops::PRODUCE_WAIT_UNBOUNDED,
    };
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
            if !image.leads(&name, partition.partition) {
                // Another broker leads it (or none does): the client refreshes its metadata.
                immediate.push(ops::ProduceResult::error(
                    &name,
                    partition.partition,
                    code::NOT_LEADER_OR_FOLLOWER,
                    None,
                ));
                continue;
            }
            if name == crate::broker::group::OFFSETS_TOPIC {
                // Only the group coordinator writes there; Kafka refuses clients the same way.
                immediate.push(ops::ProduceResult::error(
                    &name,
                    partition.partition,
                    code::INVALID_TOPIC_EXCEPTION,
                    Some("cannot append to an internal topic".into()),
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
                timeout,
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
    let shard = shard.clone();
    Box::pin(async move {
        let mut results = immediate;
        for batch in futures::future::join_all(pending).await {
            results.extend(batch);
        }
        if results.iter().any(|r| r.error_code != code::NONE) {
            if let Some(api) = shard.metrics.api(m::ApiKey::Produce as i16) {
                api.errors.increment();
            }
        }
        if acks == 0 {
            return None;
        }
        let mut response = m::ProduceResponse::default();
        let mut topics: BTreeMap<String, Vec<ops::ProduceResult>> = BTreeMap::new();
        let mut hinted = std::collections::BTreeSet::new();
        for result in results {
            topics.entry(result.topic.clone()).or_default().push(result);
        }
        for (name, results) in topics {
            let mut topic = m::produce_response::TopicProduceResponse::default();
            topic.name = TopicName(str_bytes(&name));
            if version >= 13 {
                // Known topics by their id; an unknown id was carried back as its text.
                topic.topic_id = match image.topic(&name) {
                    Some(t) => uuid::Uuid::from_bytes(t.record.id),
                    None => uuid::Uuid::parse_str(&name).unwrap_or_default(),
                };
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
                    p.record_errors = r
                        .record_errors
                        .iter()
                        .map(|(index, message)| {
                            let mut e = m::produce_response::BatchIndexAndErrorMessage::default();
                            e.batch_index = *index;
                            e.batch_index_error_message = Some(str_bytes(message));
                            e
                        })
                        .collect();
                }
                if version >= 10 && r.error_code == code::NOT_LEADER_OR_FOLLOWER {
                    // KIP-951: where the partition went, so the client need not ask Metadata.
                    if let Some(state) = image.partition(&name, r.partition) {
                        if let Some(leader) = image.live_broker(state.leader) {
                            p.current_leader.leader_id = BrokerId(leader.id);
                            p.current_leader.leader_epoch = state.leader_epoch;
                            hinted.insert(leader.id);
                        }
                    }
                }
                topic.partition_responses.push(p);
            }
            response.responses.push(topic);
        }
        if version >= 10 {
            for id in hinted {
                if let Some(broker) = image.live_broker(id) {
                    let mut endpoint = m::produce_response::NodeEndpoint::default();
                    endpoint.node_id = BrokerId(broker.id);
                    endpoint.host = str_bytes(&broker.host);
                    endpoint.port = i32::from(broker.port);
                    endpoint.rack = broker.rack.as_deref().map(str_bytes);
                    response.node_endpoints.push(endpoint);
                }
            }
        }
        Some(response)
    })
}

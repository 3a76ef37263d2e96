//! Metadata: brokers and topics from this shard's image; auto-creates topics when allowed.

use std::rc::Rc;

use kafka_protocol::messages::{self as m, BrokerId, TopicName};

use super::{advertised, control, str_bytes};
use crate::broker::ops::{self, ControlRequest};
use crate::broker::shard::Shard;
use crate::protocol::error_code as code;

pub(super) async fn metadata(
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
            .filter(|(name, _)| crate::broker::metadata::validate_topic_name(name).is_ok())
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
    // Clients are sent only to live brokers; a fenced one is left out, as Kafka does.
    for registration in image.brokers.values().filter(|b| !b.fenced) {
        let mut broker = m::metadata_response::MetadataResponseBroker::default();
        broker.node_id = BrokerId(registration.id);
        broker.host = str_bytes(&registration.host);
        broker.port = registration.port as i32;
        if version >= 1 {
            broker.rack = registration.rack.as_deref().map(str_bytes);
        }
        response.brokers.push(broker);
    }
    if response.brokers.is_empty() {
        // Not registered yet (requests wait for that, so this is a broker leaving): itself.
        let (host, port) = advertised(shard);
        let mut broker = m::metadata_response::MetadataResponseBroker::default();
        broker.node_id = BrokerId(shard.config.broker_id);
        broker.host = str_bytes(&host);
        broker.port = port as i32;
        response.brokers.push(broker);
    }
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&shard.config.cluster_id));
    }
    if version >= 1 {
        response.controller_id = BrokerId(image.controller.unwrap_or(-1));
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
                } else if crate::broker::metadata::validate_topic_name(&name).is_err() {
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
                topic.is_internal = name == crate::broker::group::OFFSETS_TOPIC;
                if version >= 10 {
                    topic.topic_id = uuid::Uuid::from_bytes(t.record.id);
                }
                for (index, state) in t.partitions.iter().enumerate() {
                    let mut p = m::metadata_response::MetadataResponsePartition::default();
                    p.partition_index = index as i32;
                    let live = image.live_broker(state.leader).is_some();
                    p.leader_id = BrokerId(if live { state.leader } else { -1 });
                    if !live {
                        p.error_code = code::LEADER_NOT_AVAILABLE;
                    }
                    if version >= 7 {
                        p.leader_epoch = state.leader_epoch;
                    }
                    p.replica_nodes = state.replicas.iter().map(|&r| BrokerId(r)).collect();
                    p.isr_nodes = state.isr.iter().map(|&r| BrokerId(r)).collect();
                    if version >= 5 {
                        p.offline_replicas = state
                            .replicas
                            .iter()
                            .filter(|&&r| image.live_broker(r).is_none())
                            .map(|&r| BrokerId(r))
                            .collect();
                    }
                    topic.partitions.push(p);
                }
            }
        }
        response.topics.push(topic);
    }
    response
}

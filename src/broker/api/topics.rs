//! CreateTopics, DeleteTopics, CreatePartitions: validated and applied by the controller.

use std::rc::Rc;

use kafka_protocol::messages::{self as m, TopicName};

use super::{control, str_bytes};
use crate::broker::ops::{self, ControlRequest};
use crate::broker::shard::Shard;
use crate::protocol::error_code as code;

pub(super) async fn create_topics(
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

pub(super) async fn delete_topics(
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

pub(super) async fn create_partitions(
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

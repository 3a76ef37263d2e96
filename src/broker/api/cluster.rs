//! DescribeCluster: the brokers (live ones, and fenced ones when asked: v2) and the active
//! controller, from this shard's image. DescribeQuorum: the controller quorum as its leader
//! sees it (asked of the leader through the cluster node).
//!
//! Two tagged fields of our own ride on each DescribeCluster broker (flexible versions; other
//! clients skip unknown tags): the broker's shard count and whether it is shutting down.

use std::rc::Rc;

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::{self as m, BrokerId, TopicName};

use super::{advertised, str_bytes};
use crate::broker::shard::{Shard, ShardReply, ShardRequest};
use crate::cluster::wire::{ControllerAnswer, ControllerCall};
use crate::protocol::error_code as code;
use crate::protocol::{
    DESCRIBE_CLUSTER_TAG_SHARDS as TAG_SHARDS,
    DESCRIBE_CLUSTER_TAG_SHUTTING_DOWN as TAG_SHUTTING_DOWN,
};

/// The metadata log's name in DescribeQuorum, as Kafka's.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub(super) fn describe_cluster(
    shard: &Rc<Shard>,
    request: &m::DescribeClusterRequest,
    version: i16,
) -> m::DescribeClusterResponse {
    let image = shard.image();
    let mut response = m::DescribeClusterResponse::default();
    response.cluster_id = str_bytes(&shard.config.cluster_id);
    response.controller_id = BrokerId(image.controller.unwrap_or(-1));
    if version >= 1 {
        response.endpoint_type = 1;
    }
    let with_fenced = version >= 2 && request.include_fenced_brokers;
    for registration in image.brokers.values().filter(|b| with_fenced || !b.fenced) {
        let mut broker = m::describe_cluster_response::DescribeClusterBroker::default();
        broker.broker_id = BrokerId(registration.id);
        broker.host = str_bytes(&registration.host);
        broker.port = registration.port as i32;
        broker.rack = registration.rack.as_deref().map(str_bytes);
        if version >= 2 {
            broker.is_fenced = registration.fenced;
        }
        let mut shards = Vec::with_capacity(4);
        shards.put_i32(registration.shards as i32);
        broker
            .unknown_tagged_fields
            .insert(TAG_SHARDS, Bytes::from(shards));
        broker.unknown_tagged_fields.insert(
            TAG_SHUTTING_DOWN,
            Bytes::from(vec![u8::from(registration.shutting_down)]),
        );
        response.brokers.push(broker);
    }
    if response.brokers.is_empty() {
        let (host, port) = advertised(shard);
        let mut broker = m::describe_cluster_response::DescribeClusterBroker::default();
        broker.broker_id = BrokerId(shard.config.broker_id);
        broker.host = str_bytes(&host);
        broker.port = port as i32;
        response.brokers.push(broker);
    }
    response
}

pub(super) async fn describe_quorum(shard: &Rc<Shard>, version: i16) -> m::DescribeQuorumResponse {
    let mut response = m::DescribeQuorumResponse::default();
    // Shard 0 asks the leader (itself, if it leads).
    let answer = match shard
        .call(
            0,
            ShardRequest::CallController(Box::new(ControllerCall::DescribeQuorum)),
        )
        .await
    {
        ShardReply::Controller(answer) => *answer,
        _ => ControllerAnswer::Failed("no answer from shard 0".into()),
    };
    let ControllerAnswer::Quorum(status) = answer else {
        response.error_code = code::NOT_CONTROLLER;
        if version >= 2 {
            response.error_message = Some(str_bytes("no active controller"));
        }
        return response;
    };
    let mut partition = m::describe_quorum_response::PartitionData::default();
    partition.partition_index = 0;
    partition.leader_id = BrokerId(status.leader.unwrap_or(-1));
    partition.leader_epoch = status.term as i32;
    partition.high_watermark = status.commit_index as i64;
    partition.current_voters = status
        .voters
        .iter()
        .map(|(id, _)| {
            let mut voter = m::describe_quorum_response::ReplicaState::default();
            voter.replica_id = BrokerId(*id);
            voter.log_end_offset = status
                .progress
                .iter()
                .find(|(node, _)| node == id)
                .map_or(-1, |(_, matched)| *matched as i64);
            voter.last_fetch_timestamp = -1;
            voter.last_caught_up_timestamp = -1;
            voter
        })
        .collect();
    let mut topic = m::describe_quorum_response::TopicData::default();
    topic.topic_name = TopicName(str_bytes(METADATA_TOPIC));
    topic.partitions.push(partition);
    response.topics.push(topic);
    if version >= 2 {
        response.nodes = status
            .voters
            .iter()
            .map(|(id, address)| {
                let (host, port) = address.rsplit_once(':').unwrap_or((address, "0"));
                let mut listener = m::describe_quorum_response::Listener::default();
                listener.name = str_bytes("PLAINTEXT");
                listener.host = str_bytes(host.trim_start_matches('[').trim_end_matches(']'));
                listener.port = port.parse().unwrap_or(0);
                let mut node = m::describe_quorum_response::Node::default();
                node.node_id = BrokerId(*id);
                node.listeners.push(listener);
                node
            })
            .collect();
    }
    response
}

//! DescribeCluster: the live brokers and the active controller, from this shard's image.

use std::rc::Rc;

use kafka_protocol::messages::{self as m, BrokerId};

use super::{advertised, str_bytes};
use crate::broker::shard::Shard;

pub(super) fn describe_cluster(shard: &Rc<Shard>, version: i16) -> m::DescribeClusterResponse {
    let image = shard.image();
    let mut response = m::DescribeClusterResponse::default();
    response.cluster_id = str_bytes(&shard.config.cluster_id);
    response.controller_id = BrokerId(image.controller.unwrap_or(-1));
    if version >= 1 {
        response.endpoint_type = 1;
    }
    for registration in image.brokers.values().filter(|b| !b.fenced) {
        let mut broker = m::describe_cluster_response::DescribeClusterBroker::default();
        broker.broker_id = BrokerId(registration.id);
        broker.host = str_bytes(&registration.host);
        broker.port = registration.port as i32;
        broker.rack = registration.rack.as_deref().map(str_bytes);
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

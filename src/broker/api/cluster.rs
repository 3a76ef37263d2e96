//! DescribeCluster: this broker, as the cluster's only member and controller.

use std::rc::Rc;

use kafka_protocol::messages::{self as m, BrokerId};

use super::{advertised, str_bytes};
use crate::broker::shard::Shard;

pub(super) fn describe_cluster(shard: &Rc<Shard>, version: i16) -> m::DescribeClusterResponse {
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

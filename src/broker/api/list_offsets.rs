//! ListOffsets: earliest, latest, max timestamp and by timestamp, from the owner shards.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::{self as m, TopicName};

use super::str_bytes;
use crate::broker::ops;
use crate::broker::shard::{Shard, ShardReply, ShardRequest};
use crate::protocol::error_code as code;
use crate::runtime::ShardId;

pub(super) async fn list_offsets(
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
            let refused = if !image.partition_exists(name, p.partition_index) {
                Some(code::UNKNOWN_TOPIC_OR_PARTITION)
            } else if !image.leads(name, p.partition_index) {
                Some(code::NOT_LEADER_OR_FOLLOWER)
            } else {
                None
            };
            if let Some(error_code) = refused {
                results.push(ops::ListOffsetsResult {
                    topic: name.to_owned(),
                    partition: p.partition_index,
                    error_code,
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

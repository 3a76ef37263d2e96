//! The broker's own count of a topic: partitions, leaders and their earliest and latest
//! offsets (Metadata and ListOffsets on a plain connection). The bench checks its tallies
//! against these, so they must not come from the producer or consumer under test.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::{self as m, ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::admin::Admin;
use crate::client::connection::Connection;
use crate::client::ClientError;
use crate::runtime;

use super::{BenchError, CONNECT_TIMEOUT};

const CLIENT_ID: &str = "shardlog-bench";
/// Kafka's error code for a topic the broker does not know.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// ListOffsets' special timestamps: the first and the next offset of a partition.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// One partition's offsets: `start` is the first offset kept, `end` the next to be written
/// (the high watermark: what consumers can read up to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Sum over partitions of how far each end offset moved from `before` to `after`.
pub fn end_offsets_moved(before: &[PartitionOffsets], after: &[PartitionOffsets]) -> i64 {
    let before: HashMap<i32, i64> = before.iter().map(|p| (p.partition, p.end)).collect();
    after
        .iter()
        .map(|p| p.end - before.get(&p.partition).copied().unwrap_or(0))
        .sum()
}

/// Connects to `bootstrap`, failing as unreachable after `CONNECT_TIMEOUT`.
pub async fn connect(bootstrap: &str) -> Result<Rc<Connection>, BenchError> {
    match runtime::timeout(CONNECT_TIMEOUT, Connection::connect(bootstrap, CLIENT_ID)).await {
        Some(result) => Ok(result?),
        None => Err(BenchError::Unreachable(format!(
            "no connection to {bootstrap} within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// The partition count of `topic`, creating it with `create` = (partitions, replication
/// factor) when it is missing and `create` is given.
pub async fn prepare_topic(
    bootstrap: &str,
    topic: &str,
    create: Option<(i32, i16)>,
) -> Result<i32, BenchError> {
    // Fails fast, and as unreachable, before Admin's connect could hang.
    connect(bootstrap).await?;
    let admin = Admin::connect(bootstrap).await?;
    match admin.topics(Some(&[topic])).await {
        Ok(topics) => {
            if let Some(found) = topics.iter().find(|t| t.name == topic) {
                return Ok(found.partitions.len() as i32);
            }
        }
        Err(e) if e.code() == Some(UNKNOWN_TOPIC_OR_PARTITION) => {}
        Err(e) => return Err(e.into()),
    }
    let Some((partitions, replication_factor)) = create else {
        return Err(BenchError::Refused(format!(
            "topic {topic} does not exist (produce to it first)"
        )));
    };
    admin
        .create_topic(topic, partitions, replication_factor, &[])
        .await?;
    Ok(partitions)
}

/// Every partition of `topic` with its offsets, in partition order.
pub async fn topic_offsets(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<PartitionOffsets>, BenchError> {
    let bootstrap_connection = connect(bootstrap).await?;
    let version = bootstrap_connection.version(ApiKey::Metadata, (4, 12))?;
    let mut request = m::MetadataRequest::default();
    let mut wanted = m::metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(topic.to_owned())));
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = false;
    let response: m::MetadataResponse = bootstrap_connection
        .send(ApiKey::Metadata, version, &request)
        .await?;
    let brokers: HashMap<i32, String> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let Some(described) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
    else {
        return Err(BenchError::Refused(format!(
            "the broker's metadata does not list topic {topic}"
        )));
    };
    if let Some(error) = ClientError::from_code(described.error_code, Some(topic.to_owned())) {
        return Err(error.into());
    }
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in &described.partitions {
        by_leader
            .entry(p.leader_id.0)
            .or_default()
            .push(p.partition_index);
    }
    let mut offsets = Vec::new();
    for (leader, partitions) in by_leader {
        let address = brokers.get(&leader).ok_or_else(|| {
            BenchError::Refused(format!(
                "no leader address for partitions {partitions:?} of {topic} (leader {leader})"
            ))
        })?;
        let connection = connect(address).await?;
        let starts = list_offsets(&connection, topic, &partitions, EARLIEST).await?;
        let ends = list_offsets(&connection, topic, &partitions, LATEST).await?;
        for partition in partitions {
            let found = |table: &HashMap<i32, i64>| {
                table.get(&partition).copied().ok_or_else(|| {
                    BenchError::Refused(format!(
                        "ListOffsets from {address} left out {topic}-{partition}"
                    ))
                })
            };
            offsets.push(PartitionOffsets {
                partition,
                start: found(&starts)?,
                end: found(&ends)?,
            });
        }
    }
    offsets.sort_by_key(|p| p.partition);
    Ok(offsets)
}

async fn list_offsets(
    connection: &Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<HashMap<i32, i64>, BenchError> {
    let version = connection.version(ApiKey::ListOffsets, (1, 7))?;
    let mut request = m::ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    // Read-uncommitted: the high watermark, which is what a consumer can reach.
    request.isolation_level = 0;
    let mut wanted = m::list_offsets_request::ListOffsetsTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.to_owned()));
    wanted.partitions = partitions
        .iter()
        .map(|&index| {
            let mut p = m::list_offsets_request::ListOffsetsPartition::default();
            p.partition_index = index;
            p.timestamp = timestamp;
            p
        })
        .collect();
    request.topics.push(wanted);
    let response: m::ListOffsetsResponse = connection
        .send(ApiKey::ListOffsets, version, &request)
        .await?;
    let mut out = HashMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            if let Some(error) =
                ClientError::from_code(p.error_code, Some(format!("{topic}-{}", p.partition_index)))
            {
                return Err(error.into());
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_end_offsets_count_new_partitions_from_zero() {
        let before = [
            PartitionOffsets {
                partition: 0,
                start: 0,
                end: 10,
            },
            PartitionOffsets {
                partition: 1,
                start: 5,
                end: 5,
            },
        ];
        let after = [
            PartitionOffsets {
                partition: 0,
                start: 0,
                end: 25,
            },
            PartitionOffsets {
                partition: 1,
                start: 5,
                end: 9,
            },
            PartitionOffsets {
                partition: 2,
                start: 0,
                end: 3,
            },
        ];
        assert_eq!(end_offsets_moved(&before, &after), 15 + 4 + 3);
    }
}

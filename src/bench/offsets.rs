//! The broker's own count of a topic: its partitions and their earliest and latest offsets
//! (Metadata, then ListOffsets from each leader, through an `Admin` of its own). The bench
//! checks its tallies against these, so they never come from the producer or consumer under
//! test.

use std::collections::{BTreeMap, HashMap};

use crate::client::admin::{Admin, OffsetSpec};

use super::BenchError;

/// Kafka's error code for a topic the broker does not know.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

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

/// The partition count of `topic`, creating it with `create` = (partitions, replication
/// factor) when it is missing and `create` is given.
pub async fn prepare_topic(
    bootstrap: &str,
    topic: &str,
    create: Option<(i32, i16)>,
) -> Result<i32, BenchError> {
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

/// Every partition of `topic` with its offsets, in partition order, from the leaders.
pub async fn topic_offsets(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<PartitionOffsets>, BenchError> {
    let admin = Admin::connect(bootstrap).await?;
    let described = admin
        .topics(Some(&[topic]))
        .await?
        .into_iter()
        .find(|t| t.name == topic)
        .ok_or_else(|| {
            BenchError::Refused(format!("the broker's metadata does not list topic {topic}"))
        })?;
    let slots: Vec<(String, i32)> = described
        .partitions
        .iter()
        .map(|p| (topic.to_owned(), p.partition))
        .collect();
    let starts = admin.list_offsets(&slots, OffsetSpec::Earliest).await?;
    let ends = admin.list_offsets(&slots, OffsetSpec::Latest).await?;
    let mut offsets = Vec::with_capacity(slots.len());
    for slot in &slots {
        let found = |table: &BTreeMap<(String, i32), i64>| {
            table.get(slot).copied().ok_or_else(|| {
                BenchError::Refused(format!("ListOffsets left out {topic}-{}", slot.1))
            })
        };
        offsets.push(PartitionOffsets {
            partition: slot.1,
            start: found(&starts)?,
            end: found(&ends)?,
        });
    }
    offsets.sort_by_key(|p| p.partition);
    Ok(offsets)
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

//! `shardlog group list|describe|delete|reset-offsets`, with the lag of each partition as
//! `kafka-consumer-groups.sh --describe` and `rpk group describe` show it.

use std::collections::{BTreeMap, BTreeSet};

use super::{table, Failure, Format};
use crate::client::admin::{Admin, GroupDescription, OffsetSpec, TopicPartition};

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Lists the groups of every broker.
    List,
    /// Shows a group's state, members, and per partition its committed offset, the log end
    /// offset and the lag between them.
    Describe { group: String },
    /// Deletes groups (and their committed offsets); a group with members is refused.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Moves a group's committed offsets. Prints the plan; `--execute` applies it. The group
    /// must have no members.
    ResetOffsets {
        group: String,
        /// Topics whose offsets move, as TOPIC or TOPIC:P1,P2; all partitions without a list.
        #[arg(short = 't', long = "topic", required = true)]
        topics: Vec<String>,
        /// earliest, latest, OFFSET, or @TIMESTAMP (ms since the epoch).
        #[arg(long = "to", allow_hyphen_values = true)]
        to: Option<String>,
        /// Moves each partition by N from its committed offset (negative: back).
        #[arg(long = "shift-by", allow_hyphen_values = true, conflicts_with = "to")]
        shift_by: Option<i64>,
        /// Applies the plan (without it, only prints it).
        #[arg(long)]
        execute: bool,
    },
}

/// Where `--to` moves offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Spec(OffsetSpec),
    At(i64),
    Shift(i64),
}

fn parse_target(to: Option<&str>, shift_by: Option<i64>) -> Result<Target, Failure> {
    match (to, shift_by) {
        (None, Some(n)) => Ok(Target::Shift(n)),
        (Some("earliest" | "start"), None) => Ok(Target::Spec(OffsetSpec::Earliest)),
        (Some("latest" | "end"), None) => Ok(Target::Spec(OffsetSpec::Latest)),
        (Some(v), None) => {
            let bad = || {
                Failure::Usage(format!(
                    "--to takes earliest, latest, OFFSET or @TIMESTAMP, got {v:?}"
                ))
            };
            match v.strip_prefix('@') {
                Some(ts) => ts
                    .parse::<i64>()
                    .ok()
                    .filter(|t| *t >= 0)
                    .map(|t| Target::Spec(OffsetSpec::Timestamp(t)))
                    .ok_or_else(bad),
                None => v
                    .parse::<i64>()
                    .ok()
                    .filter(|o| *o >= 0)
                    .map(Target::At)
                    .ok_or_else(bad),
            }
        }
        _ => Err(Failure::Usage(
            "reset-offsets needs --to or --shift-by".into(),
        )),
    }
}

/// `TOPIC` or `TOPIC:1,2`.
fn parse_topic_partitions(arg: &str) -> Result<(String, Option<Vec<i32>>), Failure> {
    match arg.split_once(':') {
        None => Ok((arg.to_owned(), None)),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|p| p.trim().parse::<i32>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    Failure::Usage(format!("--topic takes TOPIC or TOPIC:P1,P2, got {arg:?}"))
                })?;
            Ok((topic.to_owned(), Some(partitions)))
        }
    }
}

/// One partition row of `describe`.
struct Lag {
    slot: TopicPartition,
    committed: Option<i64>,
    end: i64,
    member: Option<usize>,
}

async fn lags(admin: &Admin, description: &GroupDescription) -> Result<Vec<Lag>, Failure> {
    let committed = admin.committed_offsets(&description.group_id).await?;
    let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (i, member) in description.members.iter().enumerate() {
        for slot in &member.assignment {
            owner.insert(slot.clone(), i);
        }
    }
    let slots: BTreeSet<TopicPartition> = committed.keys().chain(owner.keys()).cloned().collect();
    let slots: Vec<TopicPartition> = slots.into_iter().collect();
    let ends = if slots.is_empty() {
        BTreeMap::new()
    } else {
        admin.list_offsets(&slots, OffsetSpec::Latest).await?
    };
    Ok(slots
        .into_iter()
        .map(|slot| Lag {
            committed: committed.get(&slot).copied(),
            end: ends.get(&slot).copied().unwrap_or(-1),
            member: owner.get(&slot).copied(),
            slot,
        })
        .collect())
}

fn lag_of(row: &Lag) -> Option<i64> {
    row.committed.map(|c| (row.end - c).max(0))
}

pub(super) async fn run(
    bootstrap: String,
    format: Format,
    command: GroupCommand,
) -> Result<String, Failure> {
    let json = format == Format::Json;
    let target = match &command {
        GroupCommand::ResetOffsets {
            to,
            shift_by,
            topics,
            ..
        } => {
            for t in topics {
                parse_topic_partitions(t)?;
            }
            Some(parse_target(to.as_deref(), *shift_by)?)
        }
        _ => None,
    };
    let admin = Admin::connect(&bootstrap).await?;
    match command {
        GroupCommand::List => {
            let groups = admin.list_groups().await?;
            Ok(if json {
                serde_json::Value::Array(
                    groups
                        .iter()
                        .map(|g| {
                            serde_json::json!({
                                "group": g.group_id,
                                "state": g.state,
                                "protocol_type": g.protocol_type,
                            })
                        })
                        .collect(),
                )
                .to_string()
            } else {
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|g| vec![g.group_id.clone(), g.state.clone(), g.protocol_type.clone()])
                    .collect();
                table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows)
            })
        }
        GroupCommand::Describe { group } => {
            let description = admin.describe_group(&group).await?;
            if description.state == "Dead" {
                return Err(Failure::Refused(format!("group {group} does not exist")));
            }
            let rows = lags(&admin, &description).await?;
            let total_lag: i64 = rows.iter().filter_map(lag_of).sum();
            let member = |row: &Lag| row.member.map(|i| &description.members[i]);
            if json {
                return Ok(serde_json::json!({
                    "group": description.group_id,
                    "state": description.state,
                    "coordinator": description.coordinator,
                    "protocol_type": description.protocol_type,
                    "protocol": description.protocol,
                    "members": description.members.iter().map(|m| serde_json::json!({
                        "member_id": m.member_id,
                        "instance_id": m.instance_id,
                        "client_id": m.client_id,
                        "host": m.client_host,
                        "partitions": m.assignment.iter().map(|(t, p)| serde_json::json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "total_lag": total_lag,
                    "partitions": rows.iter().map(|row| serde_json::json!({
                        "topic": row.slot.0,
                        "partition": row.slot.1,
                        "committed_offset": row.committed,
                        "log_end_offset": row.end,
                        "lag": lag_of(row),
                        "member_id": member(row).map(|m| m.member_id.clone()),
                    })).collect::<Vec<_>>(),
                })
                .to_string());
            }
            let mut out = format!(
                "GROUP        {}\nCOORDINATOR  {}\nSTATE        {}\nPROTOCOL     {}\nMEMBERS      {}\nTOTAL-LAG    {}\n\n",
                description.group_id,
                description.coordinator,
                description.state,
                if description.protocol.is_empty() { "-" } else { &description.protocol },
                description.members.len(),
                total_lag,
            );
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    let m = member(row);
                    vec![
                        row.slot.0.clone(),
                        row.slot.1.to_string(),
                        row.committed.map_or("-".into(), |c| c.to_string()),
                        row.end.to_string(),
                        lag_of(row).map_or("-".into(), |l| l.to_string()),
                        m.map_or("-".into(), |m| m.member_id.clone()),
                        m.map_or("-".into(), |m| m.client_id.clone()),
                        m.map_or("-".into(), |m| m.client_host.clone()),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "MEMBER-ID",
                    "CLIENT-ID",
                    "HOST",
                ],
                &table_rows,
            ));
            Ok(out)
        }
        GroupCommand::Delete { groups } => {
            for group in &groups {
                admin.delete_group(group).await?;
            }
            Ok(if json {
                serde_json::json!({ "deleted": groups }).to_string()
            } else {
                groups
                    .iter()
                    .map(|g| format!("deleted group {g}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        GroupCommand::ResetOffsets {
            group,
            topics,
            execute,
            ..
        } => {
            let target = target.expect("parsed above");
            let description = admin.describe_group(&group).await?;
            if !matches!(description.state.as_str(), "Empty" | "Dead") {
                return Err(Failure::Refused(format!(
                    "group {group} is {} with {} member(s); offsets can be reset only while it has none",
                    description.state,
                    description.members.len()
                )));
            }
            let mut slots = Vec::new();
            for arg in &topics {
                let (topic, partitions) = parse_topic_partitions(arg)?;
                let info = admin.topics(Some(&[topic.as_str()])).await?;
                let info = info
                    .into_iter()
                    .find(|t| t.name == topic)
                    .ok_or_else(|| Failure::Refused(format!("topic {topic} does not exist")))?;
                for p in info.partitions {
                    if partitions.as_ref().is_none_or(|l| l.contains(&p.partition)) {
                        slots.push((topic.clone(), p.partition));
                    }
                }
                if let Some(missing) = partitions
                    .iter()
                    .flatten()
                    .find(|p| !slots.iter().any(|(t, q)| *t == topic && q == *p))
                {
                    return Err(Failure::Usage(format!(
                        "topic {topic} has no partition {missing}"
                    )));
                }
            }
            let committed = admin.committed_offsets(&group).await?;
            let starts = admin.list_offsets(&slots, OffsetSpec::Earliest).await?;
            let ends = admin.list_offsets(&slots, OffsetSpec::Latest).await?;
            let wanted: BTreeMap<TopicPartition, i64> = match target {
                Target::Spec(spec) => admin.list_offsets(&slots, spec).await?,
                Target::At(offset) => slots.iter().map(|s| (s.clone(), offset)).collect(),
                Target::Shift(n) => slots
                    .iter()
                    .map(|s| {
                        let from = committed
                            .get(s)
                            .copied()
                            .unwrap_or_else(|| starts.get(s).copied().unwrap_or(0));
                        (s.clone(), from.saturating_add(n))
                    })
                    .collect(),
            };
            // As Kafka's tool does, an offset outside the log is clamped into it.
            let plan: BTreeMap<TopicPartition, i64> = wanted
                .into_iter()
                .map(|(slot, offset)| {
                    let low = starts.get(&slot).copied().unwrap_or(0);
                    let high = ends.get(&slot).copied().unwrap_or(offset);
                    let clamped = offset.clamp(low, high.max(low));
                    (slot, clamped)
                })
                .collect();
            if execute {
                admin.commit_offsets(&group, &plan).await?;
            }
            Ok(if json {
                serde_json::json!({
                    "group": group,
                    "executed": execute,
                    "partitions": plan.iter().map(|((t, p), o)| serde_json::json!({
                        "topic": t, "partition": p,
                        "previous_offset": committed.get(&(t.clone(), *p)),
                        "new_offset": o,
                    })).collect::<Vec<_>>(),
                })
                .to_string()
            } else {
                let rows: Vec<Vec<String>> = plan
                    .iter()
                    .map(|(slot, offset)| {
                        vec![
                            slot.0.clone(),
                            slot.1.to_string(),
                            committed.get(slot).map_or("-".into(), |c| c.to_string()),
                            offset.to_string(),
                        ]
                    })
                    .collect();
                let mut out = table(
                    &["TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"],
                    &rows,
                );
                out.push_str(if execute {
                    "\noffsets reset"
                } else {
                    "\n(dry run: add --execute to apply)"
                });
                out
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets_parse() {
        assert!(matches!(
            parse_target(Some("earliest"), None),
            Ok(Target::Spec(OffsetSpec::Earliest))
        ));
        assert!(matches!(parse_target(Some("12"), None), Ok(Target::At(12))));
        assert!(matches!(
            parse_target(Some("@5"), None),
            Ok(Target::Spec(OffsetSpec::Timestamp(5)))
        ));
        assert!(matches!(
            parse_target(None, Some(-3)),
            Ok(Target::Shift(-3))
        ));
        assert!(matches!(parse_target(None, None), Err(Failure::Usage(_))));
        assert!(matches!(
            parse_target(Some("-1"), None),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn topic_partition_lists_parse() {
        assert!(matches!(parse_topic_partitions("t"), Ok((t, None)) if t == "t"));
        assert!(
            matches!(parse_topic_partitions("t:0,2"), Ok((t, Some(p))) if t == "t" && p == vec![0, 2])
        );
        assert!(matches!(
            parse_topic_partitions("t:x"),
            Err(Failure::Usage(_))
        ));
    }
}

//! `shardlog topic create|list|describe|delete|alter-config|add-partitions`.

use std::collections::BTreeMap;

use super::{key_value, table, Failure, Format};
use crate::client::admin::{Admin, ConfigChange, OffsetSpec, TopicInfo};

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Creates a topic.
    Create {
        name: String,
        /// Partitions.
        #[arg(short = 'p', long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor.
        #[arg(short = 'r', long, default_value_t = 1)]
        replicas: i16,
        /// A topic setting as KEY=VALUE (cleanup.policy=compact, retention.ms=...); repeatable.
        #[arg(short = 'c', long = "topic-config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Lists the topics.
    List {
        /// Includes internal topics (__consumer_offsets).
        #[arg(short = 'i', long)]
        internal: bool,
    },
    /// Shows a topic's partitions (leaders, replicas, offsets) and its settings that differ
    /// from the defaults.
    Describe { name: String },
    /// Deletes topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Changes topic settings: `--set KEY=VALUE`, `--delete KEY` (back to the default).
    AlterConfig {
        name: String,
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(short = 'd', long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Adds partitions to a topic.
    AddPartitions {
        name: String,
        /// How many partitions to add.
        #[arg(short = 'n', long = "num")]
        num: i32,
    },
}

fn topic_json(t: &TopicInfo) -> serde_json::Value {
    serde_json::json!({
        "name": t.name,
        "id": uuid::Uuid::from_bytes(t.id).to_string(),
        "internal": t.internal,
        "partitions": t.partitions.iter().map(|p| serde_json::json!({
            "partition": p.partition,
            "leader": p.leader,
            "leader_epoch": p.leader_epoch,
            "replicas": p.replicas,
            "isr": p.isr,
            "offline": p.offline,
        })).collect::<Vec<_>>(),
    })
}

fn one_topic(mut topics: Vec<TopicInfo>, name: &str) -> Result<TopicInfo, Failure> {
    topics
        .pop()
        .filter(|t| t.name == name)
        .ok_or_else(|| Failure::Refused(format!("topic {name} does not exist")))
}

pub(super) async fn run(
    bootstrap: String,
    format: Format,
    command: TopicCommand,
) -> Result<String, Failure> {
    let json = format == Format::Json;
    // Arguments are checked before the broker is asked anything.
    let changes = match &command {
        TopicCommand::Create { configs, .. } => configs
            .iter()
            .map(|c| key_value(c, "--topic-config").map(|(k, v)| ConfigChange::Set(k, v)))
            .collect::<Result<Vec<_>, _>>()?,
        TopicCommand::AlterConfig { set, delete, .. } => {
            let mut changes = set
                .iter()
                .map(|c| key_value(c, "--set").map(|(k, v)| ConfigChange::Set(k, v)))
                .collect::<Result<Vec<_>, _>>()?;
            changes.extend(delete.iter().map(|k| ConfigChange::Delete(k.clone())));
            if changes.is_empty() {
                return Err(Failure::Usage(
                    "alter-config needs at least one --set KEY=VALUE or --delete KEY".into(),
                ));
            }
            changes
        }
        TopicCommand::AddPartitions { num, .. } if *num < 1 => {
            return Err(Failure::Usage(format!(
                "--num must be at least 1, got {num}"
            )))
        }
        _ => Vec::new(),
    };
    let admin = Admin::connect(&bootstrap).await?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            ..
        } => {
            let configs: Vec<(&str, &str)> = changes
                .iter()
                .filter_map(|c| match c {
                    ConfigChange::Set(k, v) => Some((k.as_str(), v.as_str())),
                    ConfigChange::Delete(_) => None,
                })
                .collect();
            admin
                .create_topic(&name, partitions, replicas, &configs)
                .await?;
            Ok(if json {
                serde_json::json!({"created": name, "partitions": partitions}).to_string()
            } else {
                format!("created topic {name} ({partitions} partitions)")
            })
        }
        TopicCommand::List { internal } => {
            let topics: Vec<TopicInfo> = admin
                .topics(None)
                .await?
                .into_iter()
                .filter(|t| internal || !t.internal)
                .collect();
            Ok(if json {
                serde_json::Value::Array(topics.iter().map(topic_json).collect()).to_string()
            } else {
                let rows: Vec<Vec<String>> = topics
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.partitions.len().to_string(),
                            t.partitions
                                .first()
                                .map_or(0, |p| p.replicas.len())
                                .to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "PARTITIONS", "REPLICAS"], &rows)
            })
        }
        TopicCommand::Describe { name } => {
            let topic = one_topic(admin.topics(Some(&[name.as_str()])).await?, &name)?;
            // Offsets come from each partition's leader; an offline partition has none, and
            // a leader that just went away is reported, not fatal: the layout is still shown.
            let slots: Vec<(String, i32)> = topic
                .partitions
                .iter()
                .filter(|p| p.leader >= 0)
                .map(|p| (topic.name.clone(), p.partition))
                .collect();
            let offsets = |spec| {
                let admin = &admin;
                let slots = &slots;
                async move {
                    admin.list_offsets(slots, spec).await.unwrap_or_else(|e| {
                        eprintln!("offsets unavailable: {e}");
                        BTreeMap::new()
                    })
                }
            };
            let starts = offsets(OffsetSpec::Earliest).await;
            let ends = offsets(OffsetSpec::Latest).await;
            let configs = admin.describe_configs(&name).await?;
            if json {
                let mut value = topic_json(&topic);
                for p in value["partitions"].as_array_mut().into_iter().flatten() {
                    let slot = (name.clone(), p["partition"].as_i64().unwrap_or(-1) as i32);
                    p["log_start_offset"] = starts.get(&slot).copied().into();
                    p["high_watermark"] = ends.get(&slot).copied().into();
                }
                value["configs"] = configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            serde_json::json!({"value": c.value, "source": c.source}),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                return Ok(value.to_string());
            }
            let mut out = format!(
                "NAME        {}\nID          {}\nPARTITIONS  {}\nINTERNAL    {}\n\n",
                topic.name,
                uuid::Uuid::from_bytes(topic.id),
                topic.partitions.len(),
                topic.internal
            );
            let rows: Vec<Vec<String>> = topic
                .partitions
                .iter()
                .map(|p| {
                    let slot = (name.clone(), p.partition);
                    let offset = |m: &BTreeMap<(String, i32), i64>| {
                        m.get(&slot).map_or("-".to_owned(), i64::to_string)
                    };
                    let list =
                        |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                    vec![
                        p.partition.to_string(),
                        if p.leader >= 0 {
                            p.leader.to_string()
                        } else {
                            "none".into()
                        },
                        if p.leader_epoch >= 0 {
                            p.leader_epoch.to_string()
                        } else {
                            "-".into()
                        },
                        list(&p.replicas),
                        list(&p.isr),
                        if p.offline.is_empty() {
                            "-".into()
                        } else {
                            list(&p.offline)
                        },
                        offset(&starts),
                        offset(&ends),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "PARTITION",
                    "LEADER",
                    "EPOCH",
                    "REPLICAS",
                    "ISR",
                    "OFFLINE",
                    "LOG-START-OFFSET",
                    "HIGH-WATERMARK",
                ],
                &rows,
            ));
            let set: Vec<Vec<String>> = configs
                .iter()
                .filter(|c| c.source != "DEFAULT_CONFIG")
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.value.clone().unwrap_or_default(),
                        c.source.to_owned(),
                    ]
                })
                .collect();
            if !set.is_empty() {
                out.push_str("\n\n");
                out.push_str(&table(&["CONFIG", "VALUE", "SOURCE"], &set));
            }
            Ok(out)
        }
        TopicCommand::Delete { names } => {
            for name in &names {
                admin.delete_topic(name).await?;
            }
            Ok(if json {
                serde_json::json!({ "deleted": names }).to_string()
            } else {
                names
                    .iter()
                    .map(|n| format!("deleted topic {n}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        TopicCommand::AlterConfig { name, .. } => {
            admin.alter_configs(&name, &changes).await?;
            Ok(if json {
                serde_json::json!({"altered": name, "changes": changes.len()}).to_string()
            } else {
                format!("altered {} setting(s) of topic {name}", changes.len())
            })
        }
        TopicCommand::AddPartitions { name, num } => {
            let topic = one_topic(admin.topics(Some(&[name.as_str()])).await?, &name)?;
            let total = topic.partitions.len() as i32 + num;
            admin.create_partitions(&name, total).await?;
            Ok(if json {
                serde_json::json!({"topic": name, "partitions": total}).to_string()
            } else {
                format!("topic {name} now has {total} partitions")
            })
        }
    }
}

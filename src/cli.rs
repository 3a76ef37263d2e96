//! The client side of the `shardlog` command: `shardlog topic create|list|describe|delete`, in
//! the manner of `rpk`. Tables on a terminal, `--format json` for scripts. Exit codes: 0 done,
//! 1 the broker refused (the Kafka error is printed), 2 bad arguments, 3 the broker could not
//! be reached.

use std::process::ExitCode;

use crate::client::admin::{Admin, TopicInfo};
use crate::client::{blocking, ClientError};

pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

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
    List,
    /// Shows a topic's partitions and leaders.
    Describe { name: String },
    /// Deletes a topic.
    Delete { name: String },
}

fn failed(error: &ClientError) -> ExitCode {
    eprintln!("shardlog: {error}");
    match error {
        ClientError::Io { .. } | ClientError::Timeout(_) => ExitCode::from(EXIT_UNREACHABLE),
        ClientError::Config(_) => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::from(EXIT_REFUSED),
    }
}

fn topic_json(t: &TopicInfo) -> serde_json::Value {
    serde_json::json!({
        "name": t.name,
        "id": uuid::Uuid::from_bytes(t.id).to_string(),
        "internal": t.internal,
        "partitions": t.partitions.iter().map(|p| serde_json::json!({
            "partition": p.partition,
            "leader": p.leader,
            "replicas": p.replicas,
        })).collect::<Vec<_>>(),
    })
}

pub fn topic(bootstrap: &str, format: Format, command: TopicCommand) -> ExitCode {
    let mut settings = Vec::new();
    if let TopicCommand::Create { configs, .. } = &command {
        for c in configs {
            match c.split_once('=') {
                Some((k, v)) if !k.is_empty() => settings.push((k.to_owned(), v.to_owned())),
                _ => {
                    eprintln!("shardlog: --topic-config takes KEY=VALUE, got {c:?}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    }
    let bootstrap = bootstrap.to_owned();
    let outcome = blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await?;
        match command {
            TopicCommand::Create {
                name,
                partitions,
                replicas,
                ..
            } => {
                let configs: Vec<(&str, &str)> = settings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                admin
                    .create_topic(&name, partitions, replicas, &configs)
                    .await?;
                Ok(match format {
                    Format::Json => serde_json::json!({"created": name}).to_string(),
                    Format::Table => format!("created topic {name} ({partitions} partitions)"),
                })
            }
            TopicCommand::List => {
                let topics = admin.topics(None).await?;
                Ok(match format {
                    Format::Json => {
                        serde_json::Value::Array(topics.iter().map(topic_json).collect())
                            .to_string()
                    }
                    Format::Table => {
                        let mut out = format!("{:<40} {:>10}", "NAME", "PARTITIONS");
                        for t in &topics {
                            out.push_str(&format!("\n{:<40} {:>10}", t.name, t.partitions.len()));
                        }
                        out
                    }
                })
            }
            TopicCommand::Describe { name } => {
                let topics = admin.topics(Some(&[name.as_str()])).await?;
                Ok(match format {
                    Format::Json => topics
                        .first()
                        .map(topic_json)
                        .unwrap_or_default()
                        .to_string(),
                    Format::Table => {
                        let mut out = String::new();
                        for t in &topics {
                            out.push_str(&format!(
                                "NAME {}\nID {}\n{:>9} {:>6} REPLICAS",
                                t.name,
                                uuid::Uuid::from_bytes(t.id),
                                "PARTITION",
                                "LEADER"
                            ));
                            for p in &t.partitions {
                                out.push_str(&format!(
                                    "\n{:>9} {:>6} {:?}",
                                    p.partition, p.leader, p.replicas
                                ));
                            }
                        }
                        out
                    }
                })
            }
            TopicCommand::Delete { name } => {
                admin.delete_topic(&name).await?;
                Ok(match format {
                    Format::Json => serde_json::json!({"deleted": name}).to_string(),
                    Format::Table => format!("deleted topic {name}"),
                })
            }
        }
    });
    match outcome {
        Ok(Ok(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => failed(&error),
        Err(e) => {
            eprintln!("shardlog: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

//! `shardlog cluster info`: the cluster id, the controller, the brokers (address, rack, shards,
//! alive / fenced / shutting down) and the controller quorum (voters, leader, each one's lag).

use super::{table, Failure, Format};
use crate::client::admin::Admin;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Shows the cluster id, the controller, the brokers and their state, the controller
    /// quorum, and how many topics there are.
    Info,
}

pub(super) async fn run(
    bootstrap: String,
    format: Format,
    command: ClusterCommand,
) -> Result<String, Failure> {
    let admin = Admin::connect(&bootstrap).await?;
    match command {
        ClusterCommand::Info => {
            let cluster = admin.describe_cluster().await?;
            let topics = admin.topics(None).await?;
            // Brokers without a controller quorum (or older ones) do not answer DescribeQuorum.
            let quorum = admin.describe_quorum().await.ok();
            let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
            let state = |b: &crate::client::admin::BrokerInfo| {
                if b.shutting_down {
                    "shutting down"
                } else if b.fenced {
                    "fenced"
                } else {
                    "alive"
                }
            };
            if format == Format::Json {
                return Ok(serde_json::json!({
                    "cluster_id": cluster.cluster_id,
                    "controller": cluster.controller,
                    "brokers": cluster.brokers.iter().map(|b| serde_json::json!({
                        "id": b.id, "host": b.host, "port": b.port, "rack": b.rack,
                        "shards": b.shards, "state": state(b),
                    })).collect::<Vec<_>>(),
                    "quorum": quorum.as_ref().map(|q| serde_json::json!({
                        "leader": q.leader,
                        "epoch": q.epoch,
                        "high_watermark": q.high_watermark,
                        "voters": q.voters.iter().map(|(id, end)| serde_json::json!({
                            "id": id,
                            "log_end_offset": end,
                            "lag": (*end >= 0).then(|| (q.high_watermark - end).max(0)),
                        })).collect::<Vec<_>>(),
                    })),
                    "topics": topics.len(),
                    "partitions": partitions,
                })
                .to_string());
            }
            let rows: Vec<Vec<String>> = cluster
                .brokers
                .iter()
                .map(|b| {
                    vec![
                        format!(
                            "{}{}",
                            b.id,
                            if b.id == cluster.controller { "*" } else { "" }
                        ),
                        b.host.clone(),
                        b.port.to_string(),
                        b.rack.clone().unwrap_or_else(|| "-".into()),
                        b.shards.map_or("-".into(), |s| s.to_string()),
                        state(b).to_owned(),
                    ]
                })
                .collect();
            let mut out = format!(
                "CLUSTER     {}\nCONTROLLER  {}\nTOPICS      {} ({} partitions)\n\n{}",
                cluster.cluster_id.as_deref().unwrap_or("-"),
                cluster.controller,
                topics.len(),
                partitions,
                table(&["ID", "HOST", "PORT", "RACK", "SHARDS", "STATE"], &rows)
            );
            if let Some(q) = quorum {
                let voters: Vec<Vec<String>> = q
                    .voters
                    .iter()
                    .map(|(id, end)| {
                        vec![
                            format!("{id}{}", if *id == q.leader { "*" } else { "" }),
                            if *end >= 0 {
                                end.to_string()
                            } else {
                                "-".into()
                            },
                            if *end >= 0 {
                                (q.high_watermark - end).max(0).to_string()
                            } else {
                                "-".into()
                            },
                        ]
                    })
                    .collect();
                out.push_str(&format!(
                    "\n\nQUORUM      leader {} (epoch {}), high watermark {}\n\n{}",
                    q.leader,
                    q.epoch,
                    q.high_watermark,
                    table(&["VOTER", "LOG-END-OFFSET", "LAG"], &voters)
                ));
            }
            Ok(out)
        }
    }
}

//! `shardlog cluster info`: the cluster id, the controller and the brokers.

use super::{table, Failure, Format};
use crate::client::admin::Admin;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Shows the cluster id, the controller, the brokers and how many topics there are.
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
            let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
            if format == Format::Json {
                return Ok(serde_json::json!({
                    "cluster_id": cluster.cluster_id,
                    "controller": cluster.controller,
                    "brokers": cluster.brokers.iter().map(|b| serde_json::json!({
                        "id": b.id, "host": b.host, "port": b.port, "rack": b.rack,
                    })).collect::<Vec<_>>(),
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
                    ]
                })
                .collect();
            Ok(format!(
                "CLUSTER     {}\nCONTROLLER  {}\nTOPICS      {} ({} partitions)\n\n{}",
                cluster.cluster_id.as_deref().unwrap_or("-"),
                cluster.controller,
                topics.len(),
                partitions,
                table(&["ID", "HOST", "PORT", "RACK"], &rows)
            ))
        }
    }
}

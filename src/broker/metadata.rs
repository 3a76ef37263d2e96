//! Cluster metadata: the topic table, the dynamic configs, and where each partition lives.
//!
//! The cluster's metadata log (`crate::cluster`) is the source; shard 0 builds an immutable
//! image of each applied state and hands it to every shard. Shards read their image without
//! locks; a new image replaces it whole. The image carries this broker's effective config
//! (static keys with the dynamic ones laid over them), from which topic defaults and the
//! applied dynamic keys are read, and each partition's replicas, leader and leader epoch.
//! The table types and files here (`topics.bin`, `configs.bin`) are the single-node format
//! from before the metadata log, read once to import an old data directory.
//!
//! Placement within a broker: partition `p` of topic `t` is owned by shard
//! `(crc32c(t) + p) % shards`, so a topic's partitions are spread round-robin over the shards
//! from a per-topic starting point. Which brokers hold it is the controller's choice
//! (`cluster::controller::assign`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cluster::state::{BrokerRegistration, ClusterState, PartitionState, TopicState};
use crate::config::{BrokerConfig, GroupConfig, TopicConfig};
use crate::runtime::ShardId;

pub const CLUSTER_DIR: &str = "__cluster";
const TABLE_FILE: &str = "topics.bin";
const CONFIGS_FILE: &str = "configs.bin";
pub const TOPIC_NAME_MAX_BYTES: usize = 249;

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: u32,
    pub replication_factor: i16,
    /// Topic-level overrides, as set by CreateTopics / AlterConfigs.
    pub overrides: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicTable {
    pub version: u64,
    pub topics: Vec<TopicRecord>,
}

/// The dynamic configs (AlterConfigs, IncrementalAlterConfigs), keyed as Kafka keys them: the
/// cluster-wide broker default (empty resource name), each broker's own (by id), each group's.
/// A file of its own beside the topic table, so that an existing `topics.bin` stays readable.
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConfigTable {
    pub version: u64,
    pub broker_default: Vec<(String, String)>,
    pub brokers: Vec<(i32, Vec<(String, String)>)>,
    pub groups: Vec<(String, Vec<(String, String)>)>,
}

impl ConfigTable {
    pub fn broker_default(&self) -> BTreeMap<String, String> {
        self.broker_default.iter().cloned().collect()
    }

    pub fn broker(&self, id: i32) -> BTreeMap<String, String> {
        self.brokers
            .iter()
            .find(|(broker, _)| *broker == id)
            .map(|(_, configs)| configs.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn group(&self, id: &str) -> BTreeMap<String, String> {
        self.groups
            .iter()
            .find(|(group, _)| group == id)
            .map(|(_, configs)| configs.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn set_broker_default(&mut self, configs: BTreeMap<String, String>) {
        self.broker_default = configs.into_iter().collect();
    }

    /// Replaces one broker's configs; an empty set removes its entry.
    pub fn set_broker(&mut self, id: i32, configs: BTreeMap<String, String>) {
        self.brokers.retain(|(broker, _)| *broker != id);
        if !configs.is_empty() {
            self.brokers.push((id, configs.into_iter().collect()));
            self.brokers.sort_by_key(|(broker, _)| *broker);
        }
    }

    /// Replaces one group's configs; an empty set removes its entry.
    pub fn set_group(&mut self, id: &str, configs: BTreeMap<String, String>) {
        self.groups.retain(|(group, _)| group != id);
        if !configs.is_empty() {
            self.groups
                .push((id.to_owned(), configs.into_iter().collect()));
            self.groups.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
}

/// A topic as shards see it: its record, its partitions' replicas and leaders, and the
/// effective config.
#[derive(Debug, Clone)]
pub struct Topic {
    pub record: TopicRecord,
    pub partitions: Vec<PartitionState>,
    pub config: TopicConfig,
    pub overrides: BTreeMap<String, String>,
}

impl Topic {
    pub fn partition(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
    }
}

/// An immutable view of the cluster that every shard holds.
#[derive(Debug, Default)]
pub struct Image {
    /// The metadata log index this image reflects.
    pub version: u64,
    /// This broker's node id.
    pub me: i32,
    pub topics: BTreeMap<String, Topic>,
    pub by_id: BTreeMap<[u8; 16], String>,
    /// Every registered broker, fenced or not.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// The active controller, when one is known.
    pub controller: Option<i32>,
    /// The dynamic configs as stored.
    pub configs: ConfigTable,
    /// This broker's effective config: the static one with the dynamic configs over it.
    pub broker: Arc<BrokerConfig>,
    /// The groups that have configs of their own, with what they run with.
    pub groups: BTreeMap<String, GroupConfig>,
}

impl Image {
    /// The image of the cluster `state` for the broker whose static config is `static_config`.
    /// A stored config that no longer passes the checks (the static file changed under it)
    /// is logged and left out, as a stored topic config is.
    pub fn build(
        state: &ClusterState,
        static_config: &BrokerConfig,
        controller: Option<i32>,
    ) -> Image {
        let configs = &state.configs;
        let broker = static_config
            .with_dynamic(
                &configs.broker_default(),
                &configs.broker(static_config.broker_id),
            )
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored dynamic broker configs invalid; using the static config");
                static_config.clone()
            });
        let mut groups = BTreeMap::new();
        for (group, _) in &configs.groups {
            match GroupConfig::with_overrides(&broker, &configs.group(group)) {
                Ok(config) => {
                    groups.insert(group.clone(), config);
                }
                Err(e) => {
                    tracing::warn!(group = %group, error = %e, "stored group config invalid; using the defaults")
                }
            }
        }
        let broker = Arc::new(broker);
        let mut image = Image {
            version: state.applied_index,
            me: static_config.broker_id,
            brokers: state.brokers.clone(),
            controller,
            configs: configs.clone(),
            broker: broker.clone(),
            groups,
            ..Image::default()
        };
        for topic in state.topics.values() {
            let record = &topic.record;
            let overrides: BTreeMap<String, String> = record.overrides.iter().cloned().collect();
            let config = TopicConfig::with_overrides(
                &broker.topic_defaults,
                overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap_or_else(|e| {
                tracing::warn!(topic = %record.name, error = %e, "stored topic config invalid; using defaults");
                broker.topic_defaults.clone()
            });
            image.by_id.insert(record.id, record.name.clone());
            image.topics.insert(
                record.name.clone(),
                Topic {
                    record: record.clone(),
                    partitions: topic.partitions.clone(),
                    config,
                    overrides,
                },
            );
        }
        image
    }

    /// The image of a lone broker holding every partition of `table` (tests and tools).
    pub fn single_node(
        table: &TopicTable,
        configs: &ConfigTable,
        static_config: &BrokerConfig,
    ) -> Image {
        let mut state = ClusterState {
            configs: configs.clone(),
            ..ClusterState::default()
        };
        for record in &table.topics {
            let partitions = (0..record.partitions)
                .map(|_| PartitionState::new(vec![static_config.broker_id]))
                .collect();
            state.topics.insert(
                record.name.clone(),
                TopicState {
                    record: record.clone(),
                    partitions,
                },
            );
        }
        let mut image = Image::build(&state, static_config, Some(static_config.broker_id));
        image.version = table.version;
        image
    }

    pub fn to_table(&self) -> TopicTable {
        TopicTable {
            version: self.version,
            topics: self.topics.values().map(|t| t.record.clone()).collect(),
        }
    }

    /// What a KIP-848 group runs with: its own configs, else the broker's defaults.
    pub fn group_config(&self, group: &str) -> GroupConfig {
        self.groups
            .get(group)
            .copied()
            .unwrap_or_else(|| GroupConfig::defaults(&self.broker))
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn partition_exists(&self, name: &str, partition: i32) -> bool {
        self.topics
            .get(name)
            .is_some_and(|t| partition >= 0 && (partition as u32) < t.record.partitions)
    }

    /// The partition's state, if the topic and partition exist.
    pub fn partition(&self, name: &str, partition: i32) -> Option<&PartitionState> {
        self.topics.get(name)?.partition(partition)
    }

    /// Whether this broker leads the partition.
    pub fn leads(&self, name: &str, partition: i32) -> bool {
        self.partition(name, partition)
            .is_some_and(|p| p.leader == self.me)
    }

    /// Whether this broker holds a replica of the partition (it keeps its log).
    pub fn hosts(&self, name: &str, partition: i32) -> bool {
        self.partition(name, partition)
            .is_some_and(|p| p.replicas.contains(&self.me))
    }

    /// A broker clients may be sent to: registered and not fenced.
    pub fn live_broker(&self, id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&id).filter(|b| !b.fenced)
    }
}

pub type SharedImage = Arc<Image>;

pub fn owner_shard(topic: &str, partition: i32, shards: usize) -> ShardId {
    (crc32c::crc32c(topic.as_bytes()) as usize + partition.max(0) as usize) % shards
}

/// Kafka's topic name rule: 1–249 of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > TOPIC_NAME_MAX_BYTES {
        return Err(format!(
            "topic name is {} bytes; at most {TOPIC_NAME_MAX_BYTES}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; allowed: [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

const PRODUCER_IDS_FILE: &str = "producer_ids";

/// The end of the producer ids a single-node data directory from before the metadata log had
/// reserved (0 if none): the metadata log starts its blocks there.
pub fn read_legacy_producer_ids(data_dir: &Path) -> i64 {
    let path = data_dir.join(CLUSTER_DIR).join(PRODUCER_IDS_FILE);
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

pub fn load_table(data_dir: &Path) -> anyhow::Result<TopicTable> {
    let path = data_dir.join(CLUSTER_DIR).join(TABLE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => rkyv::from_bytes::<TopicTable, rkyv::rancor::Error>(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is unreadable: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TopicTable::default()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the table durably: to a temporary file, synced, renamed over the old one.
pub fn store_table(data_dir: &Path, table: &TopicTable) -> anyhow::Result<()> {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(table)
        .map_err(|e| anyhow::anyhow!("cannot encode topic table: {e}"))?;
    replace_file(data_dir, TABLE_FILE, &bytes)
}

/// The dynamic configs; none when the file does not exist yet.
pub fn load_configs(data_dir: &Path) -> anyhow::Result<ConfigTable> {
    let path = data_dir.join(CLUSTER_DIR).join(CONFIGS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => rkyv::from_bytes::<ConfigTable, rkyv::rancor::Error>(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is unreadable: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigTable::default()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the dynamic configs durably, as `store_table` writes the topic table.
pub fn store_configs(data_dir: &Path, configs: &ConfigTable) -> anyhow::Result<()> {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(configs)
        .map_err(|e| anyhow::anyhow!("cannot encode the dynamic configs: {e}"))?;
    replace_file(data_dir, CONFIGS_FILE, &bytes)
}

/// Write-sync-rename of one file under `__cluster`, then a sync of the directory.
fn replace_file(data_dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = data_dir.join(CLUSTER_DIR);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_a_topic_over_all_shards() {
        let shards = 4;
        let mut seen = [0; 4];
        for p in 0..8 {
            seen[owner_shard("orders", p, shards)] += 1;
        }
        assert_eq!(seen, [2, 2, 2, 2]);
        assert_eq!(owner_shard("orders", 3, 1), 0);
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let table = TopicTable {
            version: 3,
            topics: vec![TopicRecord {
                name: "t".into(),
                id: [9; 16],
                partitions: 3,
                replication_factor: 1,
                overrides: vec![("retention.ms".into(), "1000".into())],
            }],
        };
        store_table(dir.path(), &table).unwrap();
        assert_eq!(load_table(dir.path()).unwrap(), table);
    }

    #[test]
    fn dynamic_configs_round_trip_through_disk_and_reach_the_image() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_configs(dir.path()).unwrap(), ConfigTable::default());
        let mut configs = ConfigTable::default();
        configs.set_broker_default([("log.retention.ms".into(), "1000".into())].into());
        configs.set_broker(0, [("background.threads".into(), "9".into())].into());
        configs.set_broker(7, [("background.threads".into(), "3".into())].into());
        configs.set_group(
            "g",
            [("consumer.session.timeout.ms".into(), "50000".into())].into(),
        );
        store_configs(dir.path(), &configs).unwrap();
        let loaded = load_configs(dir.path()).unwrap();
        assert_eq!(loaded, configs);

        let image = Image::single_node(&TopicTable::default(), &loaded, &BrokerConfig::default());
        assert_eq!(image.broker.topic_defaults.retention_ms, 1000);
        assert_eq!(image.broker.dynamic_broker["background.threads"], "9");
        assert_eq!(image.group_config("g").session_timeout_ms, 50_000);
        assert_eq!(image.group_config("other").session_timeout_ms, 45_000);

        configs.set_broker(7, BTreeMap::new());
        configs.set_group("g", BTreeMap::new());
        assert_eq!(configs.brokers.len(), 1);
        assert!(configs.groups.is_empty());
    }
}

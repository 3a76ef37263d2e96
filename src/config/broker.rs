//! Broker settings: `BrokerConfig`, the `server.properties` keys, their defaults and
//! cross-checks, and the merged file and override entries they are read from. The listeners
//! are parsed in `listener.rs` and the cluster keys in `cluster.rs`. Unknown keys are returned
//! for warnings, as Kafka logs them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use super::cluster::{
    resolve_cluster, ProcessRoles, QuorumVoter, BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
    BROKER_SESSION_TIMEOUT_MS_DEFAULT, CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_DEFAULT,
    CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_DEFAULT,
};
use super::listener::{
    advertisable, check_distinct_ports, check_metrics_port, derived_metrics_listener,
    parse_advertised_listeners, parse_listeners, parse_metrics_listener, Listener,
};
use super::parse::parse_properties;
use super::topic::{parse_topic_defaults, TopicConfig};
use super::validate::{parse_boolean, parse_integer, parse_rate};
use super::{invalid, ConfigError};

pub const DEFAULT_PORT: u16 = 9092;

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_CLUSTER_ID: &str = "shardlog-cluster";
pub(super) const MAX_SHARDS: usize = 1024;

const MIN_SHARD_IO_MEMORY_BYTES: i128 = 65536;

/// Kafka broker settings that a stock `server.properties` carries but that
/// have no meaning here; they are accepted without a warning so that an
/// unmodified Kafka config does not bury real typos in noise.
pub const IGNORED_KAFKA_KEYS: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
    "zookeeper.session.timeout.ms",
    "log.flush.scheduler.interval.ms",
    "log.cleaner.enable",
    "log.cleaner.threads",
    "inter.broker.listener.name",
    "inter.broker.protocol.version",
    "security.inter.broker.protocol",
    "controller.quorum.bootstrap.servers",
    "listener.security.protocol.map",
    "metadata.log.dir",
    "num.replica.fetchers",
    "replica.lag.time.max.ms",
    "controlled.shutdown.enable",
    "auto.leader.rebalance.enable",
];

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub broker_id: i32,
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    pub log_dirs: Vec<PathBuf>,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    pub topic_defaults: TopicConfig,
    pub log_retention_check_interval_ms: u64,
    /// How long the cleaner of a shard sleeps between passes over its compacted logs.
    pub log_cleaner_backoff_ms: u64,
    /// Idempotent producers idle this long are forgotten by each partition.
    pub producer_id_expiration_ms: i64,
    /// Read rate of each shard's cleaner; `f64::MAX` (Kafka's default) is unlimited.
    pub log_cleaner_io_max_bytes_per_second: f64,
    /// Same value as `topic_defaults.max_message_bytes`.
    pub message_max_bytes: u32,
    pub socket_request_max_bytes: u32,
    pub num_shards: usize,
    pub shard_pinning: bool,
    /// Registered-buffer memory given to each shard's io_uring.
    pub shard_io_memory_bytes: usize,
    /// In-memory tail cache per shard.
    pub batch_cache_bytes: u64,
    pub fetch_read_ahead_bytes: u32,
    /// Incremental fetch sessions (KIP-227) the broker keeps, split over its shards; 0 turns
    /// sessions off (every fetch is then a full one).
    pub fetch_session_cache_slots: usize,
    /// A fetch session idle this long may be evicted for a new one; one older than this may
    /// be evicted for a larger one.
    pub fetch_session_eviction_ms: u64,
    /// Same value as `topic_defaults.min_insync_replicas`.
    pub min_insync_replicas: i32,
    pub offsets_topic_num_partitions: i32,
    pub offsets_retention_minutes: i64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// How long a rebalance of an empty group waits for more members to join.
    pub group_initial_rebalance_delay_ms: u64,
    pub group_max_size: i32,
    /// KIP-848 groups: the heartbeat interval the broker asks members for.
    pub group_consumer_heartbeat_interval_ms: i32,
    pub group_consumer_session_timeout_ms: i32,
    /// The bounds of a group's own `consumer.session.timeout.ms` (KIP-848 group configs).
    pub group_consumer_min_session_timeout_ms: i32,
    pub group_consumer_max_session_timeout_ms: i32,
    /// The bounds of a group's own `consumer.heartbeat.interval.ms`.
    pub group_consumer_min_heartbeat_interval_ms: i32,
    pub group_consumer_max_heartbeat_interval_ms: i32,
    pub offset_metadata_max_bytes: usize,
    pub offsets_retention_check_interval_ms: u64,
    /// `None` disables the metrics endpoint. Unless `metrics.listener` sets it, loopback on the
    /// first listener's port + 552 (port 0 stays 0; none past 65535).
    pub metrics_listener: Option<SocketAddr>,
    /// What this node runs: a broker, a controller voter, or both (the default).
    pub process_roles: ProcessRoles,
    /// The controller quorum as written; empty when not set, which means a quorum of this
    /// node alone (see `quorum_voters`).
    pub controller_quorum_voters: Vec<QuorumVoter>,
    /// Upper-cased names of the listeners the quorum's traffic arrives on, each one of
    /// `listeners`; empty means the first listener (see `controller_listener`).
    pub controller_listener_names: Vec<String>,
    /// How often a broker renews its lease with the active controller.
    pub broker_heartbeat_interval_ms: u64,
    /// A broker that has not renewed its lease for this long is fenced; at least twice the
    /// heartbeat interval.
    pub broker_session_timeout_ms: u64,
    /// A voter that has not heard from the quorum's leader for this long starts an election.
    pub controller_quorum_election_timeout_ms: u64,
    /// How often the quorum's leader sends to each follower when it has nothing else to send;
    /// less than half the election timeout.
    pub controller_quorum_heartbeat_interval_ms: u64,
    /// The rack this broker is in (`broker.rack`), if any.
    pub broker_rack: Option<String>,
    pub cluster_id: String,
    /// Every key that appeared in the file or overrides, under the name it
    /// was written with (not its alias), with its raw value.
    pub explicit_keys: BTreeMap<String, String>,
    /// The cluster-wide dynamic configs this config was resolved with (`with_dynamic`).
    pub dynamic_default: BTreeMap<String, String>,
    /// This broker's own dynamic configs this config was resolved with.
    pub dynamic_broker: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    /// What `shardlog broker` runs with when given no config file.
    fn default() -> Self {
        let listener = Listener {
            name: "PLAINTEXT".to_string(),
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
        };
        let topic_defaults = TopicConfig::default();
        let listeners = vec![listener];
        BrokerConfig {
            broker_id: 0,
            advertised_listeners: listeners.iter().map(advertisable).collect(),
            metrics_listener: derived_metrics_listener(&listeners),
            listeners,
            log_dirs: vec![PathBuf::from(DEFAULT_DATA_DIR)],
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            delete_topic_enable: true,
            log_retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            producer_id_expiration_ms: 86_400_000,
            log_cleaner_io_max_bytes_per_second: f64::MAX,
            message_max_bytes: topic_defaults.max_message_bytes,
            topic_defaults,
            socket_request_max_bytes: 104_857_600,
            num_shards: std::thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .min(MAX_SHARDS),
            shard_pinning: true,
            shard_io_memory_bytes: 2 << 20,
            batch_cache_bytes: 256 << 20,
            fetch_read_ahead_bytes: 1 << 20,
            fetch_session_cache_slots: 1_000,
            fetch_session_eviction_ms: 120_000,
            min_insync_replicas: 1,
            offsets_topic_num_partitions: 50,
            offsets_retention_minutes: 10_080,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_max_size: i32::MAX,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_min_session_timeout_ms: 45_000,
            group_consumer_max_session_timeout_ms: 60_000,
            group_consumer_min_heartbeat_interval_ms: 5_000,
            group_consumer_max_heartbeat_interval_ms: 15_000,
            offset_metadata_max_bytes: 4096,
            offsets_retention_check_interval_ms: 600_000,
            process_roles: ProcessRoles::default(),
            controller_quorum_voters: Vec::new(),
            controller_listener_names: Vec::new(),
            broker_heartbeat_interval_ms: BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
            broker_session_timeout_ms: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            controller_quorum_election_timeout_ms: CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_DEFAULT,
            controller_quorum_heartbeat_interval_ms:
                CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_DEFAULT,
            broker_rack: None,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            explicit_keys: BTreeMap::new(),
            dynamic_default: BTreeMap::new(),
            dynamic_broker: BTreeMap::new(),
        }
    }
}

/// A key=value line the parser did not recognise; the caller logs a warning that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub key: String,
    /// `None` for a key given as an override.
    pub line: Option<usize>,
}

impl BrokerConfig {
    /// Parses properties text (no file I/O) with `overrides` applied on top.
    /// Unknown keys are returned for warnings rather than rejected, as Kafka does.
    pub fn from_properties(
        text: &str,
        overrides: &[(String, String)],
    ) -> Result<(BrokerConfig, Vec<UnknownKey>), ConfigError> {
        let mut settings = Settings::default();
        for entry in parse_properties(text)? {
            settings.insert(entry.key, entry.value, Some(entry.line));
        }
        for (key, value) in overrides {
            let key = key.trim();
            if key.is_empty() {
                return Err(invalid("--override", &format!("={value}"), "key=value"));
            }
            settings.insert(key.to_string(), value.trim().to_string(), None);
        }
        let config = resolve(&mut settings)?;
        Ok((config, settings.unknown_keys()))
    }

    /// Reads the file (if any) then parses it; `None` means the embedded
    /// defaults with `overrides` applied.
    pub fn load(
        path: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<(BrokerConfig, Vec<UnknownKey>), ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        BrokerConfig::from_properties(&text, overrides)
    }

    /// Each shard's share of `max.incremental.fetch.session.cache.slots` (rounded up, so a
    /// broker with any slots has sessions on every shard).
    pub fn fetch_session_slots_per_shard(&self) -> usize {
        self.fetch_session_cache_slots
            .div_ceil(self.num_shards.max(1))
    }

    /// The first log dir (single-dir broker for now).
    pub fn data_dir(&self) -> &Path {
        self.log_dirs
            .first()
            .map_or(Path::new(DEFAULT_DATA_DIR), PathBuf::as_path)
    }
}

/// Every key `BrokerConfig` reads (for the check that each is described).
#[cfg(test)]
pub(super) fn consulted_keys() -> BTreeSet<&'static str> {
    let mut settings = Settings::default();
    resolve(&mut settings).expect("the defaults resolve");
    settings.consulted
}

pub(super) struct Setting {
    value: String,
    line: Option<usize>,
}

/// The merged file and override entries, remembering which keys the broker
/// looked at so that everything else can be reported as unknown.
#[derive(Default)]
pub(super) struct Settings {
    entries: BTreeMap<String, Setting>,
    consulted: BTreeSet<&'static str>,
}

impl Settings {
    fn insert(&mut self, key: String, value: String, line: Option<usize>) {
        if let Some(previous) = self.entries.get(&key) {
            tracing::debug!(
                key = %key,
                previous = %previous.value,
                "config key set more than once; the last value wins"
            );
        }
        self.entries.insert(key, Setting { value, line });
    }

    pub(super) fn get(&mut self, key: &'static str) -> Option<&str> {
        self.consulted.insert(key);
        self.entries.get(key).map(|setting| setting.value.as_str())
    }

    pub(super) fn integer<T: TryFrom<i128>>(
        &mut self,
        key: &'static str,
        min: i128,
        max: i128,
    ) -> Result<Option<T>, ConfigError> {
        self.get(key)
            .map(|value| parse_integer(key, value, min, max))
            .transpose()
    }

    fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        self.get(key)
            .map(|value| parse_boolean(key, value))
            .transpose()
    }

    /// The value of `key`, an empty one read as unset.
    pub(super) fn text(&mut self, key: &'static str) -> Option<String> {
        self.get(key)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
    }

    fn raw_values(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|(key, setting)| (key.clone(), setting.value.clone()))
            .collect()
    }

    fn unknown_keys(&self) -> Vec<UnknownKey> {
        let mut unknown = Vec::new();
        for (key, setting) in &self.entries {
            if self.consulted.contains(key.as_str()) {
                continue;
            }
            if IGNORED_KAFKA_KEYS.contains(&key.as_str()) {
                tracing::debug!(key = %key, "ignoring Kafka setting that shardlog does not use");
                continue;
            }
            unknown.push(UnknownKey {
                key: key.clone(),
                line: setting.line,
            });
        }
        // File order first, then overrides, so warnings read like the file.
        unknown.sort_by(|left, right| {
            (left.line.is_none(), left.line, &left.key).cmp(&(
                right.line.is_none(),
                right.line,
                &right.key,
            ))
        });
        unknown
    }
}

fn resolve(settings: &mut Settings) -> Result<BrokerConfig, ConfigError> {
    let mut config = BrokerConfig {
        explicit_keys: settings.raw_values(),
        ..BrokerConfig::default()
    };

    let broker_id = settings.integer::<i32>("broker.id", 0, i32::MAX.into())?;
    let node_id = settings.integer::<i32>("node.id", 0, i32::MAX.into())?;
    match (broker_id, node_id) {
        (Some(broker_id), Some(node_id)) if broker_id != node_id => {
            return Err(invalid(
                "broker.id",
                &broker_id.to_string(),
                format!("the same id as node.id ({node_id})"),
            ));
        }
        (Some(id), _) | (None, Some(id)) => config.broker_id = id,
        (None, None) => {}
    }

    if let Some(value) = settings.get("listeners") {
        config.listeners = parse_listeners("listeners", value)?;
        check_distinct_ports("listeners", value, &config.listeners)?;
    }
    config.advertised_listeners = match settings.get("advertised.listeners") {
        Some(value) => parse_advertised_listeners(value, &config.listeners)?,
        None => config.listeners.iter().map(advertisable).collect(),
    };

    // Kafka reads both keys as comma lists and lets log.dirs win.
    let log_dirs = settings.get("log.dirs").map(str::to_string);
    let log_dir = settings.get("log.dir").map(str::to_string);
    if let Some(value) = &log_dirs {
        config.log_dirs = parse_directories("log.dirs", value)?;
    } else if let Some(value) = &log_dir {
        config.log_dirs = parse_directories("log.dir", value)?;
    }

    if let Some(value) = settings.integer("num.partitions", 1, i32::MAX.into())? {
        config.num_partitions = value;
    }
    if let Some(value) = settings.integer("default.replication.factor", 1, i16::MAX.into())? {
        config.default_replication_factor = value;
    }
    if let Some(value) = settings.boolean("auto.create.topics.enable")? {
        config.auto_create_topics_enable = value;
    }
    if let Some(value) = settings.boolean("delete.topic.enable")? {
        config.delete_topic_enable = value;
    }

    config.topic_defaults = parse_topic_defaults(settings)?;
    config.message_max_bytes = config.topic_defaults.max_message_bytes;
    config.min_insync_replicas = config.topic_defaults.min_insync_replicas;

    if let Some(value) = settings.integer("log.retention.check.interval.ms", 1, i64::MAX.into())? {
        config.log_retention_check_interval_ms = value;
    }
    if let Some(value) = settings.integer("log.cleaner.backoff.ms", 1, i64::MAX.into())? {
        config.log_cleaner_backoff_ms = value;
    }
    if let Some(value) = settings.integer("producer.id.expiration.ms", 1, i64::MAX.into())? {
        config.producer_id_expiration_ms = value;
    }
    if let Some(value) = settings.get("log.cleaner.io.max.bytes.per.second") {
        config.log_cleaner_io_max_bytes_per_second =
            parse_rate("log.cleaner.io.max.bytes.per.second", value)?;
    }
    if let Some(value) = settings.integer("socket.request.max.bytes", 1, i32::MAX.into())? {
        config.socket_request_max_bytes = value;
    }
    if let Some(value) = settings.integer("num.shards", 1, MAX_SHARDS as i128)? {
        config.num_shards = value;
    }
    if let Some(value) = settings.boolean("shard.pinning")? {
        config.shard_pinning = value;
    }
    if let Some(value) = settings.integer(
        "shard.io.memory.bytes",
        MIN_SHARD_IO_MEMORY_BYTES,
        i64::MAX.into(),
    )? {
        config.shard_io_memory_bytes = value;
    }
    if let Some(value) = settings.integer("batch.cache.bytes", 0, i64::MAX.into())? {
        config.batch_cache_bytes = value;
    }
    if let Some(value) = settings.integer("fetch.read.ahead.bytes", 0, i32::MAX.into())? {
        config.fetch_read_ahead_bytes = value;
    }
    if let Some(value) = settings.integer(
        "max.incremental.fetch.session.cache.slots",
        0,
        i32::MAX.into(),
    )? {
        config.fetch_session_cache_slots = value;
    }
    if let Some(value) = settings.integer(
        "min.incremental.fetch.session.eviction.ms",
        0,
        i32::MAX.into(),
    )? {
        config.fetch_session_eviction_ms = value;
    }
    if let Some(value) = settings.integer("offsets.topic.num.partitions", 1, i32::MAX.into())? {
        config.offsets_topic_num_partitions = value;
    }
    if let Some(value) = settings.integer("offsets.retention.minutes", 1, i64::MAX.into())? {
        config.offsets_retention_minutes = value;
    }
    if let Some(value) = settings.integer("group.min.session.timeout.ms", 0, i32::MAX.into())? {
        config.group_min_session_timeout_ms = value;
    }
    if let Some(value) = settings.integer("group.max.session.timeout.ms", 0, i32::MAX.into())? {
        config.group_max_session_timeout_ms = value;
    }
    if let Some(value) = settings.integer("group.initial.rebalance.delay.ms", 0, i32::MAX.into())? {
        config.group_initial_rebalance_delay_ms = value;
    }
    if let Some(value) = settings.integer("group.max.size", 1, i32::MAX.into())? {
        config.group_max_size = value;
    }
    if let Some(value) =
        settings.integer("group.consumer.heartbeat.interval.ms", 1, i32::MAX.into())?
    {
        config.group_consumer_heartbeat_interval_ms = value;
    }
    if let Some(value) =
        settings.integer("group.consumer.session.timeout.ms", 1, i32::MAX.into())?
    {
        config.group_consumer_session_timeout_ms = value;
    }
    for (key, field) in [
        (
            "group.consumer.min.session.timeout.ms",
            &mut config.group_consumer_min_session_timeout_ms,
        ),
        (
            "group.consumer.max.session.timeout.ms",
            &mut config.group_consumer_max_session_timeout_ms,
        ),
        (
            "group.consumer.min.heartbeat.interval.ms",
            &mut config.group_consumer_min_heartbeat_interval_ms,
        ),
        (
            "group.consumer.max.heartbeat.interval.ms",
            &mut config.group_consumer_max_heartbeat_interval_ms,
        ),
    ] {
        if let Some(value) = settings.integer(key, 1, i32::MAX.into())? {
            *field = value;
        }
    }
    if let Some(value) = settings.integer("offset.metadata.max.bytes", 0, i32::MAX.into())? {
        config.offset_metadata_max_bytes = value;
    }
    if let Some(value) =
        settings.integer("offsets.retention.check.interval.ms", 1, i32::MAX.into())?
    {
        config.offsets_retention_check_interval_ms = value;
    }
    if config.group_min_session_timeout_ms > config.group_max_session_timeout_ms {
        return Err(invalid(
            "group.min.session.timeout.ms",
            &config.group_min_session_timeout_ms.to_string(),
            format!(
                "at most group.max.session.timeout.ms ({})",
                config.group_max_session_timeout_ms
            ),
        ));
    }

    let metrics_derived = match settings.get("metrics.listener") {
        Some(value) => {
            config.metrics_listener = parse_metrics_listener("metrics.listener", value)?;
            false
        }
        None => {
            config.metrics_listener = derived_metrics_listener(&config.listeners);
            true
        }
    };
    check_metrics_port(config.metrics_listener, metrics_derived, &config.listeners)?;

    resolve_cluster(settings, &mut config)?;
    if let Some(value) = settings.get("cluster.id") {
        if value.is_empty() {
            return Err(invalid("cluster.id", value, "a non-empty cluster id"));
        }
        config.cluster_id = value.to_string();
    }

    Ok(config)
}

fn parse_directories(key: &str, value: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let directories: Vec<PathBuf> = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(PathBuf::from)
        .collect();
    if directories.is_empty() {
        return Err(invalid(key, value, "a comma-separated list of directories"));
    }
    Ok(directories)
}

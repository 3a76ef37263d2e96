//! Broker configuration read from Kafka-style `server.properties`, and the
//! topic-level settings that CreateTopics, DescribeConfigs and AlterConfigs
//! work with.
//!
//! Key names, defaults and validation follow Kafka so that an existing
//! `server.properties` and existing admin tooling keep working.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PORT: u16 = 9092;

const DEFAULT_HOST: &str = "127.0.0.1";
/// Kafka advertises the machine's hostname for a wildcard listener; a
/// single-node development broker is far more likely to be reached locally.
const ADVERTISED_WILDCARD_HOST: &str = "localhost";
const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_CLUSTER_ID: &str = "shardlog-cluster";
const DEFAULT_METRICS_PORT: u16 = 9644;
const MAX_SHARDS: usize = 1024;
const LISTENER_FORMAT: &str = "NAME://host:port, e.g. PLAINTEXT://127.0.0.1:9092";

const MILLISECONDS_PER_MINUTE: i64 = 60 * 1000;
const MILLISECONDS_PER_HOUR: i64 = 60 * MILLISECONDS_PER_MINUTE;
const DEFAULT_ROLL_MS: i64 = 168 * MILLISECONDS_PER_HOUR;
const DEFAULT_RETENTION_MS: i64 = 168 * MILLISECONDS_PER_HOUR;
const UNLIMITED: i64 = -1;
/// Kafka's default for `flush.messages` and `flush.ms`. It is reported for an
/// unset interval and read back as unset, so a DescribeConfigs result fed into
/// AlterConfigs does not silently switch a topic away from syncing every ack.
const UNSET_FLUSH_INTERVAL: i64 = i64::MAX;
/// Kafka's `LegacyRecord.RECORD_OVERHEAD_V0`: a segment must hold at least one record header.
const MIN_SEGMENT_BYTES: i128 = 14;
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
    "controller.listener.names",
    "controller.quorum.bootstrap.servers",
    "listener.security.protocol.map",
    "metadata.log.dir",
    "num.replica.fetchers",
    "replica.lag.time.max.ms",
    "controlled.shutdown.enable",
    "auto.leader.rebalance.enable",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line}: cannot parse {text:?}: expected key=value")]
    Syntax { line: usize, text: String },
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
}

fn invalid(key: &str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Upper-cased like Kafka does, e.g. `PLAINTEXT`.
    pub name: String,
    /// Without brackets for IPv6; `""` means all interfaces.
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// `host:port` in a form that `ToSocketAddrs` accepts, bracketing IPv6
    /// hosts and mapping an empty host to all interfaces.
    pub fn bind_address(&self) -> String {
        if self.host.is_empty() {
            format!("0.0.0.0:{}", self.port)
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(formatter, "{}://[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(formatter, "{}://{}:{}", self.name, self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// The Kafka spelling: `delete`, `compact` or `compact,delete`.
    pub fn as_str(self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            (false, true) => "delete",
            (false, false) => "",
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Settings that a topic may override; the broker-level `log.*` keys are their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// `-1` means unlimited.
    pub retention_ms: i64,
    /// `-1` means unlimited.
    pub retention_bytes: i64,
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    pub cleanup_policy: CleanupPolicy,
    /// `None` syncs before every acknowledgement; `Some(n)` syncs after `n` messages.
    pub flush_messages: Option<u64>,
    /// `None` syncs before every acknowledgement; `Some(n)` syncs at most `n` ms after a write.
    pub flush_ms: Option<u64>,
    pub index_interval_bytes: u32,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            segment_bytes: 1 << 30,
            segment_ms: DEFAULT_ROLL_MS,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: UNLIMITED,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::DELETE,
            flush_messages: None,
            flush_ms: None,
            index_interval_bytes: 4096,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// Where a described config value came from, as Kafka's DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride,
    StaticBroker,
    Default,
}

impl ConfigSource {
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::TopicOverride => 1,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// One topic-level setting, tying its topic key to the broker keys that supply its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicField {
    CleanupPolicy,
    DeleteRetentionMs,
    FlushMessages,
    FlushMs,
    IndexIntervalBytes,
    MaxMessageBytes,
    TimestampType,
    MinCleanableDirtyRatio,
    MinCompactionLagMs,
    RetentionBytes,
    RetentionMs,
    SegmentBytes,
    SegmentMs,
}

impl TopicField {
    /// Sorted by topic key, the order DescribeConfigs lists them in.
    const ALL: [TopicField; 13] = [
        TopicField::CleanupPolicy,
        TopicField::DeleteRetentionMs,
        TopicField::FlushMessages,
        TopicField::FlushMs,
        TopicField::IndexIntervalBytes,
        TopicField::MaxMessageBytes,
        TopicField::TimestampType,
        TopicField::MinCleanableDirtyRatio,
        TopicField::MinCompactionLagMs,
        TopicField::RetentionBytes,
        TopicField::RetentionMs,
        TopicField::SegmentBytes,
        TopicField::SegmentMs,
    ];

    fn topic_key(self) -> &'static str {
        match self {
            TopicField::CleanupPolicy => "cleanup.policy",
            TopicField::DeleteRetentionMs => "delete.retention.ms",
            TopicField::FlushMessages => "flush.messages",
            TopicField::FlushMs => "flush.ms",
            TopicField::IndexIntervalBytes => "index.interval.bytes",
            TopicField::MaxMessageBytes => "max.message.bytes",
            TopicField::TimestampType => "message.timestamp.type",
            TopicField::MinCleanableDirtyRatio => "min.cleanable.dirty.ratio",
            TopicField::MinCompactionLagMs => "min.compaction.lag.ms",
            TopicField::RetentionBytes => "retention.bytes",
            TopicField::RetentionMs => "retention.ms",
            TopicField::SegmentBytes => "segment.bytes",
            TopicField::SegmentMs => "segment.ms",
        }
    }

    /// Broker keys supplying the default, highest precedence first.
    fn broker_keys(self) -> &'static [&'static str] {
        match self {
            TopicField::CleanupPolicy => &["log.cleanup.policy"],
            TopicField::DeleteRetentionMs => &["log.cleaner.delete.retention.ms"],
            TopicField::FlushMessages => &["log.flush.interval.messages"],
            TopicField::FlushMs => &["log.flush.interval.ms"],
            TopicField::IndexIntervalBytes => &["log.index.interval.bytes"],
            TopicField::MaxMessageBytes => &["message.max.bytes"],
            TopicField::TimestampType => &["log.message.timestamp.type"],
            TopicField::MinCleanableDirtyRatio => &["log.cleaner.min.cleanable.ratio"],
            TopicField::MinCompactionLagMs => &["log.cleaner.min.compaction.lag.ms"],
            TopicField::RetentionBytes => &["log.retention.bytes"],
            TopicField::RetentionMs => &[
                "log.retention.ms",
                "log.retention.minutes",
                "log.retention.hours",
            ],
            TopicField::SegmentBytes => &["log.segment.bytes"],
            TopicField::SegmentMs => &["log.roll.ms", "log.roll.hours"],
        }
    }

    fn from_topic_key(key: &str) -> Option<TopicField> {
        TopicField::ALL
            .into_iter()
            .find(|field| field.topic_key() == key)
    }
}

impl TopicConfig {
    /// Topic-level key names this broker understands.
    pub const KEYS: &'static [&'static str] = &[
        "cleanup.policy",
        "delete.retention.ms",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "max.message.bytes",
        "message.timestamp.type",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.ms",
    ];

    /// Applies topic-level overrides (topic key names, e.g. "retention.ms") on
    /// top of `defaults`. An unknown key is rejected the way Kafka answers
    /// INVALID_CONFIG, as is an invalid value.
    pub fn with_overrides<'a>(
        defaults: &TopicConfig,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig, ConfigError> {
        let mut config = defaults.clone();
        for (key, value) in overrides {
            let field = TopicField::from_topic_key(key)
                .ok_or_else(|| invalid(key, value, "a known topic config"))?;
            config.set(field, key, value)?;
        }
        Ok(config)
    }

    /// Every topic config with its effective value, printed as Kafka prints
    /// it, and where that value came from.
    pub fn describe(
        &self,
        overrides: &BTreeMap<String, String>,
        broker: &BrokerConfig,
    ) -> Vec<DescribedConfig> {
        TopicField::ALL
            .into_iter()
            .map(|field| {
                let name = field.topic_key();
                let source = if overrides.contains_key(name) {
                    ConfigSource::TopicOverride
                } else if field
                    .broker_keys()
                    .iter()
                    .any(|key| broker.explicit_keys.contains_key(*key))
                {
                    ConfigSource::StaticBroker
                } else {
                    ConfigSource::Default
                };
                DescribedConfig {
                    name: name.to_string(),
                    value: self.value_text(field),
                    source,
                    read_only: false,
                    sensitive: false,
                }
            })
            .collect()
    }

    /// `key` is the name the user wrote, so errors point at the broker key
    /// when a broker-level default is being parsed.
    fn set(&mut self, field: TopicField, key: &str, value: &str) -> Result<(), ConfigError> {
        match field {
            TopicField::CleanupPolicy => self.cleanup_policy = parse_cleanup_policy(key, value)?,
            TopicField::DeleteRetentionMs => {
                self.delete_retention_ms = parse_integer(key, value, 0, i64::MAX.into())?;
            }
            TopicField::FlushMessages => self.flush_messages = parse_flush_interval(key, value, 1)?,
            TopicField::FlushMs => self.flush_ms = parse_flush_interval(key, value, 0)?,
            TopicField::IndexIntervalBytes => {
                self.index_interval_bytes = parse_integer(key, value, 0, i32::MAX.into())?;
            }
            TopicField::MaxMessageBytes => {
                self.max_message_bytes = parse_integer(key, value, 0, i32::MAX.into())?;
            }
            TopicField::TimestampType => self.timestamp_type = parse_timestamp_type(key, value)?,
            TopicField::MinCleanableDirtyRatio => {
                self.min_cleanable_dirty_ratio = parse_ratio(key, value)?;
            }
            TopicField::MinCompactionLagMs => {
                self.min_compaction_lag_ms = parse_integer(key, value, 0, i64::MAX.into())?;
            }
            TopicField::RetentionBytes => self.retention_bytes = parse_limit(key, value, 1)?,
            TopicField::RetentionMs => self.retention_ms = parse_limit(key, value, 1)?,
            TopicField::SegmentBytes => {
                self.segment_bytes = parse_integer(key, value, MIN_SEGMENT_BYTES, i32::MAX.into())?;
            }
            TopicField::SegmentMs => {
                self.segment_ms = parse_integer(key, value, 1, i64::MAX.into())?;
            }
        }
        Ok(())
    }

    fn value_text(&self, field: TopicField) -> String {
        let flush_text = |interval: Option<u64>| match interval {
            Some(interval) => interval.to_string(),
            None => UNSET_FLUSH_INTERVAL.to_string(),
        };
        match field {
            TopicField::CleanupPolicy => self.cleanup_policy.to_string(),
            TopicField::DeleteRetentionMs => self.delete_retention_ms.to_string(),
            TopicField::FlushMessages => flush_text(self.flush_messages),
            TopicField::FlushMs => flush_text(self.flush_ms),
            TopicField::IndexIntervalBytes => self.index_interval_bytes.to_string(),
            TopicField::MaxMessageBytes => self.max_message_bytes.to_string(),
            TopicField::TimestampType => self.timestamp_type.to_string(),
            // Debug keeps the ".0" that Java's Double.toString prints for whole numbers.
            TopicField::MinCleanableDirtyRatio => format!("{:?}", self.min_cleanable_dirty_ratio),
            TopicField::MinCompactionLagMs => self.min_compaction_lag_ms.to_string(),
            TopicField::RetentionBytes => self.retention_bytes.to_string(),
            TopicField::RetentionMs => self.retention_ms.to_string(),
            TopicField::SegmentBytes => self.segment_bytes.to_string(),
            TopicField::SegmentMs => self.segment_ms.to_string(),
        }
    }
}

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
    pub min_insync_replicas: i16,
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
    pub offset_metadata_max_bytes: usize,
    pub offsets_retention_check_interval_ms: u64,
    /// `None` disables the metrics endpoint.
    pub metrics_listener: Option<SocketAddr>,
    pub controller_quorum_voters: Option<String>,
    pub process_roles: Option<String>,
    pub cluster_id: String,
    /// Every key that appeared in the file or overrides, under the name it
    /// was written with (not its alias), with its raw value.
    pub explicit_keys: BTreeMap<String, String>,
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
        BrokerConfig {
            broker_id: 0,
            advertised_listeners: vec![advertisable(&listener)],
            listeners: vec![listener],
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
            offset_metadata_max_bytes: 4096,
            offsets_retention_check_interval_ms: 600_000,
            metrics_listener: Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_METRICS_PORT,
            )),
            controller_quorum_voters: None,
            process_roles: None,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            explicit_keys: BTreeMap::new(),
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

/// Parses one `--override key=value` argument.
pub fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(invalid("--override", arg, "key=value")),
    }
}

struct Setting {
    value: String,
    line: Option<usize>,
}

/// The merged file and override entries, remembering which keys the broker
/// looked at so that everything else can be reported as unknown.
#[derive(Default)]
struct Settings {
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

    fn get(&mut self, key: &'static str) -> Option<&str> {
        self.consulted.insert(key);
        self.entries.get(key).map(|setting| setting.value.as_str())
    }

    fn integer<T: TryFrom<i128>>(
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

    fn text(&mut self, key: &'static str) -> Option<String> {
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
    if let Some(value) = settings.integer("min.insync.replicas", 1, i16::MAX.into())? {
        config.min_insync_replicas = value;
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

    if let Some(value) = settings.get("metrics.listener") {
        config.metrics_listener = parse_metrics_listener("metrics.listener", value)?;
    }
    check_metrics_port(&config)?;

    config.controller_quorum_voters = settings.text("controller.quorum.voters");
    config.process_roles = settings.text("process.roles");
    if let Some(value) = settings.get("cluster.id") {
        if value.is_empty() {
            return Err(invalid("cluster.id", value, "a non-empty cluster id"));
        }
        config.cluster_id = value.to_string();
    }

    Ok(config)
}

fn parse_topic_defaults(settings: &mut Settings) -> Result<TopicConfig, ConfigError> {
    let mut topic = TopicConfig::default();
    for field in TopicField::ALL {
        match field {
            TopicField::SegmentMs => {
                let milliseconds = settings.integer::<i64>("log.roll.ms", 1, i64::MAX.into())?;
                let hours = settings.integer::<i64>("log.roll.hours", 1, i32::MAX.into())?;
                let from_hours = hours.map(|hours| hours.saturating_mul(MILLISECONDS_PER_HOUR));
                if let Some(segment_ms) = milliseconds.or(from_hours) {
                    topic.segment_ms = segment_ms;
                }
            }
            TopicField::RetentionMs => {
                let milliseconds = settings
                    .get("log.retention.ms")
                    .map(|value| parse_limit::<i64>("log.retention.ms", value, 1))
                    .transpose()?;
                let minutes = settings
                    .get("log.retention.minutes")
                    .map(|value| {
                        parse_limit_in_units(
                            "log.retention.minutes",
                            value,
                            MILLISECONDS_PER_MINUTE,
                        )
                    })
                    .transpose()?;
                let hours = settings
                    .get("log.retention.hours")
                    .map(|value| {
                        parse_limit_in_units("log.retention.hours", value, MILLISECONDS_PER_HOUR)
                    })
                    .transpose()?;
                if let Some(retention_ms) = milliseconds.or(minutes).or(hours) {
                    topic.retention_ms = retention_ms;
                }
            }
            _ => {
                for &key in field.broker_keys() {
                    if let Some(value) = settings.get(key) {
                        topic.set(field, key, value)?;
                    }
                }
            }
        }
    }
    Ok(topic)
}

fn parse_integer<T: TryFrom<i128>>(
    key: &str,
    value: &str,
    min: i128,
    max: i128,
) -> Result<T, ConfigError> {
    parse_integer_expecting(key, value, min, max, || {
        format!("an integer between {min} and {max}")
    })
}

fn parse_integer_expecting<T: TryFrom<i128>>(
    key: &str,
    value: &str,
    min: i128,
    max: i128,
    expected: impl FnOnce() -> String,
) -> Result<T, ConfigError> {
    value
        .trim()
        .parse::<i128>()
        .ok()
        .filter(|number| (min..=max).contains(number))
        .and_then(|number| T::try_from(number).ok())
        .ok_or_else(|| invalid(key, value, expected()))
}

/// A size or duration where `-1` means unlimited; other negatives are
/// rejected because Kafka's meaning for them is accidental.
fn parse_limit<T: TryFrom<i128>>(key: &str, value: &str, unit: i64) -> Result<T, ConfigError> {
    let max = i128::from(i64::MAX / unit);
    parse_integer_expecting(key, value, -1, max, || {
        format!("-1 (unlimited) or an integer between 0 and {max}")
    })
}

/// A retention in minutes or hours; `-1` stays unlimited rather than
/// becoming `-60000`.
fn parse_limit_in_units(key: &str, value: &str, unit_ms: i64) -> Result<i64, ConfigError> {
    let max = i128::from(i32::MAX);
    let count: i64 = parse_integer_expecting(key, value, -1, max, || {
        format!("-1 (unlimited) or an integer between 0 and {max}")
    })?;
    Ok(if count == UNLIMITED {
        UNLIMITED
    } else {
        count.saturating_mul(unit_ms)
    })
}

fn parse_flush_interval(key: &str, value: &str, min: i128) -> Result<Option<u64>, ConfigError> {
    let interval: u64 = parse_integer(key, value, min, i64::MAX.into())?;
    Ok(Some(interval).filter(|&interval| interval != UNSET_FLUSH_INTERVAL as u64))
}

fn parse_boolean(key: &str, value: &str) -> Result<bool, ConfigError> {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if trimmed.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(key, value, "true or false"))
    }
}

fn parse_rate(key: &str, value: &str) -> Result<f64, ConfigError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| invalid(key, value, "a positive number of bytes per second"))
}

fn parse_ratio(key: &str, value: &str) -> Result<f64, ConfigError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|ratio| (0.0..=1.0).contains(ratio))
        .ok_or_else(|| invalid(key, value, "a number between 0 and 1"))
}

fn parse_timestamp_type(key: &str, value: &str) -> Result<TimestampType, ConfigError> {
    match value.trim() {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err(invalid(key, value, "CreateTime or LogAppendTime")),
    }
}

fn parse_cleanup_policy(key: &str, value: &str) -> Result<CleanupPolicy, ConfigError> {
    let mut policy = CleanupPolicy {
        delete: false,
        compact: false,
    };
    for item in value.split(',').map(str::trim) {
        match item {
            "delete" => policy.delete = true,
            "compact" => policy.compact = true,
            _ => return Err(invalid(key, value, "delete, compact or compact,delete")),
        }
    }
    Ok(policy)
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

fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let listeners = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse_listener(key, item))
        .collect::<Result<Vec<_>, _>>()?;
    if listeners.is_empty() {
        return Err(invalid(
            key,
            value,
            format!("at least one listener as {LISTENER_FORMAT}"),
        ));
    }
    for (index, listener) in listeners.iter().enumerate() {
        if listeners[..index]
            .iter()
            .any(|earlier| earlier.name == listener.name)
        {
            return Err(invalid(
                key,
                value,
                format!(
                    "listeners with distinct names ({} appears twice)",
                    listener.name
                ),
            ));
        }
    }
    Ok(listeners)
}

fn parse_listener(key: &str, item: &str) -> Result<Listener, ConfigError> {
    let malformed = || invalid(key, item, LISTENER_FORMAT);
    let (name, address) = item.split_once("://").ok_or_else(malformed)?;
    let name_is_valid = !name.is_empty()
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | '-'));
    if !name_is_valid {
        return Err(malformed());
    }
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']').ok_or_else(malformed)?;
        let port = rest.strip_prefix(':').ok_or_else(malformed)?;
        host.parse::<Ipv6Addr>().map_err(|_| malformed())?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':').ok_or_else(malformed)?;
        let host_is_valid = host.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '.' | '-' | '_')
        });
        if !host_is_valid {
            return Err(malformed());
        }
        (host, port)
    };
    let port = port.parse::<u16>().map_err(|_| {
        invalid(
            key,
            item,
            format!("a port between 0 and 65535 in {LISTENER_FORMAT}"),
        )
    })?;
    Ok(Listener {
        name: name.to_ascii_uppercase(),
        host: host.to_string(),
        port,
    })
}

/// Port 0 asks the OS for a free port, so several such listeners cannot clash.
fn check_distinct_ports(key: &str, value: &str, listeners: &[Listener]) -> Result<(), ConfigError> {
    for (index, listener) in listeners.iter().enumerate() {
        let repeated = listener.port != 0
            && listeners[..index]
                .iter()
                .any(|earlier| earlier.port == listener.port);
        if repeated {
            return Err(invalid(
                key,
                value,
                format!(
                    "listeners on distinct ports ({} appears twice)",
                    listener.port
                ),
            ));
        }
    }
    Ok(())
}

fn is_wildcard_host(host: &str) -> bool {
    host.is_empty()
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_unspecified())
}

/// Clients cannot connect to a wildcard address, so the default advertised
/// form of a wildcard listener names this machine instead.
fn advertisable(listener: &Listener) -> Listener {
    let mut advertised = listener.clone();
    if is_wildcard_host(&advertised.host) {
        advertised.host = ADVERTISED_WILDCARD_HOST.to_string();
    }
    advertised
}

/// Advertised names need only be a subset of `listeners`, because a KRaft
/// config binds a CONTROLLER listener that clients are never told about.
fn parse_advertised_listeners(
    value: &str,
    listeners: &[Listener],
) -> Result<Vec<Listener>, ConfigError> {
    const KEY: &str = "advertised.listeners";
    let mut advertised = parse_listeners(KEY, value)?;
    for listener in &mut advertised {
        if !listeners.iter().any(|bound| bound.name == listener.name) {
            let names: Vec<&str> = listeners.iter().map(|bound| bound.name.as_str()).collect();
            return Err(invalid(
                KEY,
                value,
                format!(
                    "only listener names that listeners defines ({}), but {} is not among them",
                    names.join(", "),
                    listener.name
                ),
            ));
        }
        if listener.port == 0 {
            return Err(invalid(
                KEY,
                value,
                format!("a port between 1 and 65535 for {}", listener.name),
            ));
        }
        if listener.host.is_empty() {
            listener.host = ADVERTISED_WILDCARD_HOST.to_string();
        } else if is_wildcard_host(&listener.host) {
            return Err(invalid(
                KEY,
                value,
                format!(
                    "a host that clients can connect to for {}, not the wildcard {}",
                    listener.name, listener.host
                ),
            ));
        }
    }
    Ok(advertised)
}

fn parse_metrics_listener(key: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let malformed = || {
        invalid(
            key,
            value,
            "an address such as 127.0.0.1:9644, or none to disable",
        )
    };
    if let Ok(address) = trimmed.parse::<SocketAddr>() {
        return Ok(Some(address));
    }
    let (host, port) = trimmed.rsplit_once(':').ok_or_else(malformed)?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return Err(malformed()),
    };
    let port = port.parse::<u16>().map_err(|_| malformed())?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Catches the metrics endpoint and a Kafka listener fighting over one port
/// here, where the message can name both settings, rather than at bind time.
fn check_metrics_port(config: &BrokerConfig) -> Result<(), ConfigError> {
    let Some(metrics) = config.metrics_listener else {
        return Ok(());
    };
    if metrics.port() == 0 {
        return Ok(());
    }
    let overlaps = |host: &str| {
        if metrics.ip().is_unspecified() || is_wildcard_host(host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(address) => address == metrics.ip(),
            Err(_) => host.eq_ignore_ascii_case("localhost") && metrics.ip().is_loopback(),
        }
    };
    match config
        .listeners
        .iter()
        .find(|listener| listener.port == metrics.port() && overlaps(&listener.host))
    {
        Some(listener) => Err(invalid(
            "metrics.listener",
            &metrics.to_string(),
            format!("a port not used by listener {listener}"),
        )),
        None => Ok(()),
    }
}

struct PropertyLine {
    line: usize,
    key: String,
    value: String,
}

/// Java `Properties` syntax, except that a line must separate key and value
/// with `=` or `:`: a bare key is far more likely a mistake than an empty setting.
fn parse_properties(text: &str) -> Result<Vec<PropertyLine>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let start = first.trim_start();
        if start.is_empty() || start.starts_with('#') || start.starts_with('!') {
            continue;
        }
        let mut logical = start.to_string();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let line = index + 1;
        let (key, value) = split_entry(&logical).ok_or_else(|| ConfigError::Syntax {
            line,
            text: logical.trim().to_string(),
        })?;
        entries.push(PropertyLine { line, key, value });
    }
    Ok(entries)
}

/// An odd number of trailing backslashes continues the line; an even number
/// is escaped backslashes.
fn ends_with_continuation(line: &str) -> bool {
    line.chars()
        .rev()
        .take_while(|&character| character == '\\')
        .count()
        % 2
        == 1
}

fn split_entry(line: &str) -> Option<(String, String)> {
    let mut escaped = false;
    let mut separator = None;
    for (index, character) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' {
            escaped = true;
        } else if matches!(character, '=' | ':') {
            separator = Some(index);
            break;
        }
    }
    let separator = separator?;
    let key = unescape(&line[..separator])?.trim().to_string();
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return None;
    }
    let value = unescape(&line[separator + 1..])?.trim().to_string();
    Some((key, value))
}

fn unescape(raw: &str) -> Option<String> {
    let mut output = String::with_capacity(raw.len());
    let mut characters = raw.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            output.push(character);
            continue;
        }
        match characters.next() {
            None => {}
            Some('t') => output.push('\t'),
            Some('n') => output.push('\n'),
            Some('r') => output.push('\r'),
            Some('f') => output.push('\u{c}'),
            Some('u') => {
                let unit = read_utf16_unit(&mut characters)?;
                let decoded = if (0xD800..0xDC00).contains(&unit) {
                    // Java writes characters outside the BMP as two escaped surrogates.
                    let mut lookahead = characters.clone();
                    if lookahead.next() != Some('\\') || lookahead.next() != Some('u') {
                        return None;
                    }
                    let low = read_utf16_unit(&mut lookahead)?;
                    characters = lookahead;
                    char::decode_utf16([unit, low]).next()?.ok()?
                } else {
                    char::from_u32(u32::from(unit))?
                };
                output.push(decoded);
            }
            Some(other) => output.push(other),
        }
    }
    Some(output)
}

fn read_utf16_unit(characters: &mut std::str::Chars<'_>) -> Option<u16> {
    let mut unit: u16 = 0;
    for _ in 0..4 {
        let digit = characters.next()?.to_digit(16)?;
        unit = unit * 16 + u16::try_from(digit).ok()?;
    }
    Some(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (BrokerConfig, Vec<UnknownKey>) {
        match BrokerConfig::from_properties(text, &[]) {
            Ok(parsed) => parsed,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    fn parse_error(text: &str) -> ConfigError {
        match BrokerConfig::from_properties(text, &[]) {
            Ok(_) => panic!("expected {text:?} to be rejected"),
            Err(error) => error,
        }
    }

    fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn assert_invalid(text: &str, expected_key: &str, expected_value: &str) {
        match parse_error(text) {
            ConfigError::Invalid { key, value, .. } => {
                assert_eq!(key, expected_key, "for {text:?}");
                assert_eq!(value, expected_value, "for {text:?}");
            }
            other => panic!("expected Invalid for {text:?}, got {other:?}"),
        }
    }

    fn listener(name: &str, host: &str, port: u16) -> Listener {
        Listener {
            name: name.to_string(),
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn embedded_default() {
        let config = BrokerConfig::default();
        assert_eq!(config.broker_id, 0);
        assert_eq!(
            config.listeners,
            vec![listener("PLAINTEXT", "127.0.0.1", 9092)]
        );
        assert_eq!(config.advertised_listeners, config.listeners);
        assert_eq!(config.data_dir(), Path::new("./data"));
        assert!(config.auto_create_topics_enable);
        assert!(config.delete_topic_enable);
        assert_eq!(config.num_partitions, 1);
        assert_eq!(config.message_max_bytes, 1_048_588);
        assert_eq!(config.topic_defaults, TopicConfig::default());
        assert!((1..=MAX_SHARDS).contains(&config.num_shards));
        assert_eq!(config.shard_io_memory_bytes, 2_097_152);
        assert_eq!(config.batch_cache_bytes, 268_435_456);
        assert_eq!(config.fetch_session_cache_slots, 1_000);
        assert_eq!(config.fetch_session_eviction_ms, 120_000);
        assert_eq!(
            config.metrics_listener,
            Some("127.0.0.1:9644".parse().expect("valid address"))
        );
        assert_eq!(config.cluster_id, "shardlog-cluster");

        let (loaded, unknown) = match BrokerConfig::load(None, &[]) {
            Ok(loaded) => loaded,
            Err(error) => panic!("unexpected error: {error}"),
        };
        assert!(unknown.is_empty());
        assert_eq!(loaded, config);
    }

    #[test]
    fn topic_defaults_match_kafka() {
        let topic = TopicConfig::default();
        assert_eq!(topic.segment_bytes, 1_073_741_824);
        assert_eq!(topic.segment_ms, 604_800_000);
        assert_eq!(topic.retention_ms, 604_800_000);
        assert_eq!(topic.retention_bytes, -1);
        assert_eq!(topic.index_interval_bytes, 4096);
        assert_eq!(topic.cleanup_policy, CleanupPolicy::DELETE);
        assert_eq!(topic.flush_messages, None);
    }

    #[test]
    fn seed_three_broker_lines() {
        let (config, unknown) =
            parse("broker.id=1\nlisteners=PLAINTEXT://:9093\nlog.dir=/tmp/kafka-logs-1\n");
        assert!(unknown.is_empty());
        assert_eq!(config.broker_id, 1);
        assert_eq!(config.listeners, vec![listener("PLAINTEXT", "", 9093)]);
        assert_eq!(
            config.advertised_listeners,
            vec![listener("PLAINTEXT", "localhost", 9093)]
        );
        assert_eq!(config.data_dir(), Path::new("/tmp/kafka-logs-1"));
        assert_eq!(config.listeners[0].bind_address(), "0.0.0.0:9093");
    }

    #[test]
    fn comments_blank_lines_and_colon_separator() {
        let text = "\u{feff}# a comment\n\n   ! another comment\n  num.partitions : 3  \n\
                    auto.create.topics.enable=FALSE\r\ncluster.id = my cluster \n";
        let (config, unknown) = parse(text);
        assert!(unknown.is_empty());
        assert_eq!(config.num_partitions, 3);
        assert!(!config.auto_create_topics_enable);
        assert_eq!(config.cluster_id, "my cluster");
        assert_eq!(config.explicit_keys["num.partitions"], "3");
    }

    #[test]
    fn line_continuation_and_escapes() {
        let text =
            "log.dirs=/data/one,\\\n    /data/two\nprocess.roles=broker\\u002c\\\ncontroller\n\
                    cluster.id=back\\\\slash\nnum.partitions=2\n";
        let (config, unknown) = parse(text);
        assert!(unknown.is_empty());
        assert_eq!(
            config.log_dirs,
            vec![PathBuf::from("/data/one"), PathBuf::from("/data/two")]
        );
        assert_eq!(config.process_roles.as_deref(), Some("broker,controller"));
        assert_eq!(config.cluster_id, "back\\slash");
        assert_eq!(config.num_partitions, 2);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, expected_line) in [
            ("num.partitions=1\njust-a-key\n", 2),
            ("\n\nlisteners PLAINTEXT://:9092\n", 3),
            ("=value\n", 1),
            ("cluster.id=\\u12\n", 1),
        ] {
            match parse_error(text) {
                ConfigError::Syntax { line, .. } => assert_eq!(line, expected_line, "for {text:?}"),
                other => panic!("expected Syntax for {text:?}, got {other:?}"),
            }
        }
        let message = parse_error("oops\n").to_string();
        assert_eq!(message, "line 1: cannot parse \"oops\": expected key=value");
    }

    #[test]
    fn overrides_win_over_file() {
        let text = "num.partitions=3\nbroker.id=1\n";
        let (config, _) = match BrokerConfig::from_properties(
            text,
            &overrides(&[("num.partitions", "8"), ("log.dirs", "/var/shardlog")]),
        ) {
            Ok(parsed) => parsed,
            Err(error) => panic!("unexpected error: {error}"),
        };
        assert_eq!(config.num_partitions, 8);
        assert_eq!(config.broker_id, 1);
        assert_eq!(config.data_dir(), Path::new("/var/shardlog"));
        assert_eq!(config.explicit_keys["num.partitions"], "8");
    }

    #[test]
    fn later_duplicate_wins() {
        let (config, _) = parse("num.partitions=3\nnum.partitions=4\n");
        assert_eq!(config.num_partitions, 4);
    }

    #[test]
    fn retention_precedence() {
        let (config, _) =
            parse("log.retention.hours=1\nlog.retention.minutes=2\nlog.retention.ms=3\n");
        assert_eq!(config.topic_defaults.retention_ms, 3);
        let (config, _) = parse("log.retention.hours=1\nlog.retention.minutes=2\n");
        assert_eq!(config.topic_defaults.retention_ms, 120_000);
        let (config, _) = parse("log.retention.hours=24\n");
        assert_eq!(config.topic_defaults.retention_ms, 86_400_000);
        let (config, _) = parse("log.retention.hours=-1\n");
        assert_eq!(config.topic_defaults.retention_ms, -1);
        let (config, _) = parse("log.retention.ms=-1\n");
        assert_eq!(config.topic_defaults.retention_ms, -1);
        assert_invalid("log.retention.hours=-2\n", "log.retention.hours", "-2");
        assert_invalid("log.retention.ms=-5\n", "log.retention.ms", "-5");
        // A broken lower-precedence key is still an error, as in Kafka.
        assert_invalid(
            "log.retention.ms=1\nlog.retention.hours=x\n",
            "log.retention.hours",
            "x",
        );
    }

    #[test]
    fn roll_hours_and_ms() {
        let (config, _) = parse("log.roll.hours=2\n");
        assert_eq!(config.topic_defaults.segment_ms, 7_200_000);
        let (config, _) = parse("log.roll.hours=2\nlog.roll.ms=500\n");
        assert_eq!(config.topic_defaults.segment_ms, 500);
        assert_invalid("log.roll.hours=0\n", "log.roll.hours", "0");
    }

    #[test]
    fn broker_log_keys_feed_topic_defaults() {
        let (config, unknown) = parse(
            "log.segment.bytes=1048576\nlog.retention.bytes=1000\nmessage.max.bytes=2000000\n\
             log.message.timestamp.type=LogAppendTime\nlog.cleanup.policy=delete, compact\n\
             log.flush.interval.messages=100\nlog.flush.interval.ms=9223372036854775807\n\
             log.index.interval.bytes=8192\nlog.cleaner.delete.retention.ms=10\n\
             log.cleaner.min.compaction.lag.ms=20\nlog.cleaner.min.cleanable.ratio=0.25\n",
        );
        assert!(unknown.is_empty());
        let topic = &config.topic_defaults;
        assert_eq!(topic.segment_bytes, 1_048_576);
        assert_eq!(topic.retention_bytes, 1000);
        assert_eq!(topic.max_message_bytes, 2_000_000);
        assert_eq!(config.message_max_bytes, 2_000_000);
        assert_eq!(topic.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(
            topic.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(topic.flush_messages, Some(100));
        assert_eq!(topic.flush_ms, None);
        assert_eq!(topic.index_interval_bytes, 8192);
        assert_eq!(topic.delete_retention_ms, 10);
        assert_eq!(topic.min_compaction_lag_ms, 20);
        assert_eq!(topic.min_cleanable_dirty_ratio, 0.25);
    }

    #[test]
    fn unknown_keys_reported_with_line() {
        let text = "broker.id=1\nshard.pinnning=false\n# comment\nfoo.bar=1\n";
        let (_, unknown) =
            match BrokerConfig::from_properties(text, &overrides(&[("also.unknown", "x")])) {
                Ok(parsed) => parsed,
                Err(error) => panic!("unexpected error: {error}"),
            };
        assert_eq!(
            unknown,
            vec![
                UnknownKey {
                    key: "shard.pinnning".to_string(),
                    line: Some(2)
                },
                UnknownKey {
                    key: "foo.bar".to_string(),
                    line: Some(4)
                },
                UnknownKey {
                    key: "also.unknown".to_string(),
                    line: None
                },
            ]
        );
    }

    #[test]
    fn ignored_kafka_keys_not_reported() {
        let text: String = IGNORED_KAFKA_KEYS
            .iter()
            .map(|key| format!("{key}=whatever\n"))
            .collect();
        let (config, unknown) = parse(&text);
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(config.explicit_keys.len(), IGNORED_KAFKA_KEYS.len());
    }

    #[test]
    fn kafka_sample_server_properties() {
        let text = "\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
#log.flush.interval.messages=10000
#log.flush.interval.ms=1000
log.retention.hours=168
#log.retention.bytes=1073741824
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
";
        let (config, unknown) = parse(text);
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(config.broker_id, 1);
        assert_eq!(config.process_roles.as_deref(), Some("broker,controller"));
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(
            config.advertised_listeners[1],
            listener("CONTROLLER", "localhost", 9093)
        );
        assert_eq!(config.data_dir(), Path::new("/tmp/kraft-combined-logs"));
        assert_eq!(config.topic_defaults.flush_messages, None);
    }

    #[test]
    fn parsed_extra_broker_keys() {
        let (config, unknown) = parse(
            "min.insync.replicas=2\noffsets.topic.num.partitions=10\n\
             offsets.retention.minutes=60\ngroup.min.session.timeout.ms=100\n\
             group.max.session.timeout.ms=200\nmetrics.listener=0.0.0.0:9100\n\
             controller.quorum.voters=1@localhost:9093\nnum.shards= 4 \nshard.pinning=False\n\
             shard.io.memory.bytes=65536\nbatch.cache.bytes=0\nfetch.read.ahead.bytes=0\n\
             max.incremental.fetch.session.cache.slots=10\n\
             min.incremental.fetch.session.eviction.ms=500\n\
             default.replication.factor=3\ndelete.topic.enable=false\n\
             log.retention.check.interval.ms=1000\nsocket.request.max.bytes=1024\n",
        );
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(config.min_insync_replicas, 2);
        assert_eq!(config.offsets_topic_num_partitions, 10);
        assert_eq!(config.offsets_retention_minutes, 60);
        assert_eq!(config.group_min_session_timeout_ms, 100);
        assert_eq!(config.group_max_session_timeout_ms, 200);
        assert_eq!(
            config.metrics_listener,
            Some("0.0.0.0:9100".parse().expect("valid address"))
        );
        assert_eq!(
            config.controller_quorum_voters.as_deref(),
            Some("1@localhost:9093")
        );
        assert_eq!(config.num_shards, 4);
        assert!(!config.shard_pinning);
        assert_eq!(config.shard_io_memory_bytes, 65536);
        assert_eq!(config.batch_cache_bytes, 0);
        assert_eq!(config.fetch_read_ahead_bytes, 0);
        assert_eq!(config.fetch_session_cache_slots, 10);
        assert_eq!(config.fetch_session_eviction_ms, 500);
        assert_eq!(
            config.fetch_session_slots_per_shard(),
            3,
            "10 over 4 shards"
        );
        assert_eq!(config.default_replication_factor, 3);
        assert!(!config.delete_topic_enable);
        assert_eq!(config.log_retention_check_interval_ms, 1000);
        assert_eq!(config.socket_request_max_bytes, 1024);

        for disabled in ["", "none", "NONE"] {
            let (config, _) = parse(&format!("metrics.listener={disabled}\n"));
            assert_eq!(config.metrics_listener, None);
        }
        let (config, _) = parse("metrics.listener=localhost:9700\n");
        assert_eq!(
            config.metrics_listener,
            Some("127.0.0.1:9700".parse().expect("valid address"))
        );
    }

    #[test]
    fn node_id_is_an_alias_for_broker_id() {
        let (config, _) = parse("node.id=7\n");
        assert_eq!(config.broker_id, 7);
        assert!(config.explicit_keys.contains_key("node.id"));
        assert!(!config.explicit_keys.contains_key("broker.id"));
        let (config, _) = parse("node.id=7\nbroker.id=7\n");
        assert_eq!(config.broker_id, 7);
        assert_invalid("node.id=7\nbroker.id=8\n", "broker.id", "8");
    }

    #[test]
    fn invalid_values_name_key_and_value() {
        let cases = [
            ("num.shards=abc", "num.shards", "abc"),
            ("num.shards=0", "num.shards", "0"),
            (
                "max.incremental.fetch.session.cache.slots=-1",
                "max.incremental.fetch.session.cache.slots",
                "-1",
            ),
            (
                "min.incremental.fetch.session.eviction.ms=soon",
                "min.incremental.fetch.session.eviction.ms",
                "soon",
            ),
            ("num.shards=1025", "num.shards", "1025"),
            ("broker.id=-1", "broker.id", "-1"),
            ("num.partitions=0", "num.partitions", "0"),
            (
                "default.replication.factor=40000",
                "default.replication.factor",
                "40000",
            ),
            (
                "auto.create.topics.enable=yes",
                "auto.create.topics.enable",
                "yes",
            ),
            ("shard.pinning=1", "shard.pinning", "1"),
            ("log.segment.bytes=13", "log.segment.bytes", "13"),
            (
                "log.segment.bytes=2147483648",
                "log.segment.bytes",
                "2147483648",
            ),
            ("message.max.bytes=-1", "message.max.bytes", "-1"),
            ("log.cleanup.policy=remove", "log.cleanup.policy", "remove"),
            ("log.cleanup.policy=", "log.cleanup.policy", ""),
            (
                "log.message.timestamp.type=Now",
                "log.message.timestamp.type",
                "Now",
            ),
            (
                "log.cleaner.min.cleanable.ratio=1.5",
                "log.cleaner.min.cleanable.ratio",
                "1.5",
            ),
            (
                "log.cleaner.min.cleanable.ratio=NaN",
                "log.cleaner.min.cleanable.ratio",
                "NaN",
            ),
            (
                "log.flush.interval.messages=0",
                "log.flush.interval.messages",
                "0",
            ),
            (
                "shard.io.memory.bytes=1024",
                "shard.io.memory.bytes",
                "1024",
            ),
            (
                "log.retention.check.interval.ms=0",
                "log.retention.check.interval.ms",
                "0",
            ),
            (
                "metrics.listener=somewhere",
                "metrics.listener",
                "somewhere",
            ),
            ("log.dirs= , ", "log.dirs", ","),
            ("cluster.id=", "cluster.id", ""),
            ("listeners=", "listeners", ""),
            ("listeners=127.0.0.1:9092", "listeners", "127.0.0.1:9092"),
            (
                "listeners=PLAINTEXT://host",
                "listeners",
                "PLAINTEXT://host",
            ),
            (
                "listeners=PLAINTEXT://:99999",
                "listeners",
                "PLAINTEXT://:99999",
            ),
            (
                "listeners=PLAINTEXT://::1:9092",
                "listeners",
                "PLAINTEXT://::1:9092",
            ),
            (
                "listeners=PLAINTEXT://[nope]:9092",
                "listeners",
                "PLAINTEXT://[nope]:9092",
            ),
            ("listeners=://:9092", "listeners", "://:9092"),
        ];
        for (text, key, value) in cases {
            assert_invalid(text, key, value);
        }
    }

    #[test]
    fn invalid_message_format() {
        let error = parse_error("num.shards=abc\n");
        assert_eq!(
            error.to_string(),
            "invalid value \"abc\" for num.shards: expected an integer between 1 and 1024"
        );
        let error = parse_error("listeners=PLAINTEXT:/x\n");
        assert_eq!(
            error.to_string(),
            "invalid value \"PLAINTEXT:/x\" for listeners: \
             expected NAME://host:port, e.g. PLAINTEXT://127.0.0.1:9092"
        );
    }

    #[test]
    fn listener_forms() {
        let (config, _) =
            parse("listeners=plaintext://[::1]:9092, INTERNAL://broker-1.example.com:9093,\n");
        assert_eq!(
            config.listeners,
            vec![
                listener("PLAINTEXT", "::1", 9092),
                listener("INTERNAL", "broker-1.example.com", 9093),
            ]
        );
        assert_eq!(config.listeners[0].bind_address(), "[::1]:9092");
        assert_eq!(config.listeners[0].to_string(), "PLAINTEXT://[::1]:9092");
        assert_eq!(config.advertised_listeners, config.listeners);

        let (config, _) = parse("listeners=PLAINTEXT://0.0.0.0:9092\n");
        assert_eq!(
            config.advertised_listeners,
            vec![listener("PLAINTEXT", "localhost", 9092)]
        );
    }

    #[test]
    fn listener_cross_checks() {
        let text = "listeners=PLAINTEXT://:9092,INTERNAL://127.0.0.1:9092\n";
        assert_invalid(
            text,
            "listeners",
            "PLAINTEXT://:9092,INTERNAL://127.0.0.1:9092",
        );
        let text = "listeners=PLAINTEXT://:9092,PLAINTEXT://:9093\n";
        assert_invalid(text, "listeners", "PLAINTEXT://:9092,PLAINTEXT://:9093");
        let (config, _) = parse("listeners=A://:0,B://:0\n");
        assert_eq!(config.listeners.len(), 2);

        let text = "listeners=PLAINTEXT://:9092\nadvertised.listeners=OTHER://host:9092\n";
        assert_invalid(text, "advertised.listeners", "OTHER://host:9092");
        let text = "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://0.0.0.0:9092\n";
        assert_invalid(text, "advertised.listeners", "PLAINTEXT://0.0.0.0:9092");
        let (config, _) = parse(
            "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://kafka.example.com:19092\n",
        );
        assert_eq!(
            config.advertised_listeners,
            vec![listener("PLAINTEXT", "kafka.example.com", 19092)]
        );

        assert_invalid(
            "listeners=PLAINTEXT://:9644\n",
            "metrics.listener",
            "127.0.0.1:9644",
        );
        let (config, _) = parse("listeners=PLAINTEXT://:9644\nmetrics.listener=none\n");
        assert_eq!(config.metrics_listener, None);
        let (config, _) = parse("listeners=PLAINTEXT://10.0.0.1:9644\n");
        assert_eq!(config.listeners[0].port, 9644);

        assert_invalid(
            "group.min.session.timeout.ms=5000\ngroup.max.session.timeout.ms=4000\n",
            "group.min.session.timeout.ms",
            "5000",
        );
    }

    #[test]
    fn load_reports_missing_file() {
        let path = Path::new("/nonexistent/shardlog/server.properties");
        match BrokerConfig::load(Some(path), &[]) {
            Err(ConfigError::Io { path: reported, .. }) => assert_eq!(reported, path),
            other => panic!("expected Io error, got {other:?}"),
        }
    }

    #[test]
    fn topic_overrides() {
        let defaults = TopicConfig::default();
        let topic = match TopicConfig::with_overrides(
            &defaults,
            [
                ("retention.ms", "-1"),
                ("segment.bytes", " 1048576 "),
                ("cleanup.policy", "compact"),
                ("flush.messages", "1"),
                ("flush.ms", "0"),
                ("min.cleanable.dirty.ratio", "1"),
                ("message.timestamp.type", "LogAppendTime"),
            ],
        ) {
            Ok(topic) => topic,
            Err(error) => panic!("unexpected error: {error}"),
        };
        assert_eq!(topic.retention_ms, -1);
        assert_eq!(topic.segment_bytes, 1_048_576);
        assert_eq!(
            topic.cleanup_policy,
            CleanupPolicy {
                delete: false,
                compact: true
            }
        );
        assert_eq!(topic.flush_messages, Some(1));
        assert_eq!(topic.flush_ms, Some(0));
        assert_eq!(topic.min_cleanable_dirty_ratio, 1.0);
        assert_eq!(topic.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(topic.index_interval_bytes, defaults.index_interval_bytes);

        match TopicConfig::with_overrides(&defaults, [("retention.ms", "-2")]) {
            Err(ConfigError::Invalid { key, value, .. }) => {
                assert_eq!(key, "retention.ms");
                assert_eq!(value, "-2");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        match TopicConfig::with_overrides(&defaults, [("segment.bytes", "big")]) {
            Err(ConfigError::Invalid { key, value, .. }) => {
                assert_eq!(key, "segment.bytes");
                assert_eq!(value, "big");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        match TopicConfig::with_overrides(&defaults, [("retention.hours", "1")]) {
            Err(ConfigError::Invalid { key, expected, .. }) => {
                assert_eq!(key, "retention.hours");
                assert_eq!(expected, "a known topic config");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn topic_keys_match_fields() {
        let keys: Vec<&str> = TopicField::ALL
            .iter()
            .map(|field| field.topic_key())
            .collect();
        assert_eq!(keys, TopicConfig::KEYS);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn describe_sources_and_values() {
        let (broker, _) = parse("log.retention.hours=24\nlog.segment.bytes=1048576\n");
        let topic_overrides: BTreeMap<String, String> =
            [("segment.bytes".to_string(), "2097152".to_string())].into();
        let topic = match TopicConfig::with_overrides(
            &broker.topic_defaults,
            topic_overrides
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        ) {
            Ok(topic) => topic,
            Err(error) => panic!("unexpected error: {error}"),
        };
        let described = topic.describe(&topic_overrides, &broker);
        assert_eq!(described.len(), TopicConfig::KEYS.len());
        let find = |name: &str| match described.iter().find(|entry| entry.name == name) {
            Some(entry) => entry.clone(),
            None => panic!("{name} not described"),
        };

        let segment = find("segment.bytes");
        assert_eq!(segment.value, "2097152");
        assert_eq!(segment.source, ConfigSource::TopicOverride);
        assert_eq!(segment.source.kafka_code(), 1);

        let retention = find("retention.ms");
        assert_eq!(retention.value, "86400000");
        assert_eq!(retention.source, ConfigSource::StaticBroker);
        assert_eq!(retention.source.kafka_code(), 4);

        let cleanup = find("cleanup.policy");
        assert_eq!(cleanup.value, "delete");
        assert_eq!(cleanup.source, ConfigSource::Default);
        assert_eq!(cleanup.source.kafka_code(), 5);

        assert_eq!(find("flush.messages").value, "9223372036854775807");
        assert_eq!(find("flush.ms").value, "9223372036854775807");
        assert_eq!(find("message.timestamp.type").value, "CreateTime");
        assert_eq!(find("min.cleanable.dirty.ratio").value, "0.5");
        assert_eq!(find("retention.bytes").value, "-1");
        assert!(described
            .iter()
            .all(|entry| !entry.read_only && !entry.sensitive));

        let compacting = TopicConfig {
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: true,
            },
            min_cleanable_dirty_ratio: 1.0,
            ..TopicConfig::default()
        };
        let described = compacting.describe(&BTreeMap::new(), &BrokerConfig::default());
        let value_of = |name: &str| {
            described
                .iter()
                .find(|entry| entry.name == name)
                .map(|entry| entry.value.clone())
        };
        assert_eq!(
            value_of("cleanup.policy").as_deref(),
            Some("compact,delete")
        );
        assert_eq!(
            value_of("min.cleanable.dirty.ratio").as_deref(),
            Some("1.0")
        );
    }

    #[test]
    fn described_values_round_trip() {
        let topic = TopicConfig::default();
        let described = topic.describe(&BTreeMap::new(), &BrokerConfig::default());
        let reparsed = match TopicConfig::with_overrides(
            &TopicConfig {
                retention_ms: 1,
                flush_messages: Some(5),
                ..TopicConfig::default()
            },
            described
                .iter()
                .map(|entry| (entry.name.as_str(), entry.value.as_str())),
        ) {
            Ok(reparsed) => reparsed,
            Err(error) => panic!("unexpected error: {error}"),
        };
        assert_eq!(reparsed, topic);
    }

    #[test]
    fn override_arguments() {
        match parse_override("num.shards=4") {
            Ok(pair) => assert_eq!(pair, ("num.shards".to_string(), "4".to_string())),
            Err(error) => panic!("unexpected error: {error}"),
        }
        match parse_override(" listeners = PLAINTEXT://:9093 ") {
            Ok(pair) => assert_eq!(
                pair,
                ("listeners".to_string(), "PLAINTEXT://:9093".to_string())
            ),
            Err(error) => panic!("unexpected error: {error}"),
        }
        match parse_override("cluster.id=") {
            Ok(pair) => assert_eq!(pair, ("cluster.id".to_string(), String::new())),
            Err(error) => panic!("unexpected error: {error}"),
        }
        assert!(matches!(
            parse_override("num.shards"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            parse_override("=4"),
            Err(ConfigError::Invalid { .. })
        ));
    }
}

//! Topic-level settings: every key Kafka 3.x's `LogConfig` accepts, its type, range, default,
//! broker-level synonyms and documentation, and what DescribeConfigs reports for a topic.
//!
//! The broker-level keys (`log.retention.hours`, `compression.type`, …) are the defaults of
//! these; a topic override wins over them. Keys whose meaning lives in replication or tiered
//! storage (throttled replicas, local retention) are stored and reported so that tools that
//! set them keep working.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::broker::{BrokerConfig, Settings};
use super::validate::{
    parse_boolean, parse_cleanup_policy, parse_flush_interval, parse_integer, parse_limit,
    parse_limit_in_units, parse_ratio, parse_throttled_replicas, parse_timestamp_type,
    parse_version, UNSET_FLUSH_INTERVAL,
};
use super::{invalid, ConfigError};

pub(super) const MILLISECONDS_PER_MINUTE: i64 = 60 * 1000;
pub(super) const MILLISECONDS_PER_HOUR: i64 = 60 * MILLISECONDS_PER_MINUTE;
const DEFAULT_ROLL_MS: i64 = 168 * MILLISECONDS_PER_HOUR;
const DEFAULT_RETENTION_MS: i64 = 168 * MILLISECONDS_PER_HOUR;
pub(super) const UNLIMITED: i64 = -1;
/// Kafka's `LegacyRecord.RECORD_OVERHEAD_V0`: a segment must hold at least one record header.
const MIN_SEGMENT_BYTES: i128 = 14;
/// Kafka's `local.retention.*` default: "the same as retention.*".
const LOCAL_RETENTION_SAME_AS_TOTAL: i64 = -2;
/// `java.util.zip.Deflater.DEFAULT_COMPRESSION`.
const GZIP_DEFAULT_LEVEL: i32 = -1;
/// The message format Kafka 3.x reports (and ignores) by default.
const DEFAULT_MESSAGE_FORMAT_VERSION: &str = "3.0-IV1";

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

/// `compression.type` of a topic: keep what the producer sent, or store in one codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl TopicCompression {
    const ALL: [TopicCompression; 6] = [
        TopicCompression::Uncompressed,
        TopicCompression::Zstd,
        TopicCompression::Lz4,
        TopicCompression::Snappy,
        TopicCompression::Gzip,
        TopicCompression::Producer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicCompression::Producer => "producer",
            TopicCompression::Uncompressed => "uncompressed",
            TopicCompression::Gzip => "gzip",
            TopicCompression::Snappy => "snappy",
            TopicCompression::Lz4 => "lz4",
            TopicCompression::Zstd => "zstd",
        }
    }

    /// The record batch attribute bits of the codec; `None` keeps the producer's.
    pub fn attribute(self) -> Option<i16> {
        match self {
            TopicCompression::Producer => None,
            TopicCompression::Uncompressed => Some(0),
            TopicCompression::Gzip => Some(1),
            TopicCompression::Snappy => Some(2),
            TopicCompression::Lz4 => Some(3),
            TopicCompression::Zstd => Some(4),
        }
    }

    fn parse(key: &str, value: &str) -> Result<TopicCompression, ConfigError> {
        TopicCompression::ALL
            .into_iter()
            .find(|codec| codec.as_str() == value.trim())
            .ok_or_else(|| {
                invalid(
                    key,
                    value,
                    "one of uncompressed, zstd, lz4, snappy, gzip, producer",
                )
            })
    }
}

/// Settings that a topic may override; the broker-level keys are their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    pub compression: TopicCompression,
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
    pub delete_retention_ms: i64,
    /// How long a segment removed by retention stays on disk before it is unlinked.
    pub file_delete_delay_ms: i64,
    /// `None` syncs before every acknowledgement; `Some(n)` syncs after `n` messages.
    pub flush_messages: Option<u64>,
    /// `None` syncs before every acknowledgement; `Some(n)` syncs at most `n` ms after a write.
    pub flush_ms: Option<u64>,
    pub follower_replication_throttled_replicas: Arc<str>,
    pub index_interval_bytes: u32,
    pub leader_replication_throttled_replicas: Arc<str>,
    /// `-2`: the same as `retention.bytes`.
    pub local_retention_bytes: i64,
    /// `-2`: the same as `retention.ms`.
    pub local_retention_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub max_message_bytes: u32,
    pub message_downconversion_enable: bool,
    /// Accepted and reported; Kafka 3.x ignores it too (v2 batches are always stored).
    pub message_format_version: Arc<str>,
    pub timestamp_after_max_ms: i64,
    pub timestamp_before_max_ms: i64,
    pub timestamp_difference_max_ms: i64,
    pub timestamp_type: TimestampType,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub min_insync_replicas: i32,
    /// Allocate a new segment file's full `segment.bytes` when it is created.
    pub preallocate: bool,
    pub remote_log_copy_disable: bool,
    pub remote_log_delete_on_disable: bool,
    pub remote_storage_enable: bool,
    /// `-1` means unlimited (any negative does, as in Kafka).
    pub retention_bytes: i64,
    /// `-1` means unlimited.
    pub retention_ms: i64,
    pub segment_bytes: u64,
    /// Size cap of a segment's offset index: the segment rolls when the index is full.
    pub segment_index_bytes: u32,
    /// The most that a segment's roll time is moved earlier, chosen at random per segment.
    pub segment_jitter_ms: i64,
    pub segment_ms: i64,
    pub unclean_leader_election_enable: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            cleanup_policy: CleanupPolicy::DELETE,
            compression: TopicCompression::Producer,
            compression_gzip_level: GZIP_DEFAULT_LEVEL,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            delete_retention_ms: 86_400_000,
            file_delete_delay_ms: 60_000,
            flush_messages: None,
            flush_ms: None,
            follower_replication_throttled_replicas: Arc::from(""),
            index_interval_bytes: 4096,
            leader_replication_throttled_replicas: Arc::from(""),
            local_retention_bytes: LOCAL_RETENTION_SAME_AS_TOTAL,
            local_retention_ms: LOCAL_RETENTION_SAME_AS_TOTAL,
            max_compaction_lag_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            message_downconversion_enable: true,
            message_format_version: Arc::from(DEFAULT_MESSAGE_FORMAT_VERSION),
            timestamp_after_max_ms: i64::MAX,
            timestamp_before_max_ms: i64::MAX,
            timestamp_difference_max_ms: i64::MAX,
            timestamp_type: TimestampType::CreateTime,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            min_insync_replicas: 1,
            preallocate: false,
            remote_log_copy_disable: false,
            remote_log_delete_on_disable: false,
            remote_storage_enable: false,
            retention_bytes: UNLIMITED,
            retention_ms: DEFAULT_RETENTION_MS,
            segment_bytes: 1 << 30,
            segment_index_bytes: 10 * 1024 * 1024,
            segment_jitter_ms: 0,
            segment_ms: DEFAULT_ROLL_MS,
            unclean_leader_election_enable: false,
        }
    }
}

impl TopicConfig {
    /// How far back from now a CreateTime batch's timestamps may be: `before.max.ms`, or the
    /// older `difference.max.ms` while `before` is unset (Kafka 3.6+, KIP-937).
    pub fn timestamp_before_window_ms(&self) -> i64 {
        if self.timestamp_before_max_ms != i64::MAX {
            self.timestamp_before_max_ms
        } else {
            self.timestamp_difference_max_ms
        }
    }

    /// How far ahead of now a CreateTime batch's timestamps may be.
    pub fn timestamp_after_window_ms(&self) -> i64 {
        if self.timestamp_after_max_ms != i64::MAX {
            self.timestamp_after_max_ms
        } else {
            self.timestamp_difference_max_ms
        }
    }

    /// The roll time of a segment: on compacted topics `max.compaction.lag.ms` caps it, so
    /// that records in the active segment also become cleanable in time (Kafka's
    /// `LogConfig.maxSegmentMs`).
    pub fn roll_ms(&self) -> i64 {
        if self.cleanup_policy.compact {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

/// Kafka's `ConfigDef.Type`, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Password,
}

impl ConfigType {
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Password => 9,
        }
    }
}

/// Where a described config value came from, as Kafka's DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride,
    /// Set dynamically for this broker (resource name = its id).
    DynamicBroker,
    /// Set dynamically as the cluster-wide default (empty resource name).
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    /// Set for one group (KIP-848 group configs).
    Group,
}

impl ConfigSource {
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::TopicOverride => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
            ConfigSource::Group => 8,
        }
    }
}

/// One of the values a config could take its value from, most precedent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    /// `None` for a sensitive value.
    pub value: Option<String>,
    pub source: ConfigSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    /// `None` when the key has no value (Kafka's null) or the value is sensitive.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    pub config_type: ConfigType,
    pub documentation: &'static str,
    /// The topic override (if any), the broker keys that are set (per broker, cluster
    /// default, static), then the default.
    pub synonyms: Vec<ConfigSynonym>,
}

impl DescribedConfig {
    /// DescribeConfigs v0's `is_default`.
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

/// One topic-level key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TopicField {
    CleanupPolicy,
    CompressionGzipLevel,
    CompressionLz4Level,
    CompressionType,
    CompressionZstdLevel,
    DeleteRetentionMs,
    FileDeleteDelayMs,
    FlushMessages,
    FlushMs,
    FollowerReplicationThrottledReplicas,
    IndexIntervalBytes,
    LeaderReplicationThrottledReplicas,
    LocalRetentionBytes,
    LocalRetentionMs,
    MaxCompactionLagMs,
    MaxMessageBytes,
    MessageDownconversionEnable,
    MessageFormatVersion,
    TimestampAfterMaxMs,
    TimestampBeforeMaxMs,
    TimestampDifferenceMaxMs,
    TimestampType,
    MinCleanableDirtyRatio,
    MinCompactionLagMs,
    MinInsyncReplicas,
    Preallocate,
    RemoteLogCopyDisable,
    RemoteLogDeleteOnDisable,
    RemoteStorageEnable,
    RetentionBytes,
    RetentionMs,
    SegmentBytes,
    SegmentIndexBytes,
    SegmentJitterMs,
    SegmentMs,
    UncleanLeaderElectionEnable,
}

/// A broker key that supplies a topic key's default, and how many of the topic key's units
/// one of its units is (`log.retention.hours` → 3 600 000 ms).
type BrokerSynonym = (&'static str, i64);

impl TopicField {
    /// Sorted by topic key, the order DescribeConfigs lists them in.
    pub(super) const ALL: [TopicField; 36] = [
        TopicField::CleanupPolicy,
        TopicField::CompressionGzipLevel,
        TopicField::CompressionLz4Level,
        TopicField::CompressionType,
        TopicField::CompressionZstdLevel,
        TopicField::DeleteRetentionMs,
        TopicField::FileDeleteDelayMs,
        TopicField::FlushMessages,
        TopicField::FlushMs,
        TopicField::FollowerReplicationThrottledReplicas,
        TopicField::IndexIntervalBytes,
        TopicField::LeaderReplicationThrottledReplicas,
        TopicField::LocalRetentionBytes,
        TopicField::LocalRetentionMs,
        TopicField::MaxCompactionLagMs,
        TopicField::MaxMessageBytes,
        TopicField::MessageDownconversionEnable,
        TopicField::MessageFormatVersion,
        TopicField::TimestampAfterMaxMs,
        TopicField::TimestampBeforeMaxMs,
        TopicField::TimestampDifferenceMaxMs,
        TopicField::TimestampType,
        TopicField::MinCleanableDirtyRatio,
        TopicField::MinCompactionLagMs,
        TopicField::MinInsyncReplicas,
        TopicField::Preallocate,
        TopicField::RemoteLogCopyDisable,
        TopicField::RemoteLogDeleteOnDisable,
        TopicField::RemoteStorageEnable,
        TopicField::RetentionBytes,
        TopicField::RetentionMs,
        TopicField::SegmentBytes,
        TopicField::SegmentIndexBytes,
        TopicField::SegmentJitterMs,
        TopicField::SegmentMs,
        TopicField::UncleanLeaderElectionEnable,
    ];

    pub(super) fn topic_key(self) -> &'static str {
        match self {
            TopicField::CleanupPolicy => "cleanup.policy",
            TopicField::CompressionGzipLevel => "compression.gzip.level",
            TopicField::CompressionLz4Level => "compression.lz4.level",
            TopicField::CompressionType => "compression.type",
            TopicField::CompressionZstdLevel => "compression.zstd.level",
            TopicField::DeleteRetentionMs => "delete.retention.ms",
            TopicField::FileDeleteDelayMs => "file.delete.delay.ms",
            TopicField::FlushMessages => "flush.messages",
            TopicField::FlushMs => "flush.ms",
            TopicField::FollowerReplicationThrottledReplicas => {
                "follower.replication.throttled.replicas"
            }
            TopicField::IndexIntervalBytes => "index.interval.bytes",
            TopicField::LeaderReplicationThrottledReplicas => {
                "leader.replication.throttled.replicas"
            }
            TopicField::LocalRetentionBytes => "local.retention.bytes",
            TopicField::LocalRetentionMs => "local.retention.ms",
            TopicField::MaxCompactionLagMs => "max.compaction.lag.ms",
            TopicField::MaxMessageBytes => "max.message.bytes",
            TopicField::MessageDownconversionEnable => "message.downconversion.enable",
            TopicField::MessageFormatVersion => "message.format.version",
            TopicField::TimestampAfterMaxMs => "message.timestamp.after.max.ms",
            TopicField::TimestampBeforeMaxMs => "message.timestamp.before.max.ms",
            TopicField::TimestampDifferenceMaxMs => "message.timestamp.difference.max.ms",
            TopicField::TimestampType => "message.timestamp.type",
            TopicField::MinCleanableDirtyRatio => "min.cleanable.dirty.ratio",
            TopicField::MinCompactionLagMs => "min.compaction.lag.ms",
            TopicField::MinInsyncReplicas => "min.insync.replicas",
            TopicField::Preallocate => "preallocate",
            TopicField::RemoteLogCopyDisable => "remote.log.copy.disable",
            TopicField::RemoteLogDeleteOnDisable => "remote.log.delete.on.disable",
            TopicField::RemoteStorageEnable => "remote.storage.enable",
            TopicField::RetentionBytes => "retention.bytes",
            TopicField::RetentionMs => "retention.ms",
            TopicField::SegmentBytes => "segment.bytes",
            TopicField::SegmentIndexBytes => "segment.index.bytes",
            TopicField::SegmentJitterMs => "segment.jitter.ms",
            TopicField::SegmentMs => "segment.ms",
            TopicField::UncleanLeaderElectionEnable => "unclean.leader.election.enable",
        }
    }

    /// Broker keys supplying the default, highest precedence first (Kafka's
    /// `TopicConfigSynonyms`).
    pub(super) fn broker_keys(self) -> &'static [BrokerSynonym] {
        const HOUR: i64 = MILLISECONDS_PER_HOUR;
        const MINUTE: i64 = MILLISECONDS_PER_MINUTE;
        match self {
            TopicField::CleanupPolicy => &[("log.cleanup.policy", 1)],
            TopicField::CompressionGzipLevel => &[("compression.gzip.level", 1)],
            TopicField::CompressionLz4Level => &[("compression.lz4.level", 1)],
            TopicField::CompressionType => &[("compression.type", 1)],
            TopicField::CompressionZstdLevel => &[("compression.zstd.level", 1)],
            TopicField::DeleteRetentionMs => &[("log.cleaner.delete.retention.ms", 1)],
            TopicField::FileDeleteDelayMs => &[("log.segment.delete.delay.ms", 1)],
            TopicField::FlushMessages => &[("log.flush.interval.messages", 1)],
            TopicField::FlushMs => &[("log.flush.interval.ms", 1)],
            TopicField::IndexIntervalBytes => &[("log.index.interval.bytes", 1)],
            TopicField::LocalRetentionBytes => &[("log.local.retention.bytes", 1)],
            TopicField::LocalRetentionMs => &[("log.local.retention.ms", 1)],
            TopicField::MaxCompactionLagMs => &[("log.cleaner.max.compaction.lag.ms", 1)],
            TopicField::MaxMessageBytes => &[("message.max.bytes", 1)],
            TopicField::MessageDownconversionEnable => &[("log.message.downconversion.enable", 1)],
            TopicField::MessageFormatVersion => &[("log.message.format.version", 1)],
            TopicField::TimestampAfterMaxMs => &[("log.message.timestamp.after.max.ms", 1)],
            TopicField::TimestampBeforeMaxMs => &[("log.message.timestamp.before.max.ms", 1)],
            TopicField::TimestampDifferenceMaxMs => {
                &[("log.message.timestamp.difference.max.ms", 1)]
            }
            TopicField::TimestampType => &[("log.message.timestamp.type", 1)],
            TopicField::MinCleanableDirtyRatio => &[("log.cleaner.min.cleanable.ratio", 1)],
            TopicField::MinCompactionLagMs => &[("log.cleaner.min.compaction.lag.ms", 1)],
            TopicField::MinInsyncReplicas => &[("min.insync.replicas", 1)],
            TopicField::Preallocate => &[("log.preallocate", 1)],
            TopicField::RetentionBytes => &[("log.retention.bytes", 1)],
            TopicField::RetentionMs => &[
                ("log.retention.ms", 1),
                ("log.retention.minutes", MINUTE),
                ("log.retention.hours", HOUR),
            ],
            TopicField::SegmentBytes => &[("log.segment.bytes", 1)],
            TopicField::SegmentIndexBytes => &[("log.index.size.max.bytes", 1)],
            TopicField::SegmentJitterMs => {
                &[("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", HOUR)]
            }
            TopicField::SegmentMs => &[("log.roll.ms", 1), ("log.roll.hours", HOUR)],
            TopicField::UncleanLeaderElectionEnable => &[("unclean.leader.election.enable", 1)],
            TopicField::FollowerReplicationThrottledReplicas
            | TopicField::LeaderReplicationThrottledReplicas
            | TopicField::RemoteLogCopyDisable
            | TopicField::RemoteLogDeleteOnDisable
            | TopicField::RemoteStorageEnable => &[],
        }
    }

    pub(super) fn config_type(self) -> ConfigType {
        match self {
            TopicField::CleanupPolicy
            | TopicField::FollowerReplicationThrottledReplicas
            | TopicField::LeaderReplicationThrottledReplicas => ConfigType::List,
            TopicField::CompressionType
            | TopicField::MessageFormatVersion
            | TopicField::TimestampType => ConfigType::String,
            TopicField::CompressionGzipLevel
            | TopicField::CompressionLz4Level
            | TopicField::CompressionZstdLevel
            | TopicField::IndexIntervalBytes
            | TopicField::MaxMessageBytes
            | TopicField::MinInsyncReplicas
            | TopicField::SegmentBytes
            | TopicField::SegmentIndexBytes => ConfigType::Int,
            TopicField::MessageDownconversionEnable
            | TopicField::Preallocate
            | TopicField::RemoteLogCopyDisable
            | TopicField::RemoteLogDeleteOnDisable
            | TopicField::RemoteStorageEnable
            | TopicField::UncleanLeaderElectionEnable => ConfigType::Boolean,
            TopicField::MinCleanableDirtyRatio => ConfigType::Double,
            TopicField::DeleteRetentionMs
            | TopicField::FileDeleteDelayMs
            | TopicField::FlushMessages
            | TopicField::FlushMs
            | TopicField::LocalRetentionBytes
            | TopicField::LocalRetentionMs
            | TopicField::MaxCompactionLagMs
            | TopicField::MinCompactionLagMs
            | TopicField::TimestampAfterMaxMs
            | TopicField::TimestampBeforeMaxMs
            | TopicField::TimestampDifferenceMaxMs
            | TopicField::RetentionBytes
            | TopicField::RetentionMs
            | TopicField::SegmentJitterMs
            | TopicField::SegmentMs => ConfigType::Long,
        }
    }

    pub(super) fn documentation(self) -> &'static str {
        match self {
            TopicField::CleanupPolicy => "delete (drop old segments by retention), compact (keep the latest record per key), or both",
            TopicField::CompressionGzipLevel => "the gzip level used when compression.type is gzip: 1 to 9, or -1 for the codec's default",
            TopicField::CompressionLz4Level => "the lz4 level used when compression.type is lz4: 1 to 17",
            TopicField::CompressionType => "the codec batches are stored in: producer keeps the producer's; uncompressed, gzip, snappy, lz4 or zstd makes the broker recompress every appended batch into it",
            TopicField::CompressionZstdLevel => "the zstd level used when compression.type is zstd: -131072 to 22",
            TopicField::DeleteRetentionMs => "how long a tombstone of a compacted topic is kept after the cleaner first reaches it",
            TopicField::FileDeleteDelayMs => "how long a segment removed by retention stays on disk before its files are deleted",
            TopicField::FlushMessages => "sync after this many messages instead of before every acknowledgement",
            TopicField::FlushMs => "sync at most this long after a write instead of before every acknowledgement",
            TopicField::FollowerReplicationThrottledReplicas => "replicas whose follower-side replication is throttled (partition:broker list, or *); stored for tooling",
            TopicField::IndexIntervalBytes => "bytes of batches between two entries of a segment's offset and time indexes",
            TopicField::LeaderReplicationThrottledReplicas => "replicas whose leader-side replication is throttled (partition:broker list, or *); stored for tooling",
            TopicField::LocalRetentionBytes => "local size limit per partition under tiered storage; -2 means retention.bytes",
            TopicField::LocalRetentionMs => "local time limit under tiered storage; -2 means retention.ms",
            TopicField::MaxCompactionLagMs => "the longest a record may stay uncompacted: a log whose oldest dirty record is older is cleaned whatever its dirty ratio",
            TopicField::MaxMessageBytes => "the largest record batch the topic accepts",
            TopicField::MessageDownconversionEnable => "accepted for compatibility; batches are never down-converted",
            TopicField::MessageFormatVersion => "accepted for compatibility, as Kafka 3.x ignores it: batches are stored in format v2",
            TopicField::TimestampAfterMaxMs => "under CreateTime, how far ahead of the broker's clock a batch's timestamps may be",
            TopicField::TimestampBeforeMaxMs => "under CreateTime, how far behind the broker's clock a batch's timestamps may be",
            TopicField::TimestampDifferenceMaxMs => "the older form of the before and after limits, used for whichever of them is unset",
            TopicField::TimestampType => "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock",
            TopicField::MinCleanableDirtyRatio => "the share of a log that must be uncompacted before the cleaner compacts it",
            TopicField::MinCompactionLagMs => "the least time a record stays uncompacted",
            TopicField::MinInsyncReplicas => "replicas that must have a write for acks=all to succeed; stored for replication",
            TopicField::Preallocate => "allocate a segment file's full size when the segment is created",
            TopicField::RemoteLogCopyDisable => "tiered storage: stop copying segments to remote storage; stored",
            TopicField::RemoteLogDeleteOnDisable => "tiered storage: delete remote data when it is disabled; stored",
            TopicField::RemoteStorageEnable => "tiered storage for the topic; this broker has none, so only false is accepted",
            TopicField::RetentionBytes => "size limit per partition before old segments are deleted; -1 is unlimited",
            TopicField::RetentionMs => "how long a segment is kept after its newest record; -1 is unlimited",
            TopicField::SegmentBytes => "size at which the active segment is rolled",
            TopicField::SegmentIndexBytes => "size of a segment's offset index; the segment is rolled when its index is full",
            TopicField::SegmentJitterMs => "the most that a segment's roll time is moved earlier, at random, so segments do not all roll at once",
            TopicField::SegmentMs => "age at which the active segment is rolled",
            TopicField::UncleanLeaderElectionEnable => "whether a replica outside the ISR may become leader; stored for replication",
        }
    }

    /// The built-in default in units of `unit` topic units, as Kafka prints it.
    pub(super) fn default_text_in(self, unit: i64) -> String {
        TopicConfig::default().value_text_in(self, unit)
    }

    pub(super) fn from_topic_key(key: &str) -> Option<TopicField> {
        TopicField::ALL
            .into_iter()
            .find(|field| field.topic_key() == key)
    }
}

impl TopicConfig {
    /// Applies topic-level overrides (topic key names, e.g. "retention.ms") on top of
    /// `defaults`. An unknown key is rejected the way Kafka answers INVALID_CONFIG, as is an
    /// invalid value; both errors name the key and the value.
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

    /// Topic-level key names this broker understands, sorted.
    pub fn keys() -> impl Iterator<Item = &'static str> {
        TopicField::ALL.into_iter().map(TopicField::topic_key)
    }

    /// Every topic config with its effective value, printed as Kafka prints it, where that
    /// value came from, and its synonyms.
    pub fn describe(
        &self,
        overrides: &BTreeMap<String, String>,
        broker: &BrokerConfig,
    ) -> Vec<DescribedConfig> {
        TopicField::ALL
            .into_iter()
            .map(|field| {
                let name = field.topic_key();
                let mut synonyms = Vec::new();
                if let Some(value) = overrides.get(name) {
                    synonyms.push(ConfigSynonym {
                        name: name.to_string(),
                        value: Some(value.clone()),
                        source: ConfigSource::TopicOverride,
                    });
                }
                let keys: Vec<&'static str> =
                    field.broker_keys().iter().map(|(key, _)| *key).collect();
                let default = field
                    .broker_keys()
                    .last()
                    .map(|(key, unit)| (*key, field.default_text_in(*unit)));
                synonyms.extend(broker.synonyms_of(&keys, default));
                let source = synonyms
                    .first()
                    .map_or(ConfigSource::Default, |synonym| synonym.source);
                DescribedConfig {
                    name: name.to_string(),
                    value: Some(self.value_text(field)),
                    source,
                    read_only: false,
                    sensitive: false,
                    config_type: field.config_type(),
                    documentation: field.documentation(),
                    synonyms,
                }
            })
            .collect()
    }

    /// `key` is the name the user wrote, so errors point at the broker key when a
    /// broker-level default is being parsed. Ranges are those of Kafka's `LogConfig`.
    pub(super) fn set(
        &mut self,
        field: TopicField,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        const INT_MAX: i128 = i32::MAX as i128;
        const LONG_MAX: i128 = i64::MAX as i128;
        const LONG_MIN: i128 = i64::MIN as i128;
        match field {
            TopicField::CleanupPolicy => self.cleanup_policy = parse_cleanup_policy(key, value)?,
            TopicField::CompressionGzipLevel => {
                let level: i32 = parse_integer(key, value, -1, 9)?;
                if level == 0 {
                    return Err(invalid(key, value, "an integer between 1 and 9, or -1"));
                }
                self.compression_gzip_level = level;
            }
            TopicField::CompressionLz4Level => {
                self.compression_lz4_level = parse_integer(key, value, 1, 17)?;
            }
            TopicField::CompressionType => self.compression = TopicCompression::parse(key, value)?,
            TopicField::CompressionZstdLevel => {
                self.compression_zstd_level = parse_integer(key, value, -131_072, 22)?;
            }
            TopicField::DeleteRetentionMs => {
                self.delete_retention_ms = parse_integer(key, value, 0, LONG_MAX)?;
            }
            TopicField::FileDeleteDelayMs => {
                self.file_delete_delay_ms = parse_integer(key, value, 0, LONG_MAX)?;
            }
            TopicField::FlushMessages => self.flush_messages = parse_flush_interval(key, value, 1)?,
            TopicField::FlushMs => self.flush_ms = parse_flush_interval(key, value, 0)?,
            TopicField::FollowerReplicationThrottledReplicas => {
                self.follower_replication_throttled_replicas =
                    parse_throttled_replicas(key, value)?;
            }
            TopicField::IndexIntervalBytes => {
                self.index_interval_bytes = parse_integer(key, value, 0, INT_MAX)?;
            }
            TopicField::LeaderReplicationThrottledReplicas => {
                self.leader_replication_throttled_replicas = parse_throttled_replicas(key, value)?;
            }
            TopicField::LocalRetentionBytes => {
                self.local_retention_bytes = parse_integer(key, value, -2, LONG_MAX)?;
            }
            TopicField::LocalRetentionMs => {
                self.local_retention_ms = parse_integer(key, value, -2, LONG_MAX)?;
            }
            TopicField::MaxCompactionLagMs => {
                self.max_compaction_lag_ms = parse_integer(key, value, 1, LONG_MAX)?;
            }
            TopicField::MaxMessageBytes => {
                self.max_message_bytes = parse_integer(key, value, 0, INT_MAX)?;
            }
            TopicField::MessageDownconversionEnable => {
                self.message_downconversion_enable = parse_boolean(key, value)?;
            }
            TopicField::MessageFormatVersion => {
                self.message_format_version = parse_version(key, value)?;
            }
            TopicField::TimestampAfterMaxMs => {
                self.timestamp_after_max_ms = parse_integer(key, value, 0, LONG_MAX)?;
            }
            TopicField::TimestampBeforeMaxMs => {
                self.timestamp_before_max_ms = parse_integer(key, value, 0, LONG_MAX)?;
            }
            TopicField::TimestampDifferenceMaxMs => {
                self.timestamp_difference_max_ms = parse_integer(key, value, 0, LONG_MAX)?;
            }
            TopicField::TimestampType => self.timestamp_type = parse_timestamp_type(key, value)?,
            TopicField::MinCleanableDirtyRatio => {
                self.min_cleanable_dirty_ratio = parse_ratio(key, value)?;
            }
            TopicField::MinCompactionLagMs => {
                self.min_compaction_lag_ms = parse_integer(key, value, 0, LONG_MAX)?;
            }
            TopicField::MinInsyncReplicas => {
                self.min_insync_replicas = parse_integer(key, value, 1, INT_MAX)?;
            }
            TopicField::Preallocate => self.preallocate = parse_boolean(key, value)?,
            TopicField::RemoteLogCopyDisable => {
                self.remote_log_copy_disable = parse_boolean(key, value)?;
            }
            TopicField::RemoteLogDeleteOnDisable => {
                self.remote_log_delete_on_disable = parse_boolean(key, value)?;
            }
            TopicField::RemoteStorageEnable => {
                // As Kafka answers when the broker's remote.log.storage.system.enable is off.
                if parse_boolean(key, value)? {
                    return Err(invalid(
                        key,
                        value,
                        "false: this broker has no tiered storage",
                    ));
                }
                self.remote_storage_enable = false;
            }
            TopicField::RetentionBytes => {
                self.retention_bytes = parse_integer(key, value, LONG_MIN, LONG_MAX)?;
            }
            TopicField::RetentionMs => self.retention_ms = parse_limit(key, value, 1)?,
            TopicField::SegmentBytes => {
                self.segment_bytes = parse_integer(key, value, MIN_SEGMENT_BYTES, INT_MAX)?;
            }
            TopicField::SegmentIndexBytes => {
                self.segment_index_bytes = parse_integer(key, value, 4, INT_MAX)?;
            }
            TopicField::SegmentJitterMs => {
                self.segment_jitter_ms = parse_integer(key, value, 0, LONG_MAX)?;
            }
            TopicField::SegmentMs => {
                self.segment_ms = parse_integer(key, value, 1, LONG_MAX)?;
            }
            TopicField::UncleanLeaderElectionEnable => {
                self.unclean_leader_election_enable = parse_boolean(key, value)?;
            }
        }
        Ok(())
    }

    pub(super) fn value_text(&self, field: TopicField) -> String {
        self.value_text_in(field, 1)
    }

    /// The value as Kafka prints it, in units of `unit` topic units (hours for
    /// `log.retention.hours`); `-1` stays `-1`.
    fn value_text_in(&self, field: TopicField, unit: i64) -> String {
        let flush_text = |interval: Option<u64>| match interval {
            Some(interval) => interval.to_string(),
            None => UNSET_FLUSH_INTERVAL.to_string(),
        };
        let scaled = |value: i64| {
            if value < 0 {
                value
            } else {
                value / unit
            }
        };
        match field {
            TopicField::CleanupPolicy => self.cleanup_policy.to_string(),
            TopicField::CompressionGzipLevel => self.compression_gzip_level.to_string(),
            TopicField::CompressionLz4Level => self.compression_lz4_level.to_string(),
            TopicField::CompressionType => self.compression.as_str().to_string(),
            TopicField::CompressionZstdLevel => self.compression_zstd_level.to_string(),
            TopicField::DeleteRetentionMs => self.delete_retention_ms.to_string(),
            TopicField::FileDeleteDelayMs => self.file_delete_delay_ms.to_string(),
            TopicField::FlushMessages => flush_text(self.flush_messages),
            TopicField::FlushMs => flush_text(self.flush_ms),
            TopicField::FollowerReplicationThrottledReplicas => {
                self.follower_replication_throttled_replicas.to_string()
            }
            TopicField::IndexIntervalBytes => self.index_interval_bytes.to_string(),
            TopicField::LeaderReplicationThrottledReplicas => {
                self.leader_replication_throttled_replicas.to_string()
            }
            TopicField::LocalRetentionBytes => self.local_retention_bytes.to_string(),
            TopicField::LocalRetentionMs => self.local_retention_ms.to_string(),
            TopicField::MaxCompactionLagMs => self.max_compaction_lag_ms.to_string(),
            TopicField::MaxMessageBytes => self.max_message_bytes.to_string(),
            TopicField::MessageDownconversionEnable => {
                self.message_downconversion_enable.to_string()
            }
            TopicField::MessageFormatVersion => self.message_format_version.to_string(),
            TopicField::TimestampAfterMaxMs => self.timestamp_after_max_ms.to_string(),
            TopicField::TimestampBeforeMaxMs => self.timestamp_before_max_ms.to_string(),
            TopicField::TimestampDifferenceMaxMs => self.timestamp_difference_max_ms.to_string(),
            TopicField::TimestampType => self.timestamp_type.to_string(),
            // Debug keeps the ".0" that Java's Double.toString prints for whole numbers.
            TopicField::MinCleanableDirtyRatio => format!("{:?}", self.min_cleanable_dirty_ratio),
            TopicField::MinCompactionLagMs => self.min_compaction_lag_ms.to_string(),
            TopicField::MinInsyncReplicas => self.min_insync_replicas.to_string(),
            TopicField::Preallocate => self.preallocate.to_string(),
            TopicField::RemoteLogCopyDisable => self.remote_log_copy_disable.to_string(),
            TopicField::RemoteLogDeleteOnDisable => self.remote_log_delete_on_disable.to_string(),
            TopicField::RemoteStorageEnable => self.remote_storage_enable.to_string(),
            TopicField::RetentionBytes => self.retention_bytes.to_string(),
            TopicField::RetentionMs => scaled(self.retention_ms).to_string(),
            TopicField::SegmentBytes => self.segment_bytes.to_string(),
            TopicField::SegmentIndexBytes => self.segment_index_bytes.to_string(),
            TopicField::SegmentJitterMs => scaled(self.segment_jitter_ms).to_string(),
            TopicField::SegmentMs => scaled(self.segment_ms).to_string(),
            TopicField::UncleanLeaderElectionEnable => {
                self.unclean_leader_election_enable.to_string()
            }
        }
    }
}

/// The topic defaults from the broker's `log.*` (and same-named) keys.
pub(super) fn parse_topic_defaults(settings: &mut Settings) -> Result<TopicConfig, ConfigError> {
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
            TopicField::SegmentJitterMs => {
                let milliseconds =
                    settings.integer::<i64>("log.roll.jitter.ms", 0, i64::MAX.into())?;
                let hours = settings.integer::<i64>("log.roll.jitter.hours", 0, i32::MAX.into())?;
                let from_hours = hours.map(|hours| hours.saturating_mul(MILLISECONDS_PER_HOUR));
                if let Some(jitter_ms) = milliseconds.or(from_hours) {
                    topic.segment_jitter_ms = jitter_ms;
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
                for &(key, _) in field.broker_keys() {
                    if let Some(value) = settings.get(key) {
                        topic.set(field, key, value)?;
                    }
                }
            }
        }
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<TopicConfig, ConfigError> {
        TopicConfig::with_overrides(&TopicConfig::default(), pairs.iter().copied())
    }

    fn rejected(key: &str, value: &str) {
        match with(&[(key, value)]) {
            Err(ConfigError::Invalid {
                key: named,
                value: given,
                ..
            }) => {
                assert_eq!((named.as_str(), given.as_str()), (key, value));
            }
            other => panic!("{key}={value}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_kafka_3_topic_key_is_known() {
        let keys: Vec<&str> = TopicConfig::keys().collect();
        assert_eq!(keys.len(), 36);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "listed in key order");
        for key in [
            "compression.gzip.level",
            "follower.replication.throttled.replicas",
            "local.retention.bytes",
            "message.timestamp.after.max.ms",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "segment.index.bytes",
            "unclean.leader.election.enable",
        ] {
            assert!(keys.contains(&key), "{key}");
        }
    }

    #[test]
    fn values_are_checked_as_kafka_checks_them() {
        let accepted = with(&[
            ("compression.type", "lz4"),
            ("compression.gzip.level", "-1"),
            ("compression.zstd.level", "-131072"),
            ("message.format.version", "0.10.0.0"),
            ("message.format.version", "3.0-IV1"),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("follower.replication.throttled.replicas", "*"),
            ("retention.bytes", "-5"),
            ("local.retention.ms", "-2"),
            ("remote.storage.enable", "false"),
            ("preallocate", "TRUE"),
            ("max.compaction.lag.ms", "3600000"),
        ])
        .expect("valid values");
        assert_eq!(accepted.compression, TopicCompression::Lz4);
        assert_eq!(&*accepted.message_format_version, "3.0-IV1");
        assert!(accepted.preallocate);
        assert_eq!(accepted.max_compaction_lag_ms, 3_600_000);

        rejected("compression.type", "brotli");
        rejected("compression.type", "LZ4");
        rejected("compression.gzip.level", "0");
        rejected("compression.gzip.level", "10");
        rejected("compression.lz4.level", "18");
        rejected("compression.zstd.level", "23");
        rejected("min.insync.replicas", "0");
        rejected("max.compaction.lag.ms", "0");
        rejected("segment.index.bytes", "3");
        rejected("segment.jitter.ms", "-1");
        rejected("file.delete.delay.ms", "-1");
        rejected("local.retention.bytes", "-3");
        rejected("message.format.version", "banana");
        rejected("message.timestamp.before.max.ms", "-1");
        rejected("unclean.leader.election.enable", "maybe");
        rejected("leader.replication.throttled.replicas", "0-1");
        rejected("remote.storage.enable", "true");
        rejected("segment.bytes", "13");
        rejected("dummy.doesntexist", "1");
    }

    #[test]
    fn timestamp_windows_fall_back_to_the_difference() {
        let difference = with(&[("message.timestamp.difference.max.ms", "1000")]).unwrap();
        assert_eq!(difference.timestamp_before_window_ms(), 1000);
        assert_eq!(difference.timestamp_after_window_ms(), 1000);
        let both = with(&[
            ("message.timestamp.difference.max.ms", "1000"),
            ("message.timestamp.after.max.ms", "5"),
        ])
        .unwrap();
        assert_eq!(both.timestamp_before_window_ms(), 1000);
        assert_eq!(both.timestamp_after_window_ms(), 5);
    }

    #[test]
    fn compaction_lag_caps_the_roll_time_of_compacted_topics() {
        let compacted = with(&[
            ("cleanup.policy", "compact"),
            ("max.compaction.lag.ms", "1000"),
        ])
        .unwrap();
        assert_eq!(compacted.roll_ms(), 1000);
        let deleting = with(&[("max.compaction.lag.ms", "1000")]).unwrap();
        assert_eq!(deleting.roll_ms(), DEFAULT_ROLL_MS);
    }

    #[test]
    fn synonyms_list_the_override_the_broker_keys_then_the_default() {
        let (broker, _) =
            BrokerConfig::from_properties("log.retention.hours=24\ncompression.type=gzip\n", &[])
                .unwrap();
        let overrides: BTreeMap<String, String> =
            [("retention.ms".to_string(), "1000".to_string())].into();
        let topic = TopicConfig::with_overrides(
            &broker.topic_defaults,
            overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .unwrap();
        let described = topic.describe(&overrides, &broker);
        assert_eq!(described.len(), 36);
        let find = |name: &str| described.iter().find(|d| d.name == name).unwrap().clone();

        let retention = find("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(retention.source, ConfigSource::TopicOverride);
        assert_eq!(retention.config_type, ConfigType::Long);
        let synonyms: Vec<(&str, &str, ConfigSource)> = retention
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_deref().unwrap_or(""), s.source))
            .collect();
        assert_eq!(
            synonyms,
            [
                ("retention.ms", "1000", ConfigSource::TopicOverride),
                ("log.retention.hours", "24", ConfigSource::StaticBroker),
                ("log.retention.hours", "168", ConfigSource::Default),
            ]
        );

        let compression = find("compression.type");
        assert_eq!(compression.value.as_deref(), Some("gzip"));
        assert_eq!(compression.source, ConfigSource::StaticBroker);
        assert!(!compression.is_default());
        assert_eq!(compression.synonyms.len(), 2);
        assert_eq!(compression.synonyms[1].value.as_deref(), Some("producer"));

        let remote = find("remote.storage.enable");
        assert!(remote.is_default());
        assert!(remote.synonyms.is_empty(), "no broker synonym, as in Kafka");
        assert_eq!(remote.config_type, ConfigType::Boolean);
        assert!(described.iter().all(|d| !d.documentation.is_empty()));
    }

    #[test]
    fn described_values_parse_back_to_the_same_config() {
        let topic = TopicConfig::default();
        let described = topic.describe(&BTreeMap::new(), &BrokerConfig::default());
        let reparsed = TopicConfig::with_overrides(
            &TopicConfig {
                retention_ms: 1,
                flush_messages: Some(5),
                compression: TopicCompression::Zstd,
                ..TopicConfig::default()
            },
            described
                .iter()
                .map(|entry| (entry.name.as_str(), entry.value.as_deref().unwrap_or(""))),
        )
        .unwrap();
        assert_eq!(reparsed, topic);
    }
}

//! Dynamic broker configs (Kafka's `DynamicBrokerConfig`) and group configs (KIP-848's
//! `GroupConfig`): which broker keys may change at run time and at which level, how a change
//! is checked, and what DescribeConfigs reports for a broker and for a group.
//!
//! A broker key's value comes from the first of these layers that has it: the per-broker
//! dynamic config (resource name = the broker id), the cluster-wide dynamic default (empty
//! resource name), the static `server.properties` and `--override`s, then the built-in
//! default. As in Kafka the effective config is resolved again from the merged keys, so
//! synonyms keep their precedence whatever layer each came from (`log.retention.ms` in the
//! file still wins over a dynamic `log.retention.hours`).
//!
//! Applied as soon as they change (the controller publishes a new image): every broker-level
//! topic default (`log.retention.*`, `log.segment.bytes`, `log.roll.*`, `message.max.bytes`,
//! `compression.type`, `log.cleanup.policy`, ...) for the topics that do not override it,
//! `log.cleaner.backoff.ms` (from the cleaner's next pause), `log.cleaner.io.max.bytes.per.second`
//! and `producer.id.expiration.ms`. Stored and reported only, because nothing here has their
//! meaning: the thread pools (`background.threads`, `num.io.threads`, ...), the connection
//! limits, `metric.reporters`, the replication throttles and the SASL keys. `listeners` and
//! the other listener keys, dynamic in Kafka, are read-only here: the listening sockets are
//! bound once at start.
//!
//! Refusals follow Kafka's `ConfigAdminManager`: a key this broker does not know is
//! INVALID_CONFIG; a read-only key, a per-broker key set at the cluster level and a value that
//! does not parse are INVALID_REQUEST (Kafka wraps its `ConfigException` so, KAFKA-13609).
//!
//! Group configs (`consumer.session.timeout.ms`, `consumer.heartbeat.interval.ms`) apply to
//! the KIP-848 groups they name; each must lie within the broker's
//! `group.consumer.{min,max}.{session.timeout,heartbeat.interval}.ms`, and the heartbeat
//! interval below the session timeout, else INVALID_CONFIG.

use std::collections::{BTreeMap, BTreeSet};

use super::broker::{BrokerConfig, IGNORED_KAFKA_KEYS};
use super::topic::{ConfigSource, ConfigSynonym, ConfigType, DescribedConfig, TopicField};
use super::validate::{parse_boolean, parse_integer};
use super::{invalid, ConfigError};

/// Where a broker key may be changed at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicLevel {
    /// Only in `server.properties`.
    ReadOnly,
    /// Per broker only (Kafka's `PerBrokerConfigs`): never as a cluster-wide default.
    PerBroker,
    /// Per broker or as the cluster-wide default.
    ClusterWide,
}

/// How a value set dynamically is checked. Keys that `BrokerConfig` parses are checked by
/// resolving the effective config again; the others by their Kafka type and range.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    Resolved,
    Integer(i128, i128),
    Double(f64),
    Boolean,
    Text,
}

#[derive(Debug, Clone, Copy)]
struct BrokerKey {
    name: &'static str,
    config_type: ConfigType,
    level: DynamicLevel,
    sensitive: bool,
    check: Check,
    default: Option<&'static str>,
    documentation: &'static str,
}

const fn key(
    name: &'static str,
    config_type: ConfigType,
    level: DynamicLevel,
    check: Check,
    default: Option<&'static str>,
    documentation: &'static str,
) -> BrokerKey {
    BrokerKey {
        name,
        config_type,
        level,
        sensitive: false,
        check,
        default,
        documentation,
    }
}

const fn secret(name: &'static str, documentation: &'static str) -> BrokerKey {
    BrokerKey {
        name,
        config_type: ConfigType::Password,
        level: DynamicLevel::PerBroker,
        sensitive: true,
        check: Check::Text,
        default: None,
        documentation,
    }
}

use Check::{Boolean, Double, Integer, Resolved, Text};
use ConfigType::{Boolean as Bool, Double as Dbl, Int, List, Long, Short, String as Str};
use DynamicLevel::{ClusterWide, PerBroker, ReadOnly};

const INT_MAX: i128 = i32::MAX as i128;
const LONG_MAX: i128 = i64::MAX as i128;

/// The broker keys other than the topic defaults (those come from `TopicField`), sorted.
/// `every_key_the_broker_reads_is_described` checks that every key `BrokerConfig` reads is here.
#[rustfmt::skip]
const BROKER_KEYS: &[BrokerKey] = &[
    key("advertised.listeners", Str, ReadOnly, Resolved, None, "the addresses clients are told to connect to; the listeners by default"),
    key("auto.create.topics.enable", Bool, ReadOnly, Resolved, Some("true"), "create a topic when Metadata asks for one that does not exist"),
    key("background.threads", Int, ClusterWide, Integer(1, INT_MAX), Some("10"), "Kafka's background thread pool; stored only"),
    key("batch.cache.bytes", Long, ReadOnly, Resolved, Some("268435456"), "the tail cache of each shard"),
    key("broker.heartbeat.interval.ms", Int, ReadOnly, Resolved, Some("250"), "how often a broker renews its lease with the active controller, 10 to 60000 ms; Kafka's 2000 is lowered so that a dead broker is fenced in under 2 s"),
    key("broker.id", Int, ReadOnly, Resolved, Some("0"), "this broker's id, the name of its BROKER config resource"),
    key("broker.rack", Str, ReadOnly, Resolved, None, "the rack this broker is in"),
    key("broker.session.timeout.ms", Int, ReadOnly, Resolved, Some("1500"), "how long a broker may go without renewing its lease before it is fenced, 100 to 600000 ms and at least twice broker.heartbeat.interval.ms; Kafka's 9000 is lowered for failover in under 2 s"),
    key("cluster.id", Str, ReadOnly, Resolved, Some("shardlog-cluster"), "the cluster id Metadata reports"),
    key("controller.listener.names", Str, ReadOnly, Resolved, None, "the listeners the controller quorum's traffic arrives on, each one of listeners; unset, the first listener (the quorum shares the Kafka port)"),
    key("controller.quorum.election.timeout.ms", Int, ReadOnly, Resolved, Some("1000"), "how long a quorum follower waits to hear from the leader before it starts an election, 100 to 60000 ms"),
    key("controller.quorum.heartbeat.interval.ms", Int, ReadOnly, Resolved, Some("100"), "how often the quorum's leader sends to an idle follower, 10 to 10000 ms and less than half of controller.quorum.election.timeout.ms (not a Kafka key)"),
    key("controller.quorum.voters", List, ReadOnly, Resolved, None, "the controller quorum as id@host:port,... where each address is that node's Kafka listener; unset, a quorum of this node alone"),
    key("default.replication.factor", Int, ReadOnly, Resolved, Some("1"), "the replication factor of topics created without one"),
    key("delete.topic.enable", Bool, ReadOnly, Resolved, Some("true"), "whether DeleteTopics may delete topics"),
    key("fetch.read.ahead.bytes", Int, ReadOnly, Resolved, Some("1048576"), "the least a direct read from a segment reads"),
    key("follower.replication.throttled.rate", Long, PerBroker, Integer(0, LONG_MAX), Some("9223372036854775807"), "replication throttle of followers in bytes per second; stored only"),
    key("group.consumer.heartbeat.interval.ms", Int, ReadOnly, Resolved, Some("5000"), "the heartbeat interval KIP-848 group members are asked for"),
    key("group.consumer.max.heartbeat.interval.ms", Int, ReadOnly, Resolved, Some("15000"), "the largest consumer.heartbeat.interval.ms a group config may set"),
    key("group.consumer.max.session.timeout.ms", Int, ReadOnly, Resolved, Some("60000"), "the largest consumer.session.timeout.ms a group config may set"),
    key("group.consumer.min.heartbeat.interval.ms", Int, ReadOnly, Resolved, Some("5000"), "the smallest consumer.heartbeat.interval.ms a group config may set"),
    key("group.consumer.min.session.timeout.ms", Int, ReadOnly, Resolved, Some("45000"), "the smallest consumer.session.timeout.ms a group config may set"),
    key("group.consumer.session.timeout.ms", Int, ReadOnly, Resolved, Some("45000"), "how long a KIP-848 group member may go without a heartbeat"),
    key("group.initial.rebalance.delay.ms", Int, ReadOnly, Resolved, Some("3000"), "how long the first rebalance of an empty classic group waits for more members"),
    key("group.max.session.timeout.ms", Int, ReadOnly, Resolved, Some("1800000"), "the largest session timeout a classic group member may ask for"),
    key("group.max.size", Int, ReadOnly, Resolved, Some("2147483647"), "the most members a classic group may have"),
    key("group.min.session.timeout.ms", Int, ReadOnly, Resolved, Some("6000"), "the smallest session timeout a classic group member may ask for"),
    key("leader.replication.throttled.rate", Long, PerBroker, Integer(0, LONG_MAX), Some("9223372036854775807"), "replication throttle of leaders in bytes per second; stored only"),
    key("listeners", Str, ReadOnly, Resolved, Some("PLAINTEXT://127.0.0.1:9092"), "the addresses the broker listens on; bound once at start"),
    key("log.cleaner.backoff.ms", Long, ClusterWide, Resolved, Some("15000"), "how long each shard's cleaner pauses between passes; applied from its next pause"),
    key("log.cleaner.dedupe.buffer.size", Long, ClusterWide, Integer(0, LONG_MAX), Some("134217728"), "Kafka's cleaner key-map memory; stored only"),
    key("log.cleaner.io.buffer.load.factor", Dbl, ClusterWide, Double(0.0), Some("0.9"), "Kafka's cleaner buffer load factor; stored only"),
    key("log.cleaner.io.buffer.size", Int, ClusterWide, Integer(0, INT_MAX), Some("524288"), "Kafka's cleaner I/O buffer size; stored only"),
    key("log.cleaner.io.max.bytes.per.second", Dbl, ClusterWide, Resolved, Some("1.7976931348623157E308"), "the read rate of each shard's cleaner; applied at once"),
    key("log.cleaner.threads", Int, ClusterWide, Integer(0, INT_MAX), Some("1"), "Kafka's cleaner threads (here a cleaner per shard); stored only"),
    key("log.dir", Str, ReadOnly, Resolved, Some("./data"), "the data directory when log.dirs is not set"),
    key("log.dirs", Str, ReadOnly, Resolved, None, "the data directories (the first is used)"),
    key("log.retention.check.interval.ms", Long, ReadOnly, Resolved, Some("300000"), "how often each shard applies retention and time-based rolls"),
    key("max.connection.creation.rate", Int, ClusterWide, Integer(0, INT_MAX), Some("2147483647"), "Kafka's connection rate limit; stored only"),
    key("max.connections", Int, ClusterWide, Integer(0, INT_MAX), Some("2147483647"), "Kafka's connection limit; stored only"),
    key("max.connections.per.ip", Int, ClusterWide, Integer(0, INT_MAX), Some("2147483647"), "Kafka's connection limit per address; stored only"),
    key("max.connections.per.ip.overrides", Str, ClusterWide, Text, Some(""), "Kafka's connection limits of given addresses; stored only"),
    key("max.incremental.fetch.session.cache.slots", Int, ReadOnly, Resolved, Some("1000"), "fetch sessions (KIP-227) the broker keeps, shared out over its shards"),
    key("metric.reporters", List, ClusterWide, Text, Some(""), "Kafka's metric reporter classes; stored only"),
    key("metrics.listener", Str, ReadOnly, Resolved, None, "the address of the Prometheus endpoint, or none; unset, 127.0.0.1 on the first listener's port + 552 (9092 gives 9644, port 0 gives 0, none above 65535)"),
    key("min.incremental.fetch.session.eviction.ms", Int, ReadOnly, Resolved, Some("120000"), "how long a fetch session is idle before a new one may evict it"),
    key("node.id", Int, ReadOnly, Resolved, None, "the KRaft spelling of broker.id"),
    key("num.io.threads", Int, ClusterWide, Integer(1, INT_MAX), Some("8"), "Kafka's request threads (here one shard per core); stored only"),
    key("num.network.threads", Int, ClusterWide, Integer(1, INT_MAX), Some("3"), "Kafka's network threads (here one shard per core); stored only"),
    key("num.partitions", Int, ReadOnly, Resolved, Some("1"), "the partition count of topics created without one"),
    key("num.recovery.threads.per.data.dir", Int, ClusterWide, Integer(1, INT_MAX), Some("2"), "Kafka's recovery threads; stored only"),
    key("num.replica.fetchers", Int, ClusterWide, Integer(1, INT_MAX), Some("1"), "Kafka's replica fetcher threads; stored only"),
    key("num.shards", Int, ReadOnly, Resolved, None, "shards (one executor each); the core count by default"),
    key("offset.metadata.max.bytes", Int, ReadOnly, Resolved, Some("4096"), "the largest metadata an offset commit may carry"),
    key("offsets.retention.check.interval.ms", Long, ReadOnly, Resolved, Some("600000"), "how often expired committed offsets are removed"),
    key("offsets.retention.minutes", Int, ReadOnly, Resolved, Some("10080"), "how long the offsets of an empty group are kept"),
    key("offsets.topic.num.partitions", Int, ReadOnly, Resolved, Some("50"), "the partitions of __consumer_offsets"),
    key("process.roles", List, ReadOnly, Resolved, Some("broker,controller"), "what this node runs: broker, controller, or both"),
    key("producer.id.expiration.ms", Int, ClusterWide, Resolved, Some("86400000"), "how long an idle producer's state is kept per partition; applied at the next check"),
    key("replica.alter.log.dirs.io.max.bytes.per.second", Long, PerBroker, Integer(0, LONG_MAX), Some("9223372036854775807"), "Kafka's log-dir move throttle; stored only"),
    secret("sasl.jaas.config", "JAAS login configuration; stored only, never reported"),
    key("sasl.enabled.mechanisms", List, PerBroker, Text, Some("GSSAPI"), "SASL mechanisms; stored only (no SASL listener yet)"),
    key("sasl.kerberos.kinit.cmd", Str, PerBroker, Text, Some("/usr/bin/kinit"), "Kerberos kinit command; stored only"),
    key("sasl.kerberos.min.time.before.relogin", Long, PerBroker, Integer(i64::MIN as i128, LONG_MAX), Some("60000"), "Kerberos login thread sleep between refreshes; stored only"),
    key("sasl.kerberos.principal.to.local.rules", List, PerBroker, Text, Some("DEFAULT"), "Kerberos principal mapping rules; stored only"),
    key("sasl.kerberos.service.name", Str, PerBroker, Text, None, "Kerberos service name; stored only"),
    key("sasl.kerberos.ticket.renew.jitter", Dbl, PerBroker, Double(0.0), Some("0.05"), "Kerberos ticket renew jitter; stored only"),
    key("sasl.kerberos.ticket.renew.window.factor", Dbl, PerBroker, Double(0.0), Some("0.8"), "Kerberos ticket renew window factor; stored only"),
    key("sasl.login.refresh.buffer.seconds", Short, PerBroker, Integer(0, 3600), Some("300"), "SASL login refresh buffer; stored only"),
    key("sasl.login.refresh.min.period.seconds", Short, PerBroker, Integer(0, 900), Some("60"), "SASL login refresh minimum period; stored only"),
    key("sasl.login.refresh.window.factor", Dbl, PerBroker, Double(0.5), Some("0.8"), "SASL login refresh window factor; stored only"),
    key("sasl.login.refresh.window.jitter", Dbl, PerBroker, Double(0.0), Some("0.05"), "SASL login refresh window jitter; stored only"),
    key("sasl.mechanism.inter.broker.protocol", Str, PerBroker, Text, Some("GSSAPI"), "SASL mechanism between brokers; stored only"),
    key("shard.io.memory.bytes", Long, ReadOnly, Resolved, Some("2097152"), "registered-buffer memory of each shard's io_uring"),
    key("shard.pinning", Bool, ReadOnly, Resolved, Some("true"), "pin each shard's thread to its core"),
    key("socket.request.max.bytes", Int, ReadOnly, Resolved, Some("104857600"), "the largest request frame a connection may send"),
    key("transaction.partition.verification.enable", Bool, ClusterWide, Boolean, Some("true"), "Kafka's transactional partition verification; stored only"),
];

/// Kafka's `log.message.format.version` is a topic default it never lets change at run time.
const READ_ONLY_TOPIC_DEFAULTS: &[&str] = &["log.message.format.version"];

/// What the controller knows of one broker key.
#[derive(Debug, Clone)]
pub struct BrokerKeyInfo {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub level: DynamicLevel,
    pub sensitive: bool,
    check: Check,
    default: Option<String>,
    documentation: &'static str,
    /// The keys that set the same thing, most precedent first (Kafka's `brokerConfigSynonyms`).
    synonyms: Vec<&'static str>,
}

impl BrokerKeyInfo {
    pub fn is_list(&self) -> bool {
        self.config_type == ConfigType::List
    }

    /// The built-in default, as Kafka prints it; `None` for a key without one.
    pub fn default_value(&self) -> Option<&str> {
        self.default.as_deref()
    }
}

/// One broker key, if this broker knows it.
pub fn broker_key(name: &str) -> Option<BrokerKeyInfo> {
    if let Some(entry) = BROKER_KEYS.iter().find(|entry| entry.name == name) {
        return Some(BrokerKeyInfo {
            name: entry.name,
            config_type: entry.config_type,
            level: entry.level,
            sensitive: entry.sensitive,
            check: entry.check,
            default: entry.default.map(str::to_string),
            documentation: entry.documentation,
            synonyms: vec![entry.name],
        });
    }
    for field in TopicField::ALL {
        let keys = field.broker_keys();
        let Some(position) = keys.iter().position(|(key, _)| *key == name) else {
            continue;
        };
        let (name, unit) = keys[position];
        let config_type = match field.config_type() {
            // `log.retention.hours` and its kind are Kafka INTs.
            ConfigType::Long if unit != 1 => ConfigType::Int,
            other => other,
        };
        let level = if READ_ONLY_TOPIC_DEFAULTS.contains(&name) {
            DynamicLevel::ReadOnly
        } else {
            DynamicLevel::ClusterWide
        };
        // Kafka gives a default to the least precise synonym only (`log.retention.hours`).
        let default = (position + 1 == keys.len()).then(|| field.default_text_in(unit));
        return Some(BrokerKeyInfo {
            name,
            config_type,
            level,
            sensitive: false,
            check: Check::Resolved,
            default,
            documentation: field.documentation(),
            synonyms: keys.iter().map(|(key, _)| *key).collect(),
        });
    }
    None
}

/// Every broker key DescribeConfigs lists, sorted.
pub fn broker_key_names() -> Vec<&'static str> {
    let mut names: BTreeSet<&'static str> = BROKER_KEYS.iter().map(|entry| entry.name).collect();
    for field in TopicField::ALL {
        names.extend(field.broker_keys().iter().map(|(key, _)| *key));
    }
    names.into_iter().collect()
}

/// Why a dynamic broker config change is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DynamicConfigError {
    #[error("Unknown broker config name: {}", .0.join(", "))]
    Unknown(Vec<String>),
    #[error("Cannot update these configs dynamically: {}", .0.join(", "))]
    ReadOnly(Vec<String>),
    #[error("Cannot update these configs at default cluster level, broker id must be specified: {}", .0.join(", "))]
    PerBrokerOnly(Vec<String>),
    #[error("{0}")]
    Invalid(String),
}

impl DynamicConfigError {
    /// The Kafka error code: INVALID_CONFIG (40) for an unknown key, INVALID_REQUEST (42) for
    /// the rest, as Kafka's `ConfigAdminManager` answers.
    pub fn kafka_code(&self) -> i16 {
        match self {
            DynamicConfigError::Unknown(_) => 40,
            _ => 42,
        }
    }
}

/// Checks the dynamic configs one resource would hold: per broker (`per_broker`) or the
/// cluster default. Cross-key checks are left to `BrokerConfig::with_dynamic`.
pub fn check_broker_configs(
    configs: &BTreeMap<String, String>,
    per_broker: bool,
) -> Result<(), DynamicConfigError> {
    let mut unknown = Vec::new();
    let mut read_only = Vec::new();
    let mut per_broker_only = Vec::new();
    let mut known = Vec::new();
    for (name, value) in configs {
        match broker_key(name) {
            Some(info) => match info.level {
                DynamicLevel::ReadOnly => read_only.push(name.clone()),
                DynamicLevel::PerBroker if !per_broker => per_broker_only.push(name.clone()),
                _ => known.push((info, value)),
            },
            None if IGNORED_KAFKA_KEYS.contains(&name.as_str()) => read_only.push(name.clone()),
            None => unknown.push(name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(DynamicConfigError::Unknown(unknown));
    }
    if !read_only.is_empty() {
        return Err(DynamicConfigError::ReadOnly(read_only));
    }
    if !per_broker_only.is_empty() {
        return Err(DynamicConfigError::PerBrokerOnly(per_broker_only));
    }
    for (info, value) in known {
        check_value(&info, value).map_err(|e| DynamicConfigError::Invalid(e.to_string()))?;
    }
    Ok(())
}

fn check_value(info: &BrokerKeyInfo, value: &str) -> Result<(), ConfigError> {
    match info.check {
        Check::Resolved | Check::Text => Ok(()),
        Check::Integer(min, max) => parse_integer::<i128>(info.name, value, min, max).map(drop),
        Check::Boolean => parse_boolean(info.name, value).map(drop),
        Check::Double(min) => match value.trim().parse::<f64>() {
            Ok(number) if number.is_finite() && number >= min => Ok(()),
            _ => Err(invalid(
                info.name,
                value,
                format!("a number of at least {min:?}"),
            )),
        },
    }
}

impl BrokerConfig {
    /// This broker's effective config: the static one with the cluster-wide dynamic defaults
    /// and then its own dynamic configs laid over it, resolved again (so every check of the
    /// static file applies to the merged keys). The layers are kept for DescribeConfigs.
    pub fn with_dynamic(
        &self,
        cluster_default: &BTreeMap<String, String>,
        per_broker: &BTreeMap<String, String>,
    ) -> Result<BrokerConfig, ConfigError> {
        if cluster_default.is_empty() && per_broker.is_empty() {
            let mut config = self.clone();
            config.dynamic_default.clear();
            config.dynamic_broker.clear();
            return Ok(config);
        }
        let mut merged = self.explicit_keys.clone();
        merged.extend(
            cluster_default
                .iter()
                .chain(per_broker)
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let overrides: Vec<(String, String)> = merged.into_iter().collect();
        let (mut config, _) = BrokerConfig::from_properties("", &overrides)?;
        config.explicit_keys = self.explicit_keys.clone();
        config.dynamic_default = cluster_default.clone();
        config.dynamic_broker = per_broker.clone();
        Ok(config)
    }

    /// The layer a broker key's value comes from, and that value.
    fn layered(&self, name: &str) -> Option<(&str, ConfigSource)> {
        if let Some(value) = self.dynamic_broker.get(name) {
            return Some((value, ConfigSource::DynamicBroker));
        }
        if let Some(value) = self.dynamic_default.get(name) {
            return Some((value, ConfigSource::DynamicDefaultBroker));
        }
        self.explicit_keys
            .get(name)
            .map(|value| (value.as_str(), ConfigSource::StaticBroker))
    }

    /// Synonyms of broker keys in Kafka's order: every layer in turn (per broker, cluster
    /// default, static, default), each in synonym order.
    pub(super) fn synonyms_of(
        &self,
        keys: &[&'static str],
        default: Option<(&str, String)>,
    ) -> Vec<ConfigSynonym> {
        let mut synonyms = Vec::new();
        let layers = [
            (&self.dynamic_broker, ConfigSource::DynamicBroker),
            (&self.dynamic_default, ConfigSource::DynamicDefaultBroker),
            (&self.explicit_keys, ConfigSource::StaticBroker),
        ];
        for (layer, source) in layers {
            for key in keys {
                if let Some(value) = layer.get(*key) {
                    synonyms.push(ConfigSynonym {
                        name: key.to_string(),
                        value: Some(value.clone()),
                        source,
                    });
                }
            }
        }
        if let Some((name, value)) = default {
            synonyms.push(ConfigSynonym {
                name: name.to_string(),
                value: Some(value),
                source: ConfigSource::Default,
            });
        }
        synonyms
    }

    /// DescribeConfigs of this broker (its id as the resource name): every key with its
    /// value, source and synonyms. A sensitive value is never reported.
    pub fn describe_broker(&self) -> Vec<DescribedConfig> {
        broker_key_names()
            .into_iter()
            .filter_map(broker_key)
            .map(|info| {
                let (value, source) = match self.layered(info.name) {
                    Some((value, source)) => (Some(value.to_string()), source),
                    None => (info.default.clone(), ConfigSource::Default),
                };
                let default = info.synonyms.iter().find_map(|key| {
                    let synonym = broker_key(key)?;
                    Some((*key, synonym.default?))
                });
                let mut synonyms = self.synonyms_of(&info.synonyms, default);
                // As Kafka's `configSynonyms`: the list starts at the described key itself.
                if let Some(first) = synonyms.iter().position(|s| s.name == info.name) {
                    synonyms.drain(..first);
                } else {
                    synonyms.clear();
                }
                if info.sensitive {
                    synonyms.iter_mut().for_each(|s| s.value = None);
                }
                DescribedConfig {
                    name: info.name.to_string(),
                    value: if info.sensitive { None } else { value },
                    source,
                    read_only: info.level == DynamicLevel::ReadOnly,
                    sensitive: info.sensitive,
                    config_type: info.config_type,
                    documentation: info.documentation,
                    synonyms,
                }
            })
            .collect()
    }

    /// DescribeConfigs of the cluster-wide default (the empty resource name): the dynamic
    /// defaults that are set, as Kafka lists them.
    pub fn describe_broker_defaults(&self) -> Vec<DescribedConfig> {
        self.dynamic_default
            .iter()
            .filter_map(|(name, value)| {
                let info = broker_key(name)?;
                let value = (!info.sensitive).then(|| value.clone());
                Some(DescribedConfig {
                    name: name.clone(),
                    value: value.clone(),
                    source: ConfigSource::DynamicDefaultBroker,
                    read_only: false,
                    sensitive: info.sensitive,
                    config_type: info.config_type,
                    documentation: info.documentation,
                    synonyms: vec![ConfigSynonym {
                        name: name.clone(),
                        value,
                        source: ConfigSource::DynamicDefaultBroker,
                    }],
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Group configs (KIP-848)

pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";

/// The group config keys, sorted, as DescribeConfigs lists them.
pub const GROUP_KEYS: [&str; 2] = [CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS];

/// What one KIP-848 group runs with: its own configs over the broker's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
}

impl GroupConfig {
    /// A group without configs of its own.
    pub fn defaults(broker: &BrokerConfig) -> GroupConfig {
        GroupConfig {
            session_timeout_ms: broker.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: broker.group_consumer_heartbeat_interval_ms,
        }
    }

    /// The group's configs checked as Kafka's `GroupConfig.validate` checks them: known names,
    /// each set value within the broker's bounds, the heartbeat interval below the session
    /// timeout. Every error is INVALID_CONFIG.
    pub fn with_overrides(
        broker: &BrokerConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<GroupConfig, ConfigError> {
        let mut config = GroupConfig::defaults(broker);
        for (key, value) in overrides {
            match key.as_str() {
                CONSUMER_SESSION_TIMEOUT_MS => {
                    config.session_timeout_ms = parse_integer(
                        key,
                        value,
                        broker.group_consumer_min_session_timeout_ms.into(),
                        broker.group_consumer_max_session_timeout_ms.into(),
                    )?;
                }
                CONSUMER_HEARTBEAT_INTERVAL_MS => {
                    config.heartbeat_interval_ms = parse_integer(
                        key,
                        value,
                        broker.group_consumer_min_heartbeat_interval_ms.into(),
                        broker.group_consumer_max_heartbeat_interval_ms.into(),
                    )?;
                }
                _ => return Err(invalid(key, value, "a known group config")),
            }
        }
        if config.heartbeat_interval_ms >= config.session_timeout_ms {
            return Err(invalid(
                CONSUMER_HEARTBEAT_INTERVAL_MS,
                &config.heartbeat_interval_ms.to_string(),
                format!(
                    "less than {CONSUMER_SESSION_TIMEOUT_MS} ({})",
                    config.session_timeout_ms
                ),
            ));
        }
        Ok(config)
    }

    /// DescribeConfigs of a group: both keys, from the group (GROUP_CONFIG) or the broker.
    pub fn describe(
        &self,
        overrides: &BTreeMap<String, String>,
        broker: &BrokerConfig,
    ) -> Vec<DescribedConfig> {
        GROUP_KEYS
            .into_iter()
            .map(|name| {
                let (value, broker_name, documentation) = if name == CONSUMER_SESSION_TIMEOUT_MS {
                    (
                        self.session_timeout_ms,
                        "group.consumer.session.timeout.ms",
                        "how long a member of this group may go without a heartbeat",
                    )
                } else {
                    (
                        self.heartbeat_interval_ms,
                        "group.consumer.heartbeat.interval.ms",
                        "the heartbeat interval members of this group are asked for",
                    )
                };
                let mut synonyms = Vec::new();
                if let Some(own) = overrides.get(name) {
                    synonyms.push(ConfigSynonym {
                        name: name.to_string(),
                        value: Some(own.clone()),
                        source: ConfigSource::Group,
                    });
                }
                let default = broker_key(broker_name)
                    .and_then(|info| info.default)
                    .map(|value| (broker_name, value));
                synonyms.extend(broker.synonyms_of(&[broker_name], default));
                let source = if overrides.contains_key(name) {
                    ConfigSource::Group
                } else {
                    ConfigSource::Default
                };
                DescribedConfig {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                    source,
                    read_only: false,
                    sensitive: false,
                    config_type: ConfigType::Int,
                    documentation,
                    synonyms,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::broker::consulted_keys;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_key_the_broker_reads_is_described() {
        for key in consulted_keys() {
            assert!(broker_key(key).is_some(), "{key} is not in the catalogue");
        }
        let names = broker_key_names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn stated_defaults_are_what_the_broker_runs_with() {
        let defaults = BrokerConfig::default();
        for name in broker_key_names() {
            let info = broker_key(name).unwrap();
            let Some(default) = info.default_value() else {
                continue;
            };
            if info.check != Check::Resolved {
                check_value(&info, default).unwrap();
                continue;
            }
            let (config, _) =
                BrokerConfig::from_properties(&format!("{name}={default}\n"), &[]).unwrap();
            let config = BrokerConfig {
                explicit_keys: BTreeMap::new(),
                ..config
            };
            assert_eq!(config, defaults, "{name}={default}");
        }
    }

    #[test]
    fn changes_are_refused_as_kafka_refuses_them() {
        let check = |pairs: &[(&str, &str)], per_broker: bool| {
            check_broker_configs(&map(pairs), per_broker).map_err(|e| (e.kafka_code(), e))
        };
        check(&[("sasl.kerberos.min.time.before.relogin", "58000")], true).unwrap();
        check(
            &[
                ("background.threads", "9"),
                ("log.cleanup.policy", "delete,compact"),
            ],
            true,
        )
        .unwrap();
        check(
            &[("log.retention.ms", "1000"), ("message.max.bytes", "2000")],
            false,
        )
        .unwrap();

        let (code, error) = check(&[("log.dirs", "/x"), ("num.shards", "3")], true).unwrap_err();
        assert_eq!(code, 42);
        assert_eq!(
            error.to_string(),
            "Cannot update these configs dynamically: log.dirs, num.shards"
        );
        let (code, _) = check(&[("zookeeper.connect", "x")], true).unwrap_err();
        assert_eq!(
            code, 42,
            "a Kafka key this broker ignores is still read-only"
        );
        let (code, error) = check(&[("no.such.key", "1")], true).unwrap_err();
        assert_eq!(
            (code, error.to_string().contains("no.such.key")),
            (40, true)
        );
        let (code, error) =
            check(&[("sasl.kerberos.min.time.before.relogin", "1")], false).unwrap_err();
        assert_eq!(code, 42);
        assert!(error.to_string().contains("broker id must be specified"));
        let (code, _) = check(&[("background.threads", "0")], true).unwrap_err();
        assert_eq!(code, 42);
        let (code, _) = check(&[("log.message.format.version", "3.0")], false).unwrap_err();
        assert_eq!(code, 42);
    }

    #[test]
    fn dynamic_layers_resolve_and_describe_in_kafka_order() {
        let (static_config, _) =
            BrokerConfig::from_properties("log.retention.hours=24\nbroker.id=3\n", &[]).unwrap();
        let effective = static_config
            .with_dynamic(
                &map(&[
                    ("log.retention.minutes", "10"),
                    ("log.cleaner.backoff.ms", "50"),
                ]),
                &map(&[("log.retention.ms", "1000"), ("background.threads", "9")]),
            )
            .unwrap();
        assert_eq!(effective.topic_defaults.retention_ms, 1000);
        assert_eq!(effective.log_cleaner_backoff_ms, 50);
        assert_eq!(effective.broker_id, 3);
        assert_eq!(effective.explicit_keys, static_config.explicit_keys);

        let described = effective.describe_broker();
        let find = |name: &str| described.iter().find(|d| d.name == name).unwrap().clone();
        let threads = find("background.threads");
        assert_eq!(threads.value.as_deref(), Some("9"));
        assert_eq!(threads.source, ConfigSource::DynamicBroker);
        assert!(!threads.read_only);
        let backoff = find("log.cleaner.backoff.ms");
        assert_eq!(backoff.source, ConfigSource::DynamicDefaultBroker);
        assert_eq!(
            backoff
                .synonyms
                .iter()
                .map(|s| (s.value.as_deref().unwrap(), s.source))
                .collect::<Vec<_>>(),
            [
                ("50", ConfigSource::DynamicDefaultBroker),
                ("15000", ConfigSource::Default)
            ]
        );
        let retention = find("log.retention.ms");
        assert_eq!(retention.source, ConfigSource::DynamicBroker);
        let synonyms: Vec<(&str, &str, ConfigSource)> = retention
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_deref().unwrap(), s.source))
            .collect();
        assert_eq!(
            synonyms,
            [
                ("log.retention.ms", "1000", ConfigSource::DynamicBroker),
                (
                    "log.retention.minutes",
                    "10",
                    ConfigSource::DynamicDefaultBroker
                ),
                ("log.retention.hours", "24", ConfigSource::StaticBroker),
                ("log.retention.hours", "168", ConfigSource::Default),
            ]
        );
        let hours = find("log.retention.hours");
        assert_eq!(hours.value.as_deref(), Some("24"));
        assert_eq!(hours.synonyms[0].source, ConfigSource::StaticBroker);
        assert!(find("num.shards").read_only);
        assert_eq!(find("log.retention.minutes").config_type, ConfigType::Int);
        let jaas = find("sasl.jaas.config");
        assert!(jaas.sensitive && jaas.value.is_none());

        let defaults = effective.describe_broker_defaults();
        let names: Vec<&str> = defaults.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["log.cleaner.backoff.ms", "log.retention.minutes"]);

        // A dynamic value breaking a cross-check of the static file is refused.
        assert!(static_config
            .with_dynamic(&BTreeMap::new(), &map(&[("log.segment.bytes", "1")]))
            .is_err());
    }

    #[test]
    fn group_configs_are_bounded_by_the_broker() {
        let broker = BrokerConfig::default();
        let config =
            GroupConfig::with_overrides(&broker, &map(&[(CONSUMER_SESSION_TIMEOUT_MS, "50000")]))
                .unwrap();
        assert_eq!(config.session_timeout_ms, 50_000);
        assert_eq!(config.heartbeat_interval_ms, 5_000);
        for (key, value) in [
            (CONSUMER_SESSION_TIMEOUT_MS, "44999"),
            (CONSUMER_SESSION_TIMEOUT_MS, "60001"),
            (CONSUMER_HEARTBEAT_INTERVAL_MS, "4999"),
            (CONSUMER_HEARTBEAT_INTERVAL_MS, "15001"),
            (CONSUMER_HEARTBEAT_INTERVAL_MS, "ten"),
            ("consumer.unknown", "1"),
        ] {
            assert!(
                GroupConfig::with_overrides(&broker, &map(&[(key, value)])).is_err(),
                "{key}={value}"
            );
        }
        let described = config.describe(&map(&[(CONSUMER_SESSION_TIMEOUT_MS, "50000")]), &broker);
        assert_eq!(described.len(), 2);
        assert_eq!(described[1].name, CONSUMER_SESSION_TIMEOUT_MS);
        assert_eq!(described[1].source, ConfigSource::Group);
        assert_eq!(described[1].synonyms[0].source, ConfigSource::Group);
        assert_eq!(described[1].synonyms[1].value.as_deref(), Some("45000"));
        assert_eq!(described[0].source, ConfigSource::Default);
        assert_eq!(described[0].value.as_deref(), Some("5000"));
    }
}

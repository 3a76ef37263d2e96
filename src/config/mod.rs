//! Broker configuration read from Kafka-style `server.properties`, and the topic-level
//! settings that CreateTopics, DescribeConfigs and AlterConfigs work with.
//!
//! Key names, defaults and validation follow Kafka so that an existing `server.properties`
//! and existing admin tooling keep working.
//!
//! - `broker.rs`: the broker keys, `BrokerConfig`, unknown-key reporting.
//! - `listener.rs`: `listeners`, `advertised.listeners`, `metrics.listener` and their ports.
//! - `cluster.rs`: the node's roles, the controller quorum's voters and listener, the broker
//!   lease and Raft timings, `broker.rack`, and how they must agree with the id and listeners.
//! - `topic.rs`: every topic key of Kafka 3.x, `TopicConfig`, what DescribeConfigs reports.
//! - `parse.rs`: the properties file syntax and `--override` arguments.
//! - `validate.rs`: the value checks both kinds of key share.
//! - `dynamic.rs`: which broker keys change at run time (per broker or cluster-wide), how a
//!   change is checked, what DescribeConfigs reports for a broker; KIP-848 group configs.
//!
//! Pure: no I/O except `BrokerConfig::load` reading the file it is given.

mod broker;
mod cluster;
mod dynamic;
mod listener;
mod parse;
mod topic;
mod validate;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use broker::{BrokerConfig, UnknownKey, DEFAULT_PORT, IGNORED_KAFKA_KEYS};
pub use cluster::{ProcessRoles, QuorumVoter};
pub use dynamic::{
    broker_key, check_broker_configs, BrokerKeyInfo, DynamicConfigError, DynamicLevel, GroupConfig,
    CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS, GROUP_KEYS,
};
pub use listener::Listener;
pub use parse::parse_override;
pub use topic::{
    CleanupPolicy, ConfigSource, ConfigSynonym, ConfigType, DescribedConfig, TimestampType,
    TopicCompression, TopicConfig,
};

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
    /// Values that each parse but do not fit together, such as a voter list without this node.
    #[error("{key}: {problem}")]
    Conflict { key: String, problem: String },
}

fn invalid(key: &str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

fn conflict(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Conflict {
        key: key.to_string(),
        problem: problem.into(),
    }
}

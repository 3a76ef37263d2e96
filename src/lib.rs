//! shardlog: a Kafka-compatible streaming platform with a thread-per-core broker on io_uring.
//!
//! Modules, from the edge inwards:
//! - [`config`]: Kafka-style `server.properties`, validated at start-up.
//! - [`runtime`]: the only module that names glommio: shards, the cross-shard mesh, sockets,
//!   direct-I/O files.
//! - [`protocol`]: the Kafka wire protocol; pure codecs, no I/O.
//! - [`broker`]: shards, connections, one handler per API, the controller (shard 0).
//! - [`metrics`]: per-shard counters and histograms, the Prometheus text format, the minimal
//!   HTTP the metrics endpoint speaks; pure, no I/O.
//! - [`storage`]: partition logs: segments, indexes, group commit, tail cache, recovery,
//!   compaction.
//! - [`client`]: the Rust client for Kafka-compatible brokers: producer, consumer, groups,
//!   admin, a blocking facade.
//! - [`bench`]: `shardlog bench`, the benchmark tool for any Kafka-compatible broker.
//! - [`cli`]: the client commands of the `shardlog` binary (`topic`, `produce`, `consume`,
//!   `group`, `cluster`).

pub mod bench;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod protocol;
pub mod runtime;
pub mod storage;

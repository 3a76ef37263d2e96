//! The Rust client for Kafka-compatible brokers (ours, Kafka, Redpanda), async on the same
//! runtime as the broker (an executor per thread), with a blocking facade:
//!
//! - `admin`: topics (create, delete, describe, add partitions), topic configs (describe,
//!   incremental alter), offsets (earliest, latest, by timestamp), groups (list, describe,
//!   delete, committed offsets, commits from outside), the cluster (DescribeCluster).
//! - `blocking`: `run` any client future from a program that is not async;
//!   `BlockingProducer` and `BlockingConsumer` for plain calls.
//! - `consumer`: `assign`, `seek` (offset, beginning, end, timestamp), pause/resume, `poll`
//!   with one fetch per leader kept in flight ahead of the application; any codec.
//! - `group`: consumer groups for our consumer (classic protocol; range and cooperative-sticky
//!   assignors, eager or incremental cooperative rebalances, rebalance callbacks, auto and
//!   manual commits).
//! - `connection`: one pipelined connection to a broker, with API versions negotiated.
//! - `error`: typed errors mapped from Kafka error codes, each retriable or not.
//! - `producer`: batching per partition (`linger`, `batch_size`), compression, acks,
//!   idempotence with safe retries, up to `max_in_flight` batches of a partition on the wire,
//!   bounded memory, a delivery future or callback per record, headers and timestamps.
//! - `partitioner`: where a record goes. Kafka's murmur2 for keyed records (a key lands on the
//!   same partition as with the Java client), sticky for unkeyed ones (KIP-480), round-robin on
//!   request, or a partitioner of the application's own.

pub mod admin;
pub mod blocking;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod partitioner;
pub mod producer;

pub use error::ClientError;

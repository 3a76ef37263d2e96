//! Storage: one log per partition, owned by the partition's shard.
//!
//! Owns: segment files (`{base:020}.log`, `.index`, `.timeindex`) under `{log.dir}/{topic}-{partition}`,
//! appends through O_DIRECT on io_uring, compaction, group commit (one fdatasync covers every produce that
//! arrived while the previous one was in flight), the per-shard tail cache, recovery, retention.
//! Knows nothing of Kafka requests: it stores v2 record batches and answers offset questions.
//!
//! Invariants: offsets are increasing, and dense unless the log was compacted (`cleaner`); `log_start <= high_watermark <= log_end`; a
//! batch is visible to readers only below the high watermark, which in sync mode only moves
//! after the bytes are durable; the cache always holds every batch not yet written to the file.

pub mod file;
pub mod index;
pub mod log;
pub mod producers;

pub use log::{
    AppendInfo, Chunk, CleanStats, CleanerStatus, LogError, PartitionLog, ReadOut, ShardStorage,
    StopAt, StorageMetrics,
};

/// An offset in a partition's log.
pub type Offset = i64;

//! The partition log: segments, appends, group-committed flushes, reads, recovery, retention.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;

use super::file::{self, align_down, align_up, ALIGN};
use super::index::{self, OffsetIndex, TimeIndex};
use super::producers::{ProducerStates, SequenceCheck, SequenceError};
use super::Offset;
use crate::config::{TimestampType, TopicConfig};
use crate::metrics::{Counter, LatencyHistogram, SyncBytesHistogram};
use crate::protocol::batch::{self, BatchHeader};
use crate::runtime::{self, DmaFile, ReadResult};

/// Recovery reads the log in chunks of this size.
const SCAN_CHUNK_BYTES: usize = 4 << 20;
/// How often, at most, a growing active segment writes its indexes and the producer state as
/// a recovery checkpoint, so that a start after a crash scans only what came after it (at
/// most this long's worth of appends).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// Growth of the active segment below which no checkpoint is written: at least this, and at
/// least `CHECKPOINT_GROWTH_PER_INDEX_BYTE` times the size of the index files, so rewriting
/// them costs a small fraction of the appends.
const CHECKPOINT_MIN_BYTES: u64 = 64 << 10;
const CHECKPOINT_GROWTH_PER_INDEX_BYTE: u64 = 8;
/// Record sets smaller than this are copied out of the request buffer when appended.
const OWN_ALLOCATION_BELOW_BYTES: usize = 8 << 10;
/// The idempotent-producer snapshot of a partition, next to its segments.
const PRODUCER_SNAPSHOT: &str = "producer.snapshot";
/// Present while a log is closed cleanly: its active segment's index files are then trusted and
/// only the tail after the last index entry is read at start. Removed when the log opens.
const CLEAN_SHUTDOWN: &str = "clean-shutdown";
/// A disk read serves at least this much, so small fetches of cold data read ahead.
pub const READ_MIN_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("offset {requested} is out of range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: Offset,
        start: Offset,
        end: Offset,
    },
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("log is corrupt: {0}")]
    Corrupt(String),
    /// A compaction pass failed for a reason other than damaged data (see `CleanError`).
    #[error("compaction: {0}")]
    Cleaner(String),
    #[error("idempotent producer: {0}")]
    Sequence(#[from] SequenceError),
}

/// A piece of log data on its way to a socket: a cached buffer or a direct-read buffer.
pub enum Chunk {
    Memory(Bytes),
    Disk(ReadResult),
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        match self {
            Chunk::Memory(b) => b,
            Chunk::Disk(r) => r,
        }
    }
}

impl Chunk {
    /// The first `len` bytes, sharing the buffer; `None` for an empty or too long prefix.
    pub fn prefix(&self, len: usize) -> Option<Chunk> {
        if len == 0 || len > self.as_ref().len() {
            return None;
        }
        match self {
            Chunk::Memory(b) => Some(Chunk::Memory(b.slice(..len))),
            Chunk::Disk(r) => ReadResult::slice(r, 0, len).map(Chunk::Disk),
        }
    }

    /// A sendable form, for crossing shards; a disk buffer is copied once here.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Chunk::Memory(b) => b,
            Chunk::Disk(r) => Bytes::copy_from_slice(&r),
        }
    }
}

pub struct ReadOut {
    pub chunks: Vec<Chunk>,
    pub bytes: usize,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// A retry of a batch already in the log: nothing was appended, the offsets are the
    /// original ones.
    pub duplicate: bool,
}

/// What a shard's storage measures, for the metrics endpoint. Written only by this shard.
#[derive(Default)]
pub struct StorageMetrics {
    /// Reads served from the tail cache.
    pub cache_hits: Counter,
    /// Reads that went to the segment file.
    pub cache_misses: Counter,
    /// Each log's fdatasync round in a flush (usually one file; two across a segment roll).
    pub sync_latency_us: LatencyHistogram,
    /// Bytes made durable by each of those syncs: what one group commit covered.
    pub sync_bytes: SyncBytesHistogram,
}

/// Per-shard storage context: the tail-cache budget and the group-commit queue.
pub struct ShardStorage {
    cache_limit_bytes: u64,
    cache_used_bytes: Cell<u64>,
    cache_order: RefCell<VecDeque<(Weak<PartitionLog>, Offset, usize)>>,
    dirty: RefCell<Vec<Rc<PartitionLog>>>,
    wake: RefCell<Option<oneshot::Sender<()>>>,
    pub syncs_total: Cell<u64>,
    /// How fast this shard's cleaner may read (`log.cleaner.io.max.bytes.per.second`).
    pub cleaner_io_bytes_per_second: Cell<f64>,
    pub metrics: StorageMetrics,
}

impl ShardStorage {
    pub fn new(cache_limit_bytes: u64) -> Rc<ShardStorage> {
        Rc::new(ShardStorage {
            cache_limit_bytes,
            cache_used_bytes: Cell::new(0),
            cache_order: RefCell::new(VecDeque::new()),
            dirty: RefCell::new(Vec::new()),
            wake: RefCell::new(None),
            syncs_total: Cell::new(0),
            cleaner_io_bytes_per_second: Cell::new(f64::MAX),
            metrics: StorageMetrics::default(),
        })
    }

    fn mark_dirty(&self, log: &Rc<PartitionLog>) {
        if !log.queued.replace(true) {
            self.dirty.borrow_mut().push(log.clone());
        }
        if let Some(wake) = self.wake.borrow_mut().take() {
            let _ = wake.send(());
        }
    }

    /// The shard's flusher: writes every dirty log, then syncs them as their policy says,
    /// and meanwhile writes what arrived since (a two-stage pipeline: the device is busy with
    /// round k+1's writes while round k's syncs are in flight). Produces that arrive during a
    /// round share the next round's sync.
    pub async fn run_flusher(self: Rc<Self>) {
        let mut syncing: Option<runtime::Task<()>> = None;
        loop {
            let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            if dirty.is_empty() {
                if let Some(round) = syncing.take() {
                    // Nothing new to write: finish the syncs, then look again.
                    round.await;
                    continue;
                }
                let (tx, rx) = oneshot::channel();
                *self.wake.borrow_mut() = Some(tx);
                if rx.await.is_err() {
                    return;
                }
                continue;
            }
            for log in &dirty {
                log.queued.set(false);
            }
            let writes = dirty.iter().map(|log| log.write_phase(false));
            let results = futures::future::join_all(writes).await;
            let mut jobs = Vec::with_capacity(dirty.len());
            for (log, result) in dirty.iter().zip(results) {
                match result {
                    Ok(job) => jobs.push((log.clone(), job)),
                    Err(e) => tracing::error!(log = %log.dir.display(), error = %e, "write failed"),
                }
            }
            // One round of syncs in flight at a time: this round's start when the last one's end.
            if let Some(round) = syncing.take() {
                round.await;
            }
            self.syncs_total
                .set(self.syncs_total.get() + jobs.len() as u64);
            syncing = Some(runtime::spawn_task(async move {
                let syncs = jobs.into_iter().map(|(log, job)| async move {
                    if let Err(e) = log.sync_phase(job).await {
                        tracing::error!(log = %log.dir.display(), error = %e, "sync failed");
                    }
                });
                futures::future::join_all(syncs).await;
            }));
        }
    }

    fn cache_insert(&self, log: &Rc<PartitionLog>, base_offset: Offset, bytes: usize) {
        self.cache_used_bytes
            .set(self.cache_used_bytes.get() + bytes as u64);
        self.cache_order
            .borrow_mut()
            .push_back((Rc::downgrade(log), base_offset, bytes));
    }

    /// Evicts the oldest cached batches until the cache fits its budget. A batch not yet
    /// written to its file stays: it is the only copy.
    fn cache_evict(&self) {
        while self.cache_used_bytes.get() > self.cache_limit_bytes {
            let Some((weak, base, bytes)) = self.cache_order.borrow_mut().pop_front() else {
                return;
            };
            match weak.upgrade() {
                None => self.cache_release(bytes),
                Some(log) => {
                    if log.cache_evict_through(base) {
                        self.cache_release(bytes);
                    } else {
                        self.cache_order
                            .borrow_mut()
                            .push_front((weak, base, bytes));
                        return;
                    }
                }
            }
        }
    }

    fn cache_release(&self, bytes: usize) {
        self.cache_used_bytes
            .set(self.cache_used_bytes.get().saturating_sub(bytes as u64));
    }

    pub fn cache_used_bytes(&self) -> u64 {
        self.cache_used_bytes.get()
    }
}

struct Segment {
    base_offset: Offset,
    path: PathBuf,
    file: Option<Rc<DmaFile>>,
    /// Logical size: bytes written plus bytes pending.
    size: u64,
    /// Bytes submitted to the file.
    written: u64,
    /// The bytes of the last, partial block: [align_down(written), written). Rewritten with the
    /// next write, since direct I/O writes whole blocks.
    tail: Vec<u8>,
    pending: Vec<Bytes>,
    index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    last_offset: Offset,
    max_timestamp: i64,
    created: Instant,
    /// Subtracted from the roll time of this segment (`segment.jitter.ms`), chosen at random
    /// when it became the active segment.
    roll_jitter_ms: i64,
    sealed: bool,
    /// Sealed, fully written, indexes on disk: may be deleted by retention.
    finalized: bool,
}

impl Segment {
    fn new(dir: &Path, base_offset: Offset) -> Segment {
        Segment {
            base_offset,
            path: dir.join(format!("{base_offset:020}.log")),
            file: None,
            size: 0,
            written: 0,
            tail: Vec::new(),
            pending: Vec::new(),
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            last_offset: base_offset - 1,
            max_timestamp: -1,
            created: Instant::now(),
            roll_jitter_ms: 0,
            sealed: false,
            finalized: false,
        }
    }

    /// A new active segment, with its roll jitter drawn from the topic's `segment.jitter.ms`.
    fn active(dir: &Path, base_offset: Offset, config: &TopicConfig) -> Segment {
        let mut segment = Segment::new(dir, base_offset);
        let bound = config.segment_jitter_ms.min(config.roll_ms());
        if bound > 0 {
            let random = (uuid::Uuid::new_v4().as_u128() as u64) >> 1;
            segment.roll_jitter_ms = (random % bound as u64) as i64;
        }
        segment
    }

    /// Whether the active segment must roll before more is appended: it is old enough
    /// (`segment.ms`, less its jitter), its index is full (`segment.index.bytes` holds that
    /// many 8-byte offset entries and 12-byte time entries, as in Kafka), or the append would
    /// take it past `segment.bytes`.
    fn must_roll(&self, config: &TopicConfig, incoming_bytes: u64) -> bool {
        const OFFSET_ENTRY_BYTES: usize = 8;
        const TIME_ENTRY_BYTES: usize = 12;
        if self.size == 0 {
            return false;
        }
        let index_bytes = config.segment_index_bytes as usize;
        let index_full = self.index.len() >= index_bytes / OFFSET_ENTRY_BYTES
            || self.time_index.len() >= index_bytes / TIME_ENTRY_BYTES;
        let age_ms = self.created.elapsed().as_millis() as i64;
        self.size + incoming_bytes > config.segment_bytes
            || age_ms >= config.roll_ms().saturating_sub(self.roll_jitter_ms)
            || index_full
    }

    fn index_path(&self) -> PathBuf {
        self.path.with_extension("index")
    }

    fn time_index_path(&self) -> PathBuf {
        self.path.with_extension("timeindex")
    }

    /// Records a batch at `position` in the indexes.
    fn note_batch(&mut self, header: &BatchHeader, position: u64, interval_bytes: u64) {
        let relative = (header.base_offset - self.base_offset) as u32;
        if self.index.is_empty() || self.bytes_since_index >= interval_bytes {
            self.index.push(relative, position as u32);
            self.time_index
                .push(header.max_timestamp.max(self.max_timestamp), relative);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.size as u64;
        self.last_offset = header.last_offset();
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
    }
}

struct CachedBatch {
    base_offset: Offset,
    last_offset: Offset,
    bytes: Bytes,
}

struct LogState {
    config: TopicConfig,
    segments: VecDeque<Segment>,
    log_start_offset: Offset,
    log_end_offset: Offset,
    high_watermark: Offset,
    /// Everything below this offset has been fdatasync'ed.
    durable_offset: Offset,
    /// Everything below this offset has been written to its file (maybe not synced).
    written_offset: Offset,
    /// Files written since the last sync started: what the next sync covers.
    unsynced: Vec<Rc<DmaFile>>,
    /// The last recovery checkpoint: when, and the active segment's size then.
    checkpointed_at: Instant,
    checkpointed_bytes: u64,
    leader_epoch: i32,
    messages_since_sync: u64,
    /// Bytes appended since the last sync, for the bytes-per-sync histogram.
    bytes_since_sync: u64,
    last_sync: Instant,
    cache: VecDeque<CachedBatch>,
    data_waiters: Vec<oneshot::Sender<()>>,
    sync_waiters: Vec<(Offset, oneshot::Sender<Result<(), String>>)>,
    failed: Option<String>,
    producers: ProducerStates,
    /// Compaction has cleaned everything below this offset.
    cleaned_through: Offset,
    /// When the first tombstone kept by compaction may go (`None`: none kept). Unknown after
    /// a restart, so the first pass is due at once.
    tombstones_due_ms: Option<i64>,
}

impl LogState {
    fn sync_every_write(&self) -> bool {
        self.config.flush_messages.is_none() && self.config.flush_ms.is_none()
    }

    fn active(&mut self) -> &mut Segment {
        self.segments
            .back_mut()
            .expect("a log always has an active segment")
    }

    fn advance_high_watermark(&mut self, to: Offset) {
        if to > self.high_watermark {
            self.high_watermark = to;
            for waiter in self.data_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// What a write phase leaves for the sync phase after it.
struct SyncJob {
    /// Whether the log's policy syncs now.
    sync: bool,
    /// Messages and bytes that the sync covers, for the flush policy and the metrics.
    messages: u64,
    bytes: u64,
}

pub struct PartitionLog {
    dir: PathBuf,
    state: RefCell<LogState>,
    storage: Rc<ShardStorage>,
    queued: Cell<bool>,
    /// One write phase at a time, and one sync phase at a time; a write phase may run while
    /// the previous sync phase is in flight.
    write_turn: runtime::LocalLock,
    sync_turn: runtime::LocalLock,
    /// A compaction pass is running (retention waits for it).
    cleaning: Cell<bool>,
    cleaner_status: RefCell<cleaner::CleanerStatus>,
    /// Bytes the opening scan read (the tails after trusted indexes), for tests and the log.
    scanned_at_open: u64,
    /// Closed cleanly: its index files and producer state are final.
    closed: Cell<bool>,
}

impl PartitionLog {
    /// Opens (recovering) or creates the log in `dir`.
    pub async fn open(
        dir: PathBuf,
        config: TopicConfig,
        leader_epoch: i32,
        storage: Rc<ShardStorage>,
    ) -> Result<Rc<PartitionLog>, LogError> {
        let started = Instant::now();
        std::fs::create_dir_all(&dir)?;
        file::probe_device(&dir).await?;
        cleaner::recover_interrupted(&dir)?;
        // A compacted log has gaps between and inside segments by design.
        let gaps_allowed = dir.join(cleaner::COMPACTED_MARKER).exists();
        let mut bases: Vec<Offset> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<Offset>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        let clean = dir.join(CLEAN_SHUTDOWN).exists();
        if clean {
            // From here on a crash must not find the marker.
            std::fs::remove_file(dir.join(CLEAN_SHUTDOWN))?;
        }
        let mut producers = file::read_whole(&dir.join(PRODUCER_SNAPSHOT))
            .await?
            .and_then(|bytes| ProducerStates::decode(&bytes))
            .unwrap_or_default();
        let mut segments = VecDeque::with_capacity(bases.len().max(1));
        let mut truncated_bytes = 0;
        let mut scanned_bytes = 0;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let continues = segments
                .back()
                .is_none_or(|prev: &Segment| prev.last_offset + 1 == base);
            if !continues && !gaps_allowed {
                // A gap after a truncated segment: what follows cannot be trusted to continue
                // the log, so the log ends here (as Kafka's recovery does).
                for &later in &bases[i..] {
                    let doomed = Segment::new(&dir, later);
                    tracing::warn!(segment = %doomed.path.display(), "deleting segment after a gap");
                    for path in [
                        doomed.path.clone(),
                        doomed.index_path(),
                        doomed.time_index_path(),
                    ] {
                        let _ = std::fs::remove_file(path);
                    }
                }
                if let Some(last) = segments.back_mut() {
                    last.sealed = false;
                    last.finalized = false;
                }
                break;
            }
            let (mut segment, truncated, scanned) = recover_segment(
                &dir,
                base,
                is_last,
                clean,
                gaps_allowed,
                &config,
                &mut producers,
            )
            .await?;
            if truncated > 0 && !is_last {
                // A sealed segment with a bad tail (or block padding left by a crash before it
                // was trimmed): its index files may point past the new end, so rebuild them.
                let _ = std::fs::remove_file(segment.index_path());
                let _ = std::fs::remove_file(segment.time_index_path());
                drop(segment);
                let (rebuilt, _, _) = recover_segment(
                    &dir,
                    base,
                    is_last,
                    clean,
                    gaps_allowed,
                    &config,
                    &mut producers,
                )
                .await?;
                segment = rebuilt;
            }
            truncated_bytes += truncated;
            scanned_bytes += scanned;
            segments.push_back(segment);
        }
        if segments.is_empty() {
            segments.push_back(Segment::new(&dir, 0));
        }
        let log_start_offset = segments.front().expect("non-empty").base_offset;
        let log_end_offset = segments.back().expect("non-empty").last_offset + 1;
        producers.truncate(log_end_offset);
        let cleaned_through = file::read_whole(&dir.join(cleaner::CHECKPOINT))
            .await?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(log_start_offset, i64::from_be_bytes)
            .clamp(log_start_offset, log_end_offset);
        if truncated_bytes > 0 {
            tracing::warn!(log = %dir.display(), truncated_bytes, "truncated a torn tail");
        }
        tracing::info!(
            log = %dir.display(),
            segments = segments.len(),
            log_start_offset,
            log_end_offset,
            clean_shutdown = clean,
            scanned_bytes,
            recovery_ms = started.elapsed().as_secs_f64() * 1e3,
            "log opened"
        );
        Ok(Rc::new(PartitionLog {
            dir,
            state: RefCell::new(LogState {
                config,
                segments,
                log_start_offset,
                log_end_offset,
                high_watermark: log_end_offset,
                durable_offset: log_end_offset,
                written_offset: log_end_offset,
                unsynced: Vec::new(),
                checkpointed_at: Instant::now(),
                checkpointed_bytes: 0,
                leader_epoch,
                messages_since_sync: 0,
                bytes_since_sync: 0,
                last_sync: Instant::now(),
                cache: VecDeque::new(),
                data_waiters: Vec::new(),
                sync_waiters: Vec::new(),
                failed: None,
                producers,
                cleaned_through,
                tombstones_due_ms: Some(0),
            }),
            storage,
            queued: Cell::new(false),
            write_turn: runtime::LocalLock::new(1),
            sync_turn: runtime::LocalLock::new(1),
            cleaning: Cell::new(false),
            cleaner_status: RefCell::default(),
            scanned_at_open: scanned_bytes,
            closed: Cell::new(false),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of segment files read by the scan when this log was opened.
    pub fn scanned_at_open(&self) -> u64 {
        self.scanned_at_open
    }

    /// Makes the next sync write a recovery checkpoint if the segment grew enough, as if the
    /// last one were old.
    #[cfg(test)]
    fn age_checkpoint(&self) {
        let mut state = self.state.borrow_mut();
        if let Some(then) = Instant::now().checked_sub(CHECKPOINT_INTERVAL) {
            state.checkpointed_at = then;
        }
    }

    pub fn log_start_offset(&self) -> Offset {
        self.state.borrow().log_start_offset
    }

    pub fn log_end_offset(&self) -> Offset {
        self.state.borrow().log_end_offset
    }

    pub fn high_watermark(&self) -> Offset {
        self.state.borrow().high_watermark
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state.borrow().leader_epoch
    }

    pub fn config(&self) -> TopicConfig {
        self.state.borrow().config.clone()
    }

    pub fn set_config(&self, config: TopicConfig) {
        self.state.borrow_mut().config = config;
    }

    /// The leader epoch the controller gave this partition: stamped on batches appended from
    /// now on and checked against clients' `current_leader_epoch`. Never goes back.
    pub fn set_leader_epoch(&self, epoch: i32) {
        let mut state = self.state.borrow_mut();
        state.leader_epoch = state.leader_epoch.max(epoch);
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Appends a validated record set (its batch headers given), assigning offsets in place.
    /// Synchronous: the bytes are in the cache and queued for the flusher when this returns.
    pub fn append(
        self: &Rc<Self>,
        mut records: BytesMut,
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let mut state = self.state.borrow_mut();
        if let Some(reason) = &state.failed {
            return Err(LogError::Io(std::io::Error::other(reason.clone())));
        }
        // Idempotent producers: every batch passes its sequence check before anything is
        // appended; a retried batch is answered with its original offsets.
        if headers.iter().any(|h| h.producer_id >= 0) {
            if let [header] = headers {
                if let SequenceCheck::Duplicate(range) = state.producers.check(header)? {
                    return Ok(AppendInfo {
                        base_offset: range.base_offset,
                        last_offset: range.last_offset,
                        log_append_time_ms: -1,
                        log_start_offset: state.log_start_offset,
                        duplicate: true,
                    });
                }
            } else {
                let mut trial = state.producers.clone();
                let mut offset = state.log_end_offset;
                for header in headers {
                    let mut placed = *header;
                    placed.base_offset = offset;
                    if header.producer_id >= 0 {
                        match trial.check(header)? {
                            SequenceCheck::Append => trial.record(&placed),
                            SequenceCheck::Duplicate(_) => {
                                // Kafka producers send one batch per partition; a set mixing
                                // retried and new batches cannot be split, so it is refused.
                                return Err(SequenceError::OutOfOrder {
                                    expected: -1,
                                    got: header.base_sequence,
                                }
                                .into());
                            }
                        }
                    }
                    offset = placed.last_offset() + 1;
                }
            }
        }
        let total = records.len() as u64;
        let roll = {
            let config = &state.config;
            let active = state
                .segments
                .back()
                .expect("a log always has an active segment");
            active.must_roll(config, total)
        };
        if roll {
            let next = state.log_end_offset;
            state.active().sealed = true;
            let segment = Segment::active(&self.dir, next, &state.config);
            state.segments.push_back(segment);
        }
        let base_offset = state.log_end_offset;
        let leader_epoch = state.leader_epoch;
        let log_append_time = state.config.timestamp_type == TimestampType::LogAppendTime;
        let mut next = base_offset;
        let mut position = 0;
        for header in headers {
            let bytes = &mut records[position..position + header.size];
            batch::assign_offset(bytes, next, leader_epoch);
            if log_append_time {
                batch::set_log_append_time(bytes, header.size, now_ms);
            }
            next += i64::from(header.last_offset_delta) + 1;
            position += header.size;
        }
        // A small record set is a view of a much larger socket read buffer; kept in the cache
        // as it is, it would keep that whole buffer alive (a partition with one small batch
        // would hold 64 KiB or more). Small sets get an allocation of their own instead.
        let records = if records.len() < OWN_ALLOCATION_BELOW_BYTES {
            Bytes::copy_from_slice(&records)
        } else {
            records.freeze()
        };
        let interval = u64::from(state.config.index_interval_bytes);
        let mut position = 0;
        let mut cached = Vec::with_capacity(headers.len());
        let mut offset = base_offset;
        for header in headers {
            let mut header = *header;
            header.base_offset = offset;
            if log_append_time {
                header.max_timestamp = now_ms;
            }
            let bytes = records.slice(position..position + header.size);
            state.producers.record(&header);
            let active = state.active();
            let file_position = active.size;
            active.note_batch(&header, file_position, interval);
            active.size += header.size as u64;
            active.pending.push(bytes.clone());
            state.cache.push_back(CachedBatch {
                base_offset: offset,
                last_offset: header.last_offset(),
                bytes,
            });
            cached.push((offset, header.size));
            offset = header.last_offset() + 1;
            position += header.size;
        }
        let messages: u64 = headers.iter().map(|h| h.record_count as u64).sum();
        state.log_end_offset = offset;
        state.messages_since_sync += messages;
        state.bytes_since_sync += total;
        if !state.sync_every_write() {
            // Durability is left to the flush policy: readers see data once it is appended.
            state.advance_high_watermark(offset);
        }
        let info = AppendInfo {
            base_offset,
            last_offset: offset - 1,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: state.log_start_offset,
            duplicate: false,
        };
        drop(state);
        for (base, size) in cached {
            self.storage.cache_insert(self, base, size);
        }
        self.storage.mark_dirty(self);
        self.storage.cache_evict();
        Ok(info)
    }

    /// Resolves when every offset below `end` is durable (sync mode) or immediately otherwise.
    pub fn wait_durable(
        &self,
        end: Offset,
    ) -> impl std::future::Future<Output = Result<(), String>> {
        let mut state = self.state.borrow_mut();
        let receiver = if !state.sync_every_write() || state.durable_offset >= end {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            state.sync_waiters.push((end, tx));
            Some(rx)
        };
        async move {
            match receiver {
                None => Ok(()),
                Some(rx) => rx.await.unwrap_or_else(|_| Err("log closed".into())),
            }
        }
    }

    /// Resolves when the high watermark moves past `offset` (for long-polling fetches).
    pub fn wait_for_data(&self, offset: Offset) -> Option<oneshot::Receiver<()>> {
        let mut state = self.state.borrow_mut();
        if state.high_watermark > offset {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        state.data_waiters.retain(|w| !w.is_canceled());
        state.data_waiters.push(tx);
        Some(rx)
    }

    /// Writes pending bytes to their segment files and syncs when the policy (or `force`) says.
    /// Writes everything appended so far and syncs it as the log's policy says (always, with
    /// `force`). Concurrent callers take turns; each covers what arrived before it wrote.
    pub async fn flush(self: &Rc<Self>, force: bool) -> Result<(), LogError> {
        let job = self.write_phase(force).await?;
        self.sync_phase(job).await
    }

    /// Writes every pending batch to its segment file and says what the sync after it covers.
    async fn write_phase(self: &Rc<Self>, force: bool) -> Result<SyncJob, LogError> {
        self.in_turn(&self.write_turn, self.write_pending(force))
            .await
    }

    /// Syncs what a write phase wrote, if its policy says so, and then acknowledges the
    /// produces waiting for it; finishes sealed segments.
    async fn sync_phase(self: &Rc<Self>, job: SyncJob) -> Result<(), LogError> {
        self.in_turn(&self.sync_turn, self.sync_written(job)).await
    }

    /// Runs `work` holding `turn`; a failure fails the produces waiting for a sync.
    async fn in_turn<T>(
        &self,
        turn: &runtime::LocalLock,
        work: impl std::future::Future<Output = Result<T, LogError>>,
    ) -> Result<T, LogError> {
        let result = match turn.acquire_permit(1).await {
            Ok(_turn) => work.await,
            Err(_) => Err(LogError::Io(std::io::Error::other("log closed"))),
        };
        if let Err(e) = &result {
            self.fail_sync_waiters(e);
        }
        result
    }

    fn fail_sync_waiters(&self, error: &LogError) {
        let mut state = self.state.borrow_mut();
        let reason = error.to_string();
        for (_, waiter) in state.sync_waiters.drain(..) {
            let _ = waiter.send(Err(reason.clone()));
        }
    }

    async fn write_pending(self: &Rc<Self>, force: bool) -> Result<SyncJob, LogError> {
        let target = self.state.borrow().log_end_offset;
        // Write every segment that has pending bytes, oldest first. Segments are found by base
        // offset, not position: retention may drop older ones while a write is in flight.
        let mut touched: Vec<Rc<DmaFile>> = Vec::new();
        let mut after: Offset = Offset::MIN;
        loop {
            let job = {
                let mut state = self.state.borrow_mut();
                let Some(segment) = state
                    .segments
                    .iter_mut()
                    .find(|s| s.base_offset > after && !s.pending.is_empty())
                else {
                    break;
                };
                after = segment.base_offset;
                let pending = std::mem::take(&mut segment.pending);
                let tail = std::mem::take(&mut segment.tail);
                (
                    segment.base_offset,
                    segment.path.clone(),
                    segment.file.clone(),
                    segment.written,
                    tail,
                    pending,
                )
            };
            let (base, path, file, written, tail, pending) = job;
            let file = match file {
                Some(file) => file,
                None => {
                    let file = file::create(&path).await?;
                    let preallocate = {
                        let state = self.state.borrow();
                        state
                            .config
                            .preallocate
                            .then_some(state.config.segment_bytes)
                    };
                    if let Some(bytes) = preallocate {
                        // Blocks only: the file's size stays what was written, so recovery
                        // and reads see no difference.
                        if let Err(e) = file.pre_allocate(bytes, true).await {
                            tracing::warn!(segment = %path.display(), error = %e, "cannot preallocate");
                        }
                    }
                    if let Some(segment) = self.segment_mut(base).as_mut() {
                        segment.file = Some(file.clone());
                    }
                    file
                }
            };
            let mut pieces: Vec<&[u8]> = Vec::with_capacity(pending.len() + 1);
            pieces.push(&tail);
            pieces.extend(pending.iter().map(|b| b.as_ref()));
            let pending_bytes: u64 = pending.iter().map(|b| b.len() as u64).sum();
            file::write_padded(&file, align_down(written), &pieces).await?;
            let new_written = written + pending_bytes;
            // The new tail is the last `new_written % ALIGN` bytes of tail ++ pending.
            let mut need = (new_written % ALIGN) as usize;
            let mut new_tail = Vec::with_capacity(need);
            for piece in pieces.iter().rev() {
                if need == 0 {
                    break;
                }
                let take = need.min(piece.len());
                new_tail.splice(0..0, piece[piece.len() - take..].iter().copied());
                need -= take;
            }
            if let Some(segment) = self.segment_mut(base).as_mut() {
                segment.written = new_written;
                segment.tail = new_tail;
            }
            if !touched.iter().any(|f| Rc::ptr_eq(f, &file)) {
                touched.push(file);
            }
        }
        let mut state = self.state.borrow_mut();
        state.written_offset = target;
        for file in touched {
            if !state.unsynced.iter().any(|f| Rc::ptr_eq(f, &file)) {
                state.unsynced.push(file);
            }
        }
        let sync = force
            || state.sync_every_write()
            || state
                .config
                .flush_messages
                .is_some_and(|n| state.messages_since_sync >= n)
            || state
                .config
                .flush_ms
                .is_some_and(|ms| state.last_sync.elapsed().as_millis() as u64 >= ms)
            || state.segments.iter().any(|s| s.sealed && !s.finalized);
        Ok(SyncJob {
            sync,
            messages: state.messages_since_sync,
            bytes: state.bytes_since_sync,
        })
    }

    async fn sync_written(self: &Rc<Self>, job: SyncJob) -> Result<(), LogError> {
        if job.sync {
            // Covers every write finished before it starts, this job's and any other's.
            let (files, target) = {
                let mut state = self.state.borrow_mut();
                (std::mem::take(&mut state.unsynced), state.written_offset)
            };
            let sync_started = Instant::now();
            for (i, file) in files.iter().enumerate() {
                if let Err(e) = file.fdatasync().await {
                    // Still unsynced: a later sync must not count them as durable.
                    let mut state = self.state.borrow_mut();
                    for file in &files[i..] {
                        if !state.unsynced.iter().any(|f| Rc::ptr_eq(f, file)) {
                            state.unsynced.push(file.clone());
                        }
                    }
                    return Err(std::io::Error::from(e).into());
                }
            }
            let mut state = self.state.borrow_mut();
            if !files.is_empty() {
                let metrics = &self.storage.metrics;
                metrics
                    .sync_latency_us
                    .record(sync_started.elapsed().as_micros() as u64);
                metrics.sync_bytes.record(job.bytes);
            }
            // What was appended after this job's write phase waits for a later sync.
            state.bytes_since_sync = state.bytes_since_sync.saturating_sub(job.bytes);
            state.durable_offset = state.durable_offset.max(target);
            state.messages_since_sync = state.messages_since_sync.saturating_sub(job.messages);
            state.last_sync = Instant::now();
            if state.sync_every_write() {
                state.advance_high_watermark(target);
            }
            let durable = state.durable_offset;
            let waiters = std::mem::take(&mut state.sync_waiters);
            for (end, waiter) in waiters {
                if end <= durable {
                    let _ = waiter.send(Ok(()));
                } else {
                    state.sync_waiters.push((end, waiter));
                }
            }
        }
        self.checkpoint_if_due().await?;
        self.finalize_sealed().await?;
        Ok(())
    }

    /// Writes the active segment's indexes, up to the durable offset, and the producer state,
    /// when the segment grew and the last checkpoint is old enough: recovery after a crash
    /// trusts that much of the segment and scans only the rest.
    async fn checkpoint_if_due(&self) -> Result<(), LogError> {
        if self.closed.get() {
            return Ok(());
        }
        let job = {
            let state = self.state.borrow();
            let active = state.segments.back().expect("non-empty");
            let grown = active.written.saturating_sub(state.checkpointed_bytes);
            let index_bytes = (active.index.len() * index::OFFSET_ENTRY_BYTES
                + active.time_index.len() * index::TIME_ENTRY_BYTES)
                as u64;
            let due = active.file.is_some()
                && grown
                    >= CHECKPOINT_MIN_BYTES.max(index_bytes * CHECKPOINT_GROWTH_PER_INDEX_BYTE)
                && state.checkpointed_at.elapsed() >= CHECKPOINT_INTERVAL;
            due.then(|| {
                let durable = (state.durable_offset - active.base_offset).clamp(0, u32::MAX.into());
                (
                    active.index.encode_before(durable as u32),
                    active.time_index.encode_before(durable as u32),
                    active.index_path(),
                    active.time_index_path(),
                    active.written,
                )
            })
        };
        let Some((index, time_index, index_path, time_path, written)) = job else {
            return Ok(());
        };
        // The producer state first: the indexes say where recovery scans from, and the state
        // must cover every batch before that.
        self.write_producer_snapshot().await?;
        let (a, b) = futures::join!(
            file::write_whole(&index_path, &index),
            file::write_whole(&time_path, &time_index)
        );
        a?;
        b?;
        let mut state = self.state.borrow_mut();
        state.checkpointed_at = Instant::now();
        state.checkpointed_bytes = written;
        Ok(())
    }

    fn segment_mut(&self, base: Offset) -> Option<std::cell::RefMut<'_, Segment>> {
        std::cell::RefMut::filter_map(self.state.borrow_mut(), |state| {
            state.segments.iter_mut().find(|s| s.base_offset == base)
        })
        .ok()
    }

    /// Saves the idempotent-producer state, so recovery only replays the active segment.
    async fn write_producer_snapshot(&self) -> Result<(), LogError> {
        let bytes = {
            let state = self.state.borrow();
            if state.producers.is_empty() {
                return Ok(());
            }
            state.producers.encode()
        };
        file::write_whole(&self.dir.join(PRODUCER_SNAPSHOT), &bytes).await?;
        Ok(())
    }

    /// The epoch and remembered batches of one producer on this partition.
    pub fn producer_state(
        &self,
        producer_id: i64,
    ) -> Option<(i16, Vec<super::producers::BatchRange>)> {
        self.state.borrow().producers.entry(producer_id)
    }

    /// Writes the indexes of sealed, fully written segments and trims their block padding.
    async fn finalize_sealed(&self) -> Result<(), LogError> {
        loop {
            let job = {
                let state = self.state.borrow();
                state
                    .segments
                    .iter()
                    .enumerate()
                    .find(|(_, s)| {
                        s.sealed && !s.finalized && s.pending.is_empty() && s.written == s.size
                    })
                    .map(|(i, s)| {
                        (
                            i,
                            s.base_offset,
                            s.file.clone(),
                            s.size,
                            s.index.encode(),
                            s.time_index.encode(),
                            s.index_path(),
                            s.time_index_path(),
                        )
                    })
            };
            let Some((_, base, file, size, index, time_index, index_path, time_path)) = job else {
                return Ok(());
            };
            if let Some(file) = &file {
                file.truncate(size).await.map_err(std::io::Error::from)?;
                file.fdatasync().await.map_err(std::io::Error::from)?;
            }
            file::write_whole(&index_path, &index).await?;
            file::write_whole(&time_path, &time_index).await?;
            self.write_producer_snapshot().await?;
            let mut state = self.state.borrow_mut();
            if let Some(segment) = state.segments.iter_mut().find(|s| s.base_offset == base) {
                segment.finalized = true;
                segment.tail.clear();
            }
        }
    }

    /// Drops cached batches up to and including the one at `base_offset`, if they are written.
    fn cache_evict_through(&self, base_offset: Offset) -> bool {
        let mut state = self.state.borrow_mut();
        let written = state.written_offset;
        let Some(front) = state.cache.front() else {
            return true;
        };
        if front.base_offset > base_offset {
            return true; // already gone (retention or truncation)
        }
        if front.last_offset >= written {
            return false;
        }
        state.cache.pop_front();
        true
    }

    /// Reads batches starting with the one that holds `offset`, up to about `max_bytes` (the
    /// first batch is returned whole even if larger) and never at or past `upper_bound`.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        upper_bound: Option<Offset>,
    ) -> Result<ReadOut, LogError> {
        let (start, end, hw) = {
            let s = self.state.borrow();
            (s.log_start_offset, s.log_end_offset, s.high_watermark)
        };
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start,
                end,
            });
        }
        let limit = upper_bound.unwrap_or(hw).min(end);
        let mut out = ReadOut {
            chunks: Vec::new(),
            bytes: 0,
            high_watermark: hw,
            log_start_offset: start,
            log_end_offset: end,
        };
        if offset >= limit {
            return Ok(out);
        }
        // The tail cache first.
        {
            let state = self.state.borrow();
            if state
                .cache
                .front()
                .is_some_and(|front| front.base_offset <= offset)
            {
                self.storage.metrics.cache_hits.increment();
                let first = state.cache.partition_point(|b| b.last_offset < offset);
                for cached in state.cache.iter().skip(first) {
                    if cached.base_offset >= limit {
                        break;
                    }
                    if out.bytes > 0 && out.bytes + cached.bytes.len() > max_bytes {
                        break;
                    }
                    out.bytes += cached.bytes.len();
                    out.chunks.push(Chunk::Memory(cached.bytes.clone()));
                }
                return Ok(out);
            }
        }
        // Older data: a direct read from the segment that holds `offset`.
        self.storage.metrics.cache_misses.increment();
        let (file, position, segment_end) = {
            let state = self.state.borrow();
            let index = state
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            let mut index = index;
            // Past segments that end before `offset` (or hold nothing: compaction can empty one).
            while index + 1 < state.segments.len()
                && state.segments[index].last_offset < offset.max(state.segments[index].base_offset)
            {
                index += 1;
            }
            let segment = &state.segments[index];
            let Some(file) = segment.file.clone() else {
                return Ok(out);
            };
            let relative = (offset - segment.base_offset).max(0) as u32;
            (
                file,
                u64::from(segment.index.lookup(relative)),
                segment.written,
            )
        };
        let mut position = position;
        let mut want = max_bytes.max(READ_MIN_BYTES);
        loop {
            if position >= segment_end {
                return Ok(out);
            }
            let length = (want as u64).min(segment_end - position) as usize;
            let data = file
                .read_at(position, length)
                .await
                .map_err(std::io::Error::from)?;
            let mut cursor = 0;
            let mut first_start = None;
            let mut needed_more = None;
            while cursor < data.len() {
                let header = match batch::parse_header(&data[cursor..]) {
                    Ok(h) => h,
                    Err(batch::BatchError::Truncated(_)) => {
                        if first_start.is_none() {
                            let header_len = batch::HEADER_BYTES.min(data.len() - cursor);
                            let size = if header_len >= batch::LOG_OVERHEAD_BYTES {
                                batch::LOG_OVERHEAD_BYTES
                                    + i32::from_be_bytes(
                                        data[cursor + 8..cursor + 12].try_into().expect("4"),
                                    )
                                    .max(0) as usize
                            } else {
                                batch::HEADER_BYTES
                            };
                            needed_more = Some((position + cursor as u64, size));
                        }
                        break;
                    }
                    Err(e) => {
                        return Err(LogError::Corrupt(format!(
                            "{} at position {}: {e}",
                            self.dir.display(),
                            position + cursor as u64
                        )))
                    }
                };
                if header.base_offset >= limit {
                    break;
                }
                if header.last_offset() < offset {
                    cursor += header.size;
                    continue;
                }
                let start = *first_start.get_or_insert(cursor);
                if cursor > start && cursor + header.size - start > max_bytes {
                    break;
                }
                cursor += header.size;
                out.bytes = cursor - start;
            }
            if let Some(start) = first_start {
                if let Some(slice) = ReadResult::slice(&data, start, out.bytes) {
                    out.chunks.push(Chunk::Disk(slice));
                }
                return Ok(out);
            }
            match needed_more {
                Some((at, size)) => {
                    position = at;
                    want = size.max(READ_MIN_BYTES);
                }
                None => {
                    if cursor == 0 {
                        return Ok(out);
                    }
                    position += cursor as u64;
                }
            }
        }
    }

    /// The first offset whose batch has a timestamp >= `timestamp`, with that batch's max
    /// timestamp; `None` if no batch does.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(Offset, i64)>, LogError> {
        let candidates: Vec<(Offset, u32)> = {
            let state = self.state.borrow();
            state
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= timestamp)
                .map(|s| (s.base_offset, s.time_index.lookup(timestamp)))
                .collect()
        };
        for (base, relative) in candidates {
            let mut offset = base + i64::from(relative);
            loop {
                let out = self.read(offset, 1 << 20, None).await?;
                if out.chunks.is_empty() {
                    break;
                }
                let mut found = None;
                for chunk in &out.chunks {
                    let mut data = chunk.as_ref();
                    while let Ok(header) = batch::parse_header(data) {
                        if header.max_timestamp >= timestamp && header.last_offset() >= offset {
                            found = Some(
                                first_record_at(&data[..header.size], &header, offset, timestamp)
                                    .unwrap_or((
                                        header.base_offset.max(offset),
                                        header.max_timestamp,
                                    )),
                            );
                            break;
                        }
                        offset = header.last_offset() + 1;
                        data = &data[header.size..];
                    }
                    if found.is_some() {
                        break;
                    }
                }
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the batch that holds it.
    pub fn max_timestamp(&self) -> Option<(Offset, i64)> {
        let state = self.state.borrow();
        state
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= 0)
            .max_by_key(|s| s.max_timestamp)
            .map(|s| (s.base_offset, s.max_timestamp))
    }

    /// Deletes whole segments past `retention.ms` or beyond `retention.bytes`, oldest first;
    /// never the active one. Returns how many were deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        if self.cleaning.get() {
            return Ok(0);
        }
        let doomed: Vec<Segment> = {
            let mut state = self.state.borrow_mut();
            if !state.config.cleanup_policy.delete {
                return Ok(0);
            }
            let retention_ms = state.config.retention_ms;
            let retention_bytes = state.config.retention_bytes;
            let mut total: u64 = state.segments.iter().map(|s| s.size).sum();
            let mut doomed = Vec::new();
            while state.segments.len() > 1 {
                let front = &state.segments[0];
                if !front.finalized {
                    break;
                }
                let too_old = retention_ms >= 0 && now_ms - front.max_timestamp > retention_ms;
                let too_big = retention_bytes >= 0 && total - front.size >= retention_bytes as u64;
                if !(too_old || too_big) {
                    break;
                }
                total -= front.size;
                doomed.push(state.segments.pop_front().expect("checked"));
            }
            if !doomed.is_empty() {
                let start = state.segments[0].base_offset;
                state.log_start_offset = start;
                while state.cache.front().is_some_and(|b| b.base_offset < start) {
                    state.cache.pop_front();
                }
            }
            doomed
        };
        // Freeing a deleted file's blocks happens at its last close, which can take
        // milliseconds: that close is made on the helper thread, not on this shard.
        let held: Vec<std::os::fd::OwnedFd> = doomed
            .iter()
            .filter_map(|s| s.file.as_deref().and_then(runtime::hold_descriptor))
            .collect();
        // `file.delete.delay.ms`: the files are renamed to `.deleted` at once (recovery
        // removes such files) and unlinked after the delay, as Kafka does.
        let delay_ms = self.state.borrow().config.file_delete_delay_ms;
        let mut retired = Vec::new();
        for segment in &doomed {
            tracing::info!(segment = %segment.path.display(), "retention deleted segment");
            for path in [
                segment.path.clone(),
                segment.index_path(),
                segment.time_index_path(),
            ] {
                let outcome = if delay_ms > 0 {
                    let mut renamed = path.clone().into_os_string();
                    renamed.push(".deleted");
                    let renamed = PathBuf::from(renamed);
                    let outcome = std::fs::rename(&path, &renamed);
                    retired.push(renamed);
                    outcome
                } else {
                    std::fs::remove_file(&path)
                };
                if let Err(e) = outcome {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(e.into());
                    }
                }
            }
        }
        if !retired.is_empty() {
            runtime::spawn(async move {
                runtime::sleep(std::time::Duration::from_millis(delay_ms as u64)).await;
                runtime::blocking(move || {
                    for path in retired {
                        let _ = std::fs::remove_file(path);
                    }
                })
                .await;
            });
        }
        let deleted = doomed.len();
        drop(doomed);
        // Let the shard's own closes reach the ring first, so the held descriptors are last.
        runtime::sleep(std::time::Duration::from_millis(5)).await;
        runtime::blocking(move || drop(held)).await;
        Ok(deleted)
    }

    /// Forgets idempotent producers idle for `expiration_ms`; returns how many.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.state
            .borrow_mut()
            .producers
            .expire(now_ms, expiration_ms)
    }

    /// Rolls the active segment if it is older than `segment.ms` (checked periodically, as
    /// Kafka checks it, so idle topics still age out).
    pub fn roll_if_old(self: &Rc<Self>) {
        let mut state = self.state.borrow_mut();
        let next = state.log_end_offset;
        let config = state.config.clone();
        let active = state.active();
        if active.must_roll(&config, 0) {
            active.sealed = true;
            let segment = Segment::active(&self.dir, next, &config);
            state.segments.push_back(segment);
            drop(state);
            self.storage.mark_dirty(self);
        }
    }

    /// Flushes, syncs and writes the active segment's indexes: a clean close.
    pub async fn close(self: &Rc<Self>) -> Result<(), LogError> {
        self.flush(true).await?;
        // From here no sync phase runs (a flusher round still in flight waits, then finds
        // the log closed), so no checkpoint writes these files while the close does.
        self.closed.set(true);
        let _turn = self
            .sync_turn
            .acquire_permit(1)
            .await
            .map_err(|_| LogError::Io(std::io::Error::other("log closed")))?;
        let job = {
            let state = self.state.borrow();
            let active = state.segments.back().expect("non-empty");
            active.file.as_ref().map(|_| {
                (
                    active.index.encode(),
                    active.time_index.encode(),
                    active.index_path(),
                    active.time_index_path(),
                )
            })
        };
        if let Some((index, time_index, index_path, time_path)) = job {
            file::write_whole(&index_path, &index).await?;
            file::write_whole(&time_path, &time_index).await?;
        }
        self.write_producer_snapshot().await?;
        // Last: the marker says everything above is complete. The active file keeps its zero
        // padding up to the block boundary; recovery trims it.
        file::write_whole(&self.dir.join(CLEAN_SHUTDOWN), b"").await?;
        Ok(())
    }
}

/// The first record of a batch at or after `offset` whose timestamp is at least `timestamp`,
/// as Kafka answers ListOffsets by time (record by record, not batch by batch).
fn first_record_at(
    bytes: &[u8],
    header: &BatchHeader,
    offset: Offset,
    timestamp: i64,
) -> Option<(Offset, i64)> {
    if header.is_log_append_time() {
        return Some((header.base_offset.max(offset), header.max_timestamp));
    }
    let mut found = None;
    let owned;
    let section: &[u8] = if header.compression() == 0 {
        bytes.get(batch::HEADER_BYTES..)?
    } else {
        owned = crate::protocol::records::section(&Bytes::copy_from_slice(bytes), header).ok()?;
        &owned
    };
    batch::walk_records(section, header, |r| {
        if found.is_none() && r.offset >= offset && r.timestamp >= timestamp {
            found = Some((r.offset, r.timestamp));
        }
    })
    .ok()?;
    found
}

/// Opens one segment from disk. A valid index is trusted up to its last entry (complete for
/// sealed segments and a cleanly closed last one; a recovery checkpoint's after a crash), and
/// only the rest is read; after a crash it is checked batch by batch and a torn tail is
/// truncated. Returns the segment, how many bytes were truncated and how many were read.
async fn recover_segment(
    dir: &Path,
    base: Offset,
    is_last: bool,
    clean_shutdown: bool,
    gaps_allowed: bool,
    config: &TopicConfig,
    producers: &mut ProducerStates,
) -> Result<(Segment, u64, u64), LogError> {
    let mut segment = Segment::new(dir, base);
    let file = file::open_rw(&segment.path).await?;
    let file_size = file.file_size().await.map_err(std::io::Error::from)?;
    let interval = u64::from(config.index_interval_bytes);
    let mut scan_from = 0u64;
    let mut check_crc = true;
    // Sealed segments and a cleanly closed last one have complete indexes; the last one after
    // a crash may have a checkpoint's, which names durable batches only. Either way the
    // batches up to the last entry are trusted, and the rest is scanned.
    {
        let index = file::read_whole(&segment.index_path()).await?;
        let time_index = file::read_whole(&segment.time_index_path()).await?;
        if let (Some(index), Some(time_index)) = (index, time_index) {
            if let (Some(index), Some(time_index)) = (
                OffsetIndex::decode(&index, file_size),
                TimeIndex::decode(&time_index),
            ) {
                if let Some((relative, position)) = index.last() {
                    scan_from = u64::from(position);
                    segment.last_offset = base + i64::from(relative) - 1;
                    segment.max_timestamp = time_index.last().map_or(-1, |(t, _)| t);
                    segment.index = index;
                    segment.time_index = time_index;
                    // After a crash the tail is checked batch by batch: it may be torn.
                    check_crc = is_last && !clean_shutdown;
                }
            }
        }
    }
    let mut position = scan_from;
    let mut valid_end = scan_from;
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_start = scan_from;
    let rebuild_index = segment.index.is_empty();
    'scan: while position < file_size {
        let length = ((file_size - position) as usize).min(SCAN_CHUNK_BYTES);
        let chunk = file
            .read_at(position, length)
            .await
            .map_err(std::io::Error::from)?;
        if chunk.is_empty() {
            break;
        }
        carry.extend_from_slice(&chunk);
        position += chunk.len() as u64;
        let mut cursor = 0;
        loop {
            let rest = &carry[cursor..];
            let parsed = if check_crc {
                batch::parse_checked(rest)
            } else {
                batch::parse_header(rest)
            };
            match parsed {
                Ok(header) => {
                    let at = carry_start + cursor as u64;
                    let expected_base = segment.last_offset + 1;
                    let in_order = if gaps_allowed {
                        header.base_offset >= expected_base
                    } else {
                        header.base_offset == expected_base
                    };
                    if !in_order {
                        break 'scan;
                    }
                    if is_last {
                        producers.record(&header);
                    }
                    // Indexes the scanned batches (all of them when the index is rebuilt; those
                    // after its last entry otherwise, as appends would have).
                    segment.note_batch(&header, at, interval);
                    cursor += header.size;
                    valid_end = carry_start + cursor as u64;
                }
                Err(batch::BatchError::Truncated(_)) if position < file_size => break,
                Err(_) => break 'scan,
            }
        }
        carry.drain(..cursor);
        carry_start += cursor as u64;
    }
    let mut truncated = file_size - valid_end;
    // Zeros up to the end of the last block are the padding of the last direct write (a
    // cleanly closed log keeps it), not a torn tail.
    let rest = &carry[(valid_end - carry_start) as usize..];
    let padding = position == file_size
        && file_size <= align_up(valid_end)
        && rest.len() as u64 == file_size - valid_end
        && rest.iter().all(|&b| b == 0);
    if truncated > 0 {
        file.truncate(valid_end)
            .await
            .map_err(std::io::Error::from)?;
        file.fdatasync().await.map_err(std::io::Error::from)?;
    }
    segment.size = valid_end;
    segment.written = valid_end;
    let tail_start = align_down(valid_end);
    if valid_end > tail_start {
        let tail = file
            .read_at(tail_start, (valid_end - tail_start) as usize)
            .await
            .map_err(std::io::Error::from)?;
        segment.tail = tail.to_vec();
    }
    if !is_last {
        segment.sealed = true;
        segment.finalized = true;
        if rebuild_index {
            file::write_whole(&segment.index_path(), &segment.index.encode()).await?;
            file::write_whole(&segment.time_index_path(), &segment.time_index.encode()).await?;
        }
    }
    segment.file = Some(file);
    if padding {
        truncated = 0;
    }
    Ok((segment, truncated, position - scan_from))
}

#[path = "cleaner.rs"]
mod cleaner;
pub use cleaner::{CleanStats, CleanerStatus, StopAt};

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;

//! Log compaction (`cleanup.policy=compact`): keep the latest record per key.
//!
//! A pass over one log:
//! 1. The cleanable range is the sealed, fully written segments up to the first one holding a
//!    record younger than `min.compaction.lag.ms`. It is cleaned only if its dirty part (the
//!    bytes past the last pass's checkpoint) is at least `min.cleanable.dirty.ratio` of it, or
//!    its oldest dirty record is older than `max.compaction.lag.ms`.
//! 2. A map of key → offset of its latest record is built over that range.
//! 3. Consecutive segments are grouped up to `segment.bytes` and each group is rewritten into one
//!    new segment with the records the map points at; tombstones older than
//!    `delete.retention.ms` and records without a key go too. Offsets never change (gaps are
//!    allowed). A batch that keeps every record is copied byte for byte; one that loses some is
//!    re-encoded with its own codec.
//! 4. The swap is crash-safe: the new segment is written and synced as `{base}.cleaned`, then
//!    renamed to `{base}-{end}.swap` (the commit point), the old segments are renamed to
//!    `.deleted` (unlinked later, slowly), and the swap file is renamed to `{base}.log`.
//!    Recovery deletes `.cleaned` and `.deleted` files and completes `.swap` ones, so a kill at
//!    any point leaves either the old segments or the new one.
//!
//! The cleaner runs on the shard that owns the log and yields between batches, so produce and
//! fetch on that shard keep being served.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};

use super::{LogError, PartitionLog, Segment};
use crate::protocol::batch::{self, BatchError, BatchHeader};
use crate::protocol::records;
use crate::runtime::{self, DmaFile};
use crate::storage::file::{self, align_down};
use crate::storage::Offset;

/// Present in a log directory once a cleaned segment was swapped in: gaps between and inside
/// segments are then expected, not a sign of a torn log.
pub const COMPACTED_MARKER: &str = "compacted";
/// The offset the last pass cleaned up to (8 bytes, big-endian).
pub const CHECKPOINT: &str = "cleaner-checkpoint";
#[cfg(not(test))]
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Small in tests, so that batches straddle chunk boundaries.
#[cfg(test)]
const READ_CHUNK_BYTES: usize = 1000;
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Pause between unlinking two replaced segment files.
const RETIRED_DELETE_PAUSE_MS: u64 = 20;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_in: usize,
    pub segments_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// When the earliest tombstone kept by this pass expires.
    pub tombstones_due_ms: Option<i64>,
}

/// Where a pass stops, as if the process had been killed there (tests of the swap).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    Never,
    CleanedWritten,
    SwapRenamed,
    OldRemoved,
}

/// Why a pass failed. A pass that fails leaves the log as it was (its temporary file is
/// removed) and is tried again at the next interval.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// A stored batch fails its CRC or cannot be parsed: the log itself is damaged.
    #[error("log is corrupt: segment {segment}, byte {position}: {error}")]
    Corrupt {
        segment: Offset,
        position: u64,
        error: BatchError,
    },
    /// A batch's records could not be read or written again (a codec failed, a record is
    /// malformed inside a batch whose CRC holds).
    #[error("cannot rewrite the batch at offset {offset}: {error}")]
    Rewrite { offset: Offset, error: BatchError },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
    /// The log changed underneath the pass in a way it does not expect.
    #[error("{0}")]
    Changed(&'static str),
}

impl CleanError {
    fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> CleanError {
        move |source| CleanError::Io { step, source }
    }
}

impl From<CleanError> for LogError {
    fn from(e: CleanError) -> Self {
        match e {
            CleanError::Corrupt { .. } => LogError::Corrupt(e.to_string()),
            CleanError::Io { source, .. } => LogError::Io(source),
            other => LogError::Cleaner(other.to_string()),
        }
    }
}

/// What a pass decides every batch by.
struct PassInputs<'a> {
    latest: &'a KeyMap,
    /// Producer id -> last offset of its newest batch, for producers the log still tracks.
    producers_last: AHashMap<i64, Offset>,
    now_ms: i64,
    delete_retention_ms: i64,
    /// `compression.gzip.level`, `.lz4.level`, `.zstd.level`: how a rebuilt batch is compressed
    /// again in its own codec.
    levels: [i32; 3],
}

impl PassInputs<'_> {
    fn level(&self, codec: i16) -> i32 {
        match codec {
            1 => self.levels[0],
            3 => self.levels[1],
            4 => self.levels[2],
            _ => 0,
        }
    }
}

struct Source {
    base: Offset,
    last: Offset,
    size: u64,
    file: Rc<DmaFile>,
}

pub fn swap_name(base: Offset, end: Offset) -> String {
    format!("{base:020}-{end:020}.swap")
}

pub fn parse_swap_name(name: &str) -> Option<(Offset, Offset)> {
    let stem = name.strip_suffix(".swap")?;
    let (base, end) = stem.split_once('-')?;
    Some((base.parse().ok()?, end.parse().ok()?))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Finishes or undoes a pass that a crash interrupted. Runs before the segments are listed.
pub fn recover_interrupted(dir: &Path) -> std::io::Result<()> {
    let mut swaps = Vec::new();
    let mut changed = false;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".cleaned") || name.ends_with(".deleted") {
            std::fs::remove_file(dir.join(&name))?;
            changed = true;
        } else if let Some(range) = parse_swap_name(&name) {
            swaps.push((name, range));
        }
    }
    for (name, (base, end)) in swaps {
        for entry in std::fs::read_dir(dir)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            let Some((stem, extension)) = file.split_once('.') else {
                continue;
            };
            let Ok(segment) = stem.parse::<Offset>() else {
                continue;
            };
            if (base..end).contains(&segment)
                && matches!(extension, "log" | "index" | "timeindex")
                && !(segment == base && extension == "log")
            {
                std::fs::remove_file(dir.join(&file))?;
            }
        }
        std::fs::rename(dir.join(&name), dir.join(format!("{base:020}.log")))?;
        tracing::info!(dir = %dir.display(), base, end, "completed an interrupted compaction swap");
        changed = true;
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Paces a pass's reads at `log.cleaner.io.max.bytes.per.second`.
struct Throttle {
    bytes_per_second: f64,
    started: std::time::Instant,
    read: u64,
}

impl Throttle {
    fn new(bytes_per_second: f64) -> Self {
        Throttle {
            bytes_per_second,
            started: std::time::Instant::now(),
            read: 0,
        }
    }

    async fn account(&mut self, bytes: usize) {
        self.read += bytes as u64;
        if self.bytes_per_second >= f64::MAX {
            return;
        }
        let due = std::time::Duration::from_secs_f64(self.read as f64 / self.bytes_per_second);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            runtime::sleep(wait).await;
        }
    }
}

/// Reads a segment file batch by batch, checking each (CRC, record count) as stored batches
/// are checked.
struct BatchReader {
    file: Rc<DmaFile>,
    segment: Offset,
    size: u64,
    position: u64,
    /// File position of the first byte of `carry`.
    carried_from: u64,
    carry: BytesMut,
}

impl BatchReader {
    fn new(source: &Source) -> Self {
        BatchReader {
            file: source.file.clone(),
            segment: source.base,
            size: source.size,
            position: 0,
            carried_from: 0,
            carry: BytesMut::new(),
        }
    }

    /// The next whole batches; `None` at the end of the file.
    async fn next(
        &mut self,
        throttle: &mut Throttle,
    ) -> Result<Option<Vec<(BatchHeader, Bytes)>>, CleanError> {
        loop {
            let mut out = Vec::new();
            while !self.carry.is_empty() {
                let header = match records::validate_stored(&self.carry) {
                    Ok(header) => header,
                    // The rest of the batch is in the next chunk.
                    Err(BatchError::Truncated(_)) => break,
                    Err(error) => {
                        return Err(CleanError::Corrupt {
                            segment: self.segment,
                            position: self.carried_from,
                            error,
                        })
                    }
                };
                self.carried_from += header.size as u64;
                out.push((header, self.carry.split_to(header.size).freeze()));
            }
            if !out.is_empty() {
                return Ok(Some(out));
            }
            if self.position >= self.size {
                if !self.carry.is_empty() {
                    return Err(CleanError::Corrupt {
                        segment: self.segment,
                        position: self.carried_from,
                        error: BatchError::Truncated(self.carry.len()),
                    });
                }
                return Ok(None);
            }
            let length = ((self.size - self.position) as usize).min(READ_CHUNK_BYTES);
            let data = self
                .file
                .read_at(self.position, length)
                .await
                .map_err(|e| CleanError::Io {
                    step: "reading a segment",
                    source: e.into(),
                })?;
            if data.is_empty() {
                return Err(CleanError::Corrupt {
                    segment: self.segment,
                    position: self.carried_from,
                    error: BatchError::Truncated(self.carry.len()),
                });
            }
            self.position += data.len() as u64;
            self.carry.extend_from_slice(&data);
            throttle.account(data.len()).await;
        }
    }
}

/// Writes a new segment with direct I/O in aligned chunks.
struct SegmentWriter {
    file: Rc<DmaFile>,
    written: u64,
    buffer: Vec<u8>,
}

impl SegmentWriter {
    async fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_CHUNK_BYTES {
            let aligned = align_down(self.buffer.len() as u64) as usize;
            file::write_padded(&self.file, self.written, &[&self.buffer[..aligned]]).await?;
            self.written += aligned as u64;
            self.buffer.drain(..aligned);
        }
        Ok(())
    }

    async fn finish(self) -> std::io::Result<Rc<DmaFile>> {
        let end = self.written + self.buffer.len() as u64;
        file::write_padded(&self.file, self.written, &[&self.buffer]).await?;
        self.file.truncate(end).await?;
        self.file.fdatasync().await?;
        Ok(self.file)
    }
}

type KeyMap = HashMap<Bytes, Offset, ahash::RandomState>;

/// Records `offset` as the latest of `key`; the key is copied only the first time it is seen.
fn note_latest(latest: &mut KeyMap, key: &[u8], offset: Offset) {
    match latest.get_mut(key) {
        Some(at) => *at = (*at).max(offset),
        None => {
            latest.insert(Bytes::copy_from_slice(key), offset);
        }
    }
}

/// What the cleaner last did to one log, for `DescribeLogDirs`-style views and metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CleanerStatus {
    /// When the last pass ended (ms since the epoch), whether it succeeded or failed.
    pub last_pass_ms: Option<i64>,
    /// How long it took.
    pub last_pass_duration_ms: u64,
    /// The last successful pass's figures.
    pub last_stats: Option<CleanStats>,
    /// The last failed pass's error, cleared by the next successful one.
    pub last_error: Option<String>,
    pub passes: u64,
    pub passes_failed: u64,
    /// Dirty bytes over cleanable bytes, as the last look at the log found them.
    pub dirty_ratio: f64,
}

impl PartitionLog {
    /// One compaction pass, if the log is due one. Returns what it did.
    pub async fn clean(self: &Rc<Self>, now_ms: i64) -> Result<Option<CleanStats>, LogError> {
        self.clean_until(now_ms, StopAt::Never).await
    }

    /// What the cleaner last did to this log.
    pub fn cleaner_status(&self) -> CleanerStatus {
        self.cleaner_status.borrow().clone()
    }

    #[doc(hidden)]
    pub async fn clean_until(
        self: &Rc<Self>,
        now_ms: i64,
        stop: StopAt,
    ) -> Result<Option<CleanStats>, LogError> {
        if self.cleaning.replace(true) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let result = self.clean_pass(now_ms, stop).await;
        self.cleaning.set(false);
        let mut status = self.cleaner_status.borrow_mut();
        match &result {
            Ok(None) => {}
            Ok(Some(stats)) => {
                status.passes += 1;
                status.last_pass_ms = Some(now_ms);
                status.last_pass_duration_ms = started.elapsed().as_millis() as u64;
                status.last_stats = Some(*stats);
                status.last_error = None;
            }
            Err(e) => {
                status.passes += 1;
                status.passes_failed += 1;
                status.last_pass_ms = Some(now_ms);
                status.last_pass_duration_ms = started.elapsed().as_millis() as u64;
                status.last_error = Some(e.to_string());
            }
        }
        drop(status);
        result.map_err(LogError::from)
    }

    async fn clean_pass(
        self: &Rc<Self>,
        now_ms: i64,
        stop: StopAt,
    ) -> Result<Option<CleanStats>, CleanError> {
        let (config, sources, cleaned_through, tombstones_due, producers_last, overdue) = {
            let state = self.state.borrow();
            if !state.config.cleanup_policy.compact || state.failed.is_some() {
                return Ok(None);
            }
            let lag_limit = now_ms.saturating_sub(state.config.min_compaction_lag_ms);
            let mut sources = Vec::new();
            // `max.compaction.lag.ms`: the first batch of a dirty segment (Kafka looks at the
            // oldest) has waited too long, so a pass is due whatever the dirty ratio.
            let mut overdue = false;
            for s in state.segments.iter().take(state.segments.len() - 1) {
                let Some(file) = s.file.clone() else { break };
                if !s.finalized || s.max_timestamp > lag_limit {
                    break;
                }
                overdue |= s.last_offset >= state.cleaned_through
                    && s.time_index.first().is_some_and(|(first, _)| {
                        first >= 0
                            && now_ms.saturating_sub(first) > state.config.max_compaction_lag_ms
                    });
                sources.push(Source {
                    base: s.base_offset,
                    last: s.last_offset,
                    size: s.size,
                    file,
                });
            }
            let tombstones_due = state.tombstones_due_ms.is_some_and(|t| t <= now_ms);
            (
                state.config.clone(),
                sources,
                state.cleaned_through,
                tombstones_due,
                state.producers.last_offsets(),
                overdue,
            )
        };
        let total: u64 = sources.iter().map(|s| s.size).sum();
        let dirty: u64 = sources
            .iter()
            .filter(|s| s.last >= cleaned_through)
            .map(|s| s.size)
            .sum();
        self.cleaner_status.borrow_mut().dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        let dirty_enough =
            dirty > 0 && dirty as f64 >= config.min_cleanable_dirty_ratio * total as f64;
        if total == 0 || !(dirty_enough || tombstones_due || overdue) {
            return Ok(None);
        }
        let throttle = &mut Throttle::new(self.storage.cleaner_io_bytes_per_second.get());
        // The latest offset of every key in the cleanable range. Keys are read in place (in
        // the decompressed records of a compressed batch); a key is copied only when new.
        let mut latest = KeyMap::default();
        for source in &sources {
            let mut reader = BatchReader::new(source);
            while let Some(batches) = reader.next(throttle).await? {
                for (header, bytes) in batches {
                    if header.is_control() {
                        continue;
                    }
                    let rewrite = |error| CleanError::Rewrite {
                        offset: header.base_offset,
                        error,
                    };
                    let section = records::section(&bytes, &header).map_err(rewrite)?;
                    batch::walk_records(&section, &header, |record| {
                        if let Some(key) = record.key {
                            note_latest(&mut latest, key, record.offset);
                        }
                    })
                    .map_err(rewrite)?;
                }
                runtime::yield_to_requests().await;
            }
        }
        let pass = PassInputs {
            latest: &latest,
            producers_last,
            now_ms,
            delete_retention_ms: config.delete_retention_ms,
            levels: [
                config.compression_gzip_level,
                config.compression_lz4_level,
                config.compression_zstd_level,
            ],
        };
        let mut stats = CleanStats::default();
        let through = sources.last().map_or(cleaned_through, |s| s.last + 1);
        // Groups own their sources: a group's file handles go when the group is swapped in.
        let mut groups: Vec<Vec<Source>> = Vec::new();
        let mut group_bytes = 0;
        for source in sources {
            let full = group_bytes + source.size > config.segment_bytes;
            match groups.last_mut() {
                Some(group) if !full => group.push(source),
                _ => {
                    group_bytes = 0;
                    groups.push(vec![source]);
                }
            }
            group_bytes += groups.last().map_or(0, |g| g.last().map_or(0, |s| s.size));
        }
        for group in groups {
            let base = group[0].base;
            let cleaned_path = self.dir.join(format!("{base:020}.cleaned"));
            let result = self
                .rewrite_group(group, &pass, &config, stop, (&mut stats, throttle))
                .await;
            if !matches!(result, Ok(false) if stop != StopAt::Never) {
                // A failed or abandoned rewrite leaves no temporary file behind. (The test
                // hooks that stop a pass on purpose keep theirs: they stand for a crash.)
                let _ = remove_if_present(&cleaned_path);
            }
            if !result? {
                return Ok(None);
            }
        }
        {
            let mut state = self.state.borrow_mut();
            state.cleaned_through = through;
            state.tombstones_due_ms = stats.tombstones_due_ms;
        }
        file::write_whole(&self.dir.join(CHECKPOINT), &through.to_be_bytes())
            .await
            .map_err(CleanError::io("writing the cleaner checkpoint"))?;
        self.cleaner_status.borrow_mut().dirty_ratio = 0.0;
        Ok(Some(stats))
    }

    /// Rewrites one group of segments into one and swaps it in. `false`: stopped (test hook)
    /// or the segments changed underneath.
    async fn rewrite_group(
        self: &Rc<Self>,
        group: Vec<Source>,
        pass: &PassInputs<'_>,
        config: &crate::config::TopicConfig,
        stop: StopAt,
        (stats, throttle): (&mut CleanStats, &mut Throttle),
    ) -> Result<bool, CleanError> {
        let base = group[0].base;
        let end = group.last().expect("non-empty group").last + 1;
        let cleaned_path = self.dir.join(format!("{base:020}.cleaned"));
        let mut writer = SegmentWriter {
            file: file::create(&cleaned_path)
                .await
                .map_err(CleanError::io("creating the cleaned segment"))?,
            written: 0,
            buffer: Vec::new(),
        };
        let mut segment = Segment::new(&self.dir, base);
        let interval = u64::from(config.index_interval_bytes);
        for source in &group {
            stats.segments_in += 1;
            stats.bytes_in += source.size;
            let mut reader = BatchReader::new(source);
            while let Some(batches) = reader.next(throttle).await? {
                for (header, bytes) in batches {
                    let Some((header, bytes)) = retain(header, bytes, pass, stats)? else {
                        continue;
                    };
                    segment.note_batch(&header, segment.size, interval);
                    segment.size += bytes.len() as u64;
                    writer
                        .push(&bytes)
                        .await
                        .map_err(CleanError::io("writing the cleaned segment"))?;
                }
                runtime::yield_to_requests().await;
            }
        }
        let new_file = writer
            .finish()
            .await
            .map_err(CleanError::io("syncing the cleaned segment"))?;
        segment.written = segment.size;
        segment.sealed = true;
        segment.finalized = true;
        segment.file = Some(new_file);
        stats.segments_out += 1;
        stats.bytes_out += segment.size;
        if stop == StopAt::CleanedWritten {
            return Ok(false);
        }
        // Only retention removes sealed segments, and it waits while `cleaning` is set; the
        // check still guards against a log that changed in a way this pass did not expect.
        let unchanged = {
            let state = self.state.borrow();
            group.iter().all(|source| {
                state
                    .segments
                    .iter()
                    .any(|s| s.base_offset == source.base && s.finalized && s.size == source.size)
            })
        };
        if !unchanged {
            return Ok(false);
        }
        let marker = self.dir.join(COMPACTED_MARKER);
        let swap_path = self.dir.join(swap_name(base, end));
        {
            let (dir, cleaned, swap) = (self.dir.clone(), cleaned_path.clone(), swap_path.clone());
            runtime::blocking(move || -> std::io::Result<()> {
                if !marker.exists() {
                    std::fs::write(&marker, b"")?;
                    std::fs::File::open(&marker)?.sync_all()?;
                }
                std::fs::rename(&cleaned, &swap)?;
                sync_dir(&dir)
            })
            .await
            .map_err(CleanError::io(
                "renaming the cleaned segment to its swap name",
            ))?;
        }
        let (index, time_index) = (segment.index.encode(), segment.time_index.encode());
        let (index_path, time_index_path) = (segment.index_path(), segment.time_index_path());
        let old: Vec<Segment> = {
            let mut state = self.state.borrow_mut();
            let Some(first) = state.segments.iter().position(|s| s.base_offset == base) else {
                // The log was deleted meanwhile; recovery of the directory would finish the swap.
                return Err(CleanError::Changed("segments vanished during compaction"));
            };
            let old: Vec<Segment> = state.segments.drain(first..first + group.len()).collect();
            state.segments.insert(first, segment);
            // Cached copies of the old batches would serve removed records.
            while state.cache.front().is_some_and(|b| b.base_offset < end) {
                state.cache.pop_front();
            }
            old
        };
        if stop == StopAt::SwapRenamed {
            return Ok(false);
        }
        // Old data files are renamed away now and unlinked later, a file at a time: freeing a
        // big file's blocks makes the next journal commit slow, and produce syncs wait on it.
        // The last close of a file whose blocks are freed can take milliseconds in the kernel:
        // a second descriptor keeps the shard's close cheap, and is closed on the helper thread.
        let mut doomed = Vec::new();
        let mut retired = Vec::new();
        let mut later = Vec::new();
        for s in &old {
            doomed.push(s.index_path());
            doomed.push(s.time_index_path());
            let held = s.file.as_deref().and_then(runtime::hold_descriptor);
            if s.base_offset == base {
                later.push((None, held));
            } else {
                let retired_path = s.path.with_extension("log.deleted");
                retired.push((s.path.clone(), retired_path.clone()));
                later.push((Some(retired_path), held));
            }
        }
        let dir = self.dir.clone();
        runtime::blocking(move || -> std::io::Result<()> {
            for path in &doomed {
                remove_if_present(path)?;
            }
            for (from, to) in &retired {
                match std::fs::rename(from, to) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            sync_dir(&dir)
        })
        .await
        .map_err(CleanError::io("retiring the replaced segments"))?;
        runtime::spawn(async move {
            for (path, held) in later {
                runtime::sleep(std::time::Duration::from_millis(RETIRED_DELETE_PAUSE_MS)).await;
                runtime::blocking(move || {
                    if let Some(path) = path {
                        let _ = remove_if_present(&path);
                    }
                    drop(held);
                })
                .await;
            }
        });
        if stop == StopAt::OldRemoved {
            return Ok(false);
        }
        let (dir, log_path) = (self.dir.clone(), self.dir.join(format!("{base:020}.log")));
        runtime::blocking(move || -> std::io::Result<()> {
            std::fs::rename(&swap_path, &log_path)?;
            sync_dir(&dir)
        })
        .await
        .map_err(CleanError::io(
            "renaming the swap file to the segment's name",
        ))?;
        file::write_whole(&index_path, &index)
            .await
            .map_err(CleanError::io("writing the cleaned segment's index"))?;
        file::write_whole(&time_index_path, &time_index)
            .await
            .map_err(CleanError::io("writing the cleaned segment's time index"))?;
        tracing::debug!(log = %self.dir.display(), base, end, "swapped in a compacted segment");
        Ok(true)
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What of one batch survives compaction: the whole batch (as stored), a rebuilt batch of the
/// records that remain (`protocol::records::rebuild`: same offsets, producer fields and codec),
/// an empty batch (the last one of a producer still active, so its sequence numbers stay in
/// the log as Kafka keeps them), or nothing.
fn retain(
    header: BatchHeader,
    bytes: Bytes,
    pass: &PassInputs<'_>,
    stats: &mut CleanStats,
) -> Result<Option<(BatchHeader, Bytes)>, CleanError> {
    if header.is_control() {
        return Ok(Some((header, bytes)));
    }
    let section = records::section(&bytes, &header).map_err(|e| CleanError::Rewrite {
        offset: header.base_offset,
        error: e,
    })?;
    let mut kept: Vec<&[u8]> = Vec::new();
    let (mut total, mut max_timestamp) = (0usize, i64::MIN);
    let (mut removed, mut tombstones_gone, mut due) = (0u64, 0u64, None::<i64>);
    batch::walk_records(&section, &header, |r| {
        total += 1;
        let latest = r.key.is_some_and(|k| pass.latest.get(k) == Some(&r.offset));
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            r.timestamp
        };
        let expired =
            r.tombstone && timestamp.saturating_add(pass.delete_retention_ms) <= pass.now_ms;
        if latest && !expired {
            kept.push(r.raw);
            max_timestamp = max_timestamp.max(r.timestamp);
            if r.tombstone {
                let at = timestamp.saturating_add(pass.delete_retention_ms);
                due = Some(due.map_or(at, |d| d.min(at)));
            }
        } else {
            removed += 1;
            if latest {
                tombstones_gone += 1;
            }
        }
    })
    .map_err(|e| CleanError::Rewrite {
        offset: header.base_offset,
        error: e,
    })?;
    stats.records_removed += removed;
    stats.tombstones_removed += tombstones_gone;
    if let Some(at) = due {
        stats.tombstones_due_ms = Some(stats.tombstones_due_ms.map_or(at, |t| t.min(at)));
    }
    if kept.len() == total {
        return Ok(Some((header, bytes)));
    }
    let last_of_producer = header.producer_id >= 0
        && pass.producers_last.get(&header.producer_id) == Some(&header.last_offset());
    if kept.is_empty() && !last_of_producer {
        return Ok(None);
    }
    let kept = records::Kept {
        records: &kept,
        count: kept.len() as i32,
        max_timestamp,
    };
    let out =
        records::rebuild(&bytes, &header, kept, pass.level(header.compression())).map_err(|e| {
            CleanError::Rewrite {
                offset: header.base_offset,
                error: e,
            }
        })?;
    let new_header = records::validate_stored(&out).map_err(|e| CleanError::Rewrite {
        offset: header.base_offset,
        error: e,
    })?;
    Ok(Some((new_header, out)))
}

//! Storage engine tests: appends, rolls, reads, recovery from torn and corrupt files, retention.

use super::*;
use crate::protocol::batch::sample::{batch as encoded_batch, Compression};

/// Runs a test body on its own executor thread, as each broker shard has.
fn run<F, Fut, T>(body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    crate::runtime::run_local(1 << 20, body).expect("executor")
}

fn small_segments() -> TopicConfig {
    TopicConfig {
        segment_bytes: 4096,
        ..TopicConfig::default()
    }
}

async fn open(path: &Path, config: TopicConfig, cache_bytes: u64) -> Rc<PartitionLog> {
    PartitionLog::open(
        path.to_path_buf(),
        config,
        0,
        ShardStorage::new(cache_bytes),
    )
    .await
    .unwrap()
}

async fn append_batches(log: &Rc<PartitionLog>, count: usize, records: usize) -> Offset {
    let mut last = -1;
    for _ in 0..count {
        let bytes = encoded_batch(records, 100, Compression::None);
        let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
        last = log
            .append(BytesMut::from(&bytes[..]), &headers, 0)
            .unwrap()
            .last_offset;
    }
    log.flush(false).await.unwrap();
    log.wait_durable(last + 1).await.unwrap();
    last
}

async fn read_all(log: &PartitionLog) -> Vec<Offset> {
    let mut offsets = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let out = log.read(next, 1 << 20, None).await.unwrap();
        assert!(!out.chunks.is_empty(), "no data at {next}");
        for chunk in &out.chunks {
            let mut data = chunk.as_ref();
            while !data.is_empty() {
                let header = batch::parse_checked(data).unwrap();
                for o in header.base_offset..=header.last_offset() {
                    if o >= next {
                        offsets.push(o);
                    }
                }
                next = header.last_offset() + 1;
                data = &data[header.size..];
            }
        }
    }
    offsets
}

/// A log of 100 records in 20 batches over several small segments, closed cleanly.
fn write_closed_log(path: &Path) {
    let p = path.to_path_buf();
    run(move || async move {
        let log = open(&p, small_segments(), 1 << 20).await;
        append_batches(&log, 20, 5).await;
        log.close().await.unwrap();
    });
}

/// Puts half a batch after the valid data of a segment file (dropping its zero padding), as a
/// crash mid-write would leave it.
fn tear_tail(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes.truncate(end);
    let partial = encoded_batch(4, 100, Compression::None);
    bytes.extend_from_slice(&partial[..partial.len() / 2]);
    std::fs::write(file, &bytes).unwrap();
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn appends_roll_segments_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let p = path.clone();
    run(move || async move {
        let log = open(&p, small_segments(), 1 << 20).await;
        assert_eq!(append_batches(&log, 20, 5).await, 99);
        assert!(log.segment_count() > 3);
        assert_eq!(read_all(&log).await, (0..100).collect::<Vec<_>>());
        log.close().await.unwrap();
    });
    assert!(
        files(&path, "index").len() >= 3,
        "sealed segments have index files"
    );
    let p = path.clone();
    run(move || async move {
        // A cold cache: everything is read back with O_DIRECT.
        let log = open(&p, small_segments(), 0).await;
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(read_all(&log).await, (0..100).collect::<Vec<_>>());
        // A read inside a batch starts at that batch.
        let out = log.read(42, 1, None).await.unwrap();
        let header = batch::parse_checked(out.chunks[0].as_ref()).unwrap();
        assert_eq!(header.base_offset, 40);
        assert_eq!(append_batches(&log, 1, 5).await, 104);
    });
}

#[test]
fn torn_tail_is_truncated_and_offsets_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let p = path.clone();
    run(move || async move {
        let log = open(&p, TopicConfig::default(), 1 << 20).await;
        append_batches(&log, 3, 4).await;
    });
    tear_tail(&files(&path, "log").pop().unwrap());
    run(move || async move {
        let log = open(&path, TopicConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(read_all(&log).await, (0..12).collect::<Vec<_>>());
        assert_eq!(append_batches(&log, 1, 4).await, 15);
        assert_eq!(read_all(&log).await, (0..16).collect::<Vec<_>>());
    });
}

#[test]
fn after_a_crash_only_the_part_after_the_last_checkpoint_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let p = path.clone();
    let last = run(move || async move {
        let log = open(&p, TopicConfig::default(), 1 << 20).await;
        // About 100 KiB, then a sync that finds the checkpoint due.
        append_batches(&log, 100, 10).await;
        log.age_checkpoint();
        append_batches(&log, 1, 10).await;
        // Durable, but after the checkpoint; the log is then dropped without a close, as a
        // kill -9 leaves it.
        append_batches(&log, 10, 10).await
    });
    let file = files(&path, "log").pop().unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        path.join("00000000000000000000.index").exists(),
        "the checkpoint wrote the active segment's index"
    );
    tear_tail(&file);
    run(move || async move {
        let log = open(&path, TopicConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), last + 1);
        assert_eq!(read_all(&log).await, (0..=last).collect::<Vec<_>>());
        let scanned = log.scanned_at_open();
        assert!(
            scanned > 0 && scanned < size / 4,
            "scanned {scanned} of {size} bytes"
        );
        // Offsets continue, and reads through the rebuilt part of the index work.
        assert_eq!(append_batches(&log, 1, 10).await, last + 10);
        let out = log.read(last - 25, 1, None).await.unwrap();
        let header = batch::parse_checked(out.chunks[0].as_ref()).unwrap();
        assert!(header.base_offset <= last - 25 && last - 25 <= header.last_offset());
    });
}

#[test]
fn a_flipped_bit_in_the_last_segment_truncates_from_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let batch_size = encoded_batch(4, 100, Compression::None).len();
    let p = path.clone();
    run(move || async move {
        let log = open(&p, TopicConfig::default(), 1 << 20).await;
        append_batches(&log, 5, 4).await;
    });
    let file = files(&path, "log").pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[batch_size * 3 + 70] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    run(move || async move {
        let log = open(&path, TopicConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(read_all(&log).await, (0..12).collect::<Vec<_>>());
    });
}

#[test]
fn bad_indexes_are_rebuilt_and_padding_on_sealed_segments_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    write_closed_log(&path);
    let indexes = files(&path, "index");
    std::fs::remove_file(&indexes[0]).unwrap();
    std::fs::write(&indexes[1], b"garbage").unwrap();
    // Block padding on a sealed segment, as a crash before trimming leaves it.
    let logs = files(&path, "log");
    let mut bytes = std::fs::read(&logs[0]).unwrap();
    bytes.resize(bytes.len().next_multiple_of(4096) + 4096, 0);
    std::fs::write(&logs[0], &bytes).unwrap();
    let p = path.clone();
    run(move || async move {
        let log = open(&p, small_segments(), 0).await;
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(read_all(&log).await, (0..100).collect::<Vec<_>>());
    });
    assert!(indexes[0].exists(), "missing index rewritten");
    assert_ne!(
        std::fs::read(&indexes[1]).unwrap(),
        b"garbage",
        "bad index rewritten"
    );
}

#[test]
fn a_gap_between_segments_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    write_closed_log(&path);
    let logs = files(&path, "log");
    std::fs::remove_file(&logs[2]).unwrap();
    run(move || async move {
        let log = open(&path, small_segments(), 0).await;
        let end = log.log_end_offset();
        assert!(end > 0 && end < 100);
        assert_eq!(read_all(&log).await, (0..end).collect::<Vec<_>>());
        assert_eq!(files(&path, "log").len(), 2);
        assert_eq!(append_batches(&log, 1, 5).await, end + 4);
    });
}

#[test]
fn retention_by_bytes_deletes_oldest_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let config = TopicConfig {
            retention_bytes: 8192,
            ..small_segments()
        };
        let log = open(&path, config, 1 << 20).await;
        append_batches(&log, 40, 5).await;
        let before = log.segment_count();
        let deleted = log.enforce_retention(0).await.unwrap();
        assert!(deleted > 0);
        assert_eq!(log.segment_count(), before - deleted);
        assert_eq!(files(&path, "log").len(), log.segment_count());
        let start = log.log_start_offset();
        assert!(start > 0);
        assert_eq!(read_all(&log).await, (start..200).collect::<Vec<_>>());
        assert!(matches!(
            log.read(0, 100, None).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
    });
}

#[test]
fn retention_by_time_uses_the_newest_timestamp_in_each_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let config = TopicConfig {
            retention_ms: 1000,
            ..small_segments()
        };
        let log = open(&path, config, 1 << 20).await;
        append_batches(&log, 20, 5).await;
        // The batches carry 2023 timestamps: a "now" just after them keeps everything.
        assert_eq!(log.enforce_retention(1_700_000_000_005).await.unwrap(), 0);
        let deleted = log.enforce_retention(1_700_000_010_000).await.unwrap();
        assert_eq!(
            deleted,
            log.segment_count() + deleted - 1,
            "all but the active one"
        );
    });
}

#[test]
fn a_new_log_reads_from_disk_once_the_cache_is_gone() {
    // The first file this executor opens is a new, empty segment: the device probe must not be
    // fooled by it into sending reads to a ring the disk cannot serve.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = open(&path, TopicConfig::default(), 0).await;
        // About 2 MiB, so a read can be larger than the device splits requests at.
        let mut last = 0;
        for _ in 0..4 {
            last = append_batches(&log, 100, 50).await;
        }
        assert_eq!(last, 19_999);
        // Appends evict what was written before them: the cache is empty, reads hit the disk.
        let out = log.read(0, 4 << 20, None).await.unwrap();
        assert!(matches!(out.chunks[0], Chunk::Disk(_)));
        assert!(out.bytes > 1 << 20, "one read of {} bytes", out.bytes);
        assert_eq!(read_all(&log).await, (0..20_000).collect::<Vec<_>>());
    });
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        // segment.ms of 0: every append after the first finds the active segment too old.
        let config = TopicConfig {
            segment_ms: 0,
            ..TopicConfig::default()
        };
        let log = open(&path, config, 1 << 20).await;
        append_batches(&log, 4, 2).await;
        assert_eq!(log.segment_count(), 4);
        // The periodic check rolls an idle segment too.
        log.roll_if_old();
        assert_eq!(log.segment_count(), 5);
        log.flush(false).await.unwrap();
        assert_eq!(
            files(&path, "log").len(),
            4,
            "an empty segment has no file yet"
        );
        assert_eq!(read_all(&log).await, (0..8).collect::<Vec<_>>());
    });
}

#[test]
fn producer_state_survives_a_clean_reopen_through_its_snapshot() {
    use crate::protocol::batch::sample::idempotent_batch;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let p = path.clone();
    let before = run(move || async move {
        let log = open(&p, small_segments(), 1 << 20).await;
        for i in 0..60 {
            let bytes = idempotent_batch(5, (42, 3, i * 5));
            let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
            let info = log.append(BytesMut::from(&bytes[..]), &headers, 0).unwrap();
            assert!(!info.duplicate);
        }
        // One more batch into a segment of its own: the active segment then holds one of the
        // five remembered batches, and only the snapshot has the other four.
        log.set_config(TopicConfig {
            segment_bytes: 1,
            ..small_segments()
        });
        let bytes = idempotent_batch(5, (42, 3, 300));
        let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
        log.append(BytesMut::from(&bytes[..]), &headers, 0).unwrap();
        log.close().await.unwrap();
        assert!(log.segment_count() > 2);
        log.producer_state(42).unwrap()
    });
    assert_eq!(before.0, 3);
    assert_eq!(before.1.len(), 5);
    // Without the snapshot only the active segment's batch is known.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&path).unwrap() {
        let entry = entry.unwrap().path();
        if entry.file_name().unwrap() != "producer.snapshot" {
            std::fs::copy(&entry, copy.join(entry.file_name().unwrap())).unwrap();
        }
    }
    let without = run(move || async move {
        let log = open(&copy, small_segments(), 1 << 20).await;
        log.producer_state(42).unwrap().1.len()
    });
    assert_eq!(without, 1);
    run(move || async move {
        let log = open(&path, small_segments(), 1 << 20).await;
        assert_eq!(log.producer_state(42).unwrap(), before);
        // The oldest remembered batch is a duplicate; the one before it is out of order.
        let oldest = before.1[0];
        let retry = idempotent_batch(5, (42, 3, oldest.first_sequence));
        let headers = batch::validate_record_set(&retry, usize::MAX).unwrap();
        let info = log.append(BytesMut::from(&retry[..]), &headers, 0).unwrap();
        assert!(info.duplicate);
        assert_eq!(info.base_offset, oldest.base_offset);
        let next = idempotent_batch(1, (42, 3, 305));
        let headers = batch::validate_record_set(&next, usize::MAX).unwrap();
        assert!(
            !log.append(BytesMut::from(&next[..]), &headers, 0)
                .unwrap()
                .duplicate
        );
    });
}

#[test]
fn a_clean_close_is_marked_and_the_marker_is_gone_once_the_log_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let p = path.clone();
    run(move || async move {
        let log = open(&p, TopicConfig::default(), 1 << 20).await;
        append_batches(&log, 50, 5).await;
        log.close().await.unwrap();
    });
    assert!(path.join(CLEAN_SHUTDOWN).exists());
    let p = path.clone();
    run(move || async move {
        // Trusted indexes: the log is whole and goes on where it was.
        let log = open(&p, TopicConfig::default(), 0).await;
        assert!(
            !p.join(CLEAN_SHUTDOWN).exists(),
            "a crash from here must not find it"
        );
        assert_eq!(log.log_end_offset(), 250);
        assert_eq!(read_all(&log).await, (0..250).collect::<Vec<_>>());
        assert_eq!(append_batches(&log, 10, 5).await, 299);
        // No close: as after a kill.
    });
    run(move || async move {
        let log = open(&path, TopicConfig::default(), 0).await;
        assert_eq!(log.log_end_offset(), 300);
        assert_eq!(read_all(&log).await, (0..300).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------------------------
// Compaction

type KeyedRecord = (String, Option<String>);

fn keyed_batch(records: &[KeyedRecord], timestamp: i64, compression: Compression) -> Vec<u8> {
    let records = records.iter().map(|(key, value)| {
        (
            Some(Bytes::from(key.clone())),
            value.clone().map(Bytes::from),
            timestamp,
        )
    });
    batch::encode_records(records, (-1, -1, -1), compression)
        .unwrap()
        .to_vec()
}

fn compacted(delete_retention_ms: i64) -> TopicConfig {
    TopicConfig {
        segment_bytes: 4096,
        cleanup_policy: crate::config::CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.01,
        delete_retention_ms,
        ..TopicConfig::default()
    }
}

/// 120 batches of 5 updates over 12 keys; key-3 is deleted at the end and key-7 is deleted
/// then written again. Returns the latest value per key (`None`: deleted).
async fn write_updates(
    log: &Rc<PartitionLog>,
    compression: Compression,
) -> std::collections::BTreeMap<String, Option<String>> {
    let mut latest = std::collections::BTreeMap::new();
    let mut n = 0;
    for b in 0..120 {
        let mut records: Vec<KeyedRecord> = (0..5)
            .map(|_| {
                n += 1;
                (format!("key-{}", n % 12), Some(format!("value-{n}")))
            })
            .collect();
        if b == 60 {
            records.push(("key-7".into(), None));
        }
        if b == 119 {
            records.push(("key-3".into(), None));
        }
        for (k, v) in &records {
            latest.insert(k.clone(), v.clone());
        }
        let bytes = keyed_batch(&records, 1_000 + b, compression);
        let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
        log.append(BytesMut::from(&bytes[..]), &headers, 0).unwrap();
    }
    seal_active(log).await;
    latest
}

/// Rolls the active segment so that everything before it is cleanable.
async fn seal_active(log: &Rc<PartitionLog>) {
    let mut config = log.config();
    config.segment_ms = 0;
    log.set_config(config.clone());
    log.roll_if_old();
    config.segment_ms = i64::MAX;
    log.set_config(config);
    log.flush(true).await.unwrap();
}

/// Every record from the start: (offset, key, value).
async fn read_records(log: &PartitionLog) -> Vec<(Offset, String, Option<String>)> {
    read_full_records(log)
        .await
        .into_iter()
        .map(|(offset, key, value, _)| (offset, key, value))
        .collect()
}

fn check_compacted(
    records: &[(Offset, String, Option<String>)],
    latest: &std::collections::BTreeMap<String, Option<String>>,
    tombstones_gone: bool,
) {
    assert!(
        records.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets ascend"
    );
    let mut seen = std::collections::BTreeMap::new();
    for (_, key, value) in records {
        assert!(
            seen.insert(key.clone(), value.clone()).is_none(),
            "{key} twice"
        );
    }
    for (key, value) in latest {
        match (value, tombstones_gone) {
            (None, true) => assert!(!seen.contains_key(key), "{key} deleted"),
            _ => assert_eq!(seen.get(key), Some(value), "{key}"),
        }
    }
}

#[test]
fn compaction_keeps_the_latest_value_per_key_and_drops_expired_tombstones() {
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        run(move || async move {
            let log = open(&path, compacted(1_000), 1 << 20).await;
            let latest = write_updates(&log, compression).await;
            let end = log.log_end_offset();
            let before = read_records(&log).await.len();
            // Tombstones written at t≈1120 are kept at t=1500 (retention 1 s)...
            let stats = log.clean(1_500).await.unwrap().expect("a pass");
            assert!(stats.records_removed > 0 && stats.bytes_out < stats.bytes_in);
            assert_eq!(stats.tombstones_removed, 0);
            let records = read_records(&log).await;
            assert!(records.len() < before);
            check_compacted(&records, &latest, false);
            // ...and removed by a later pass once they are older than that.
            log.state.borrow_mut().cleaned_through = 0;
            let stats = log.clean(10_000).await.unwrap().expect("a second pass");
            assert_eq!(
                stats.tombstones_removed, 1,
                "key-7's tombstone was superseded"
            );
            check_compacted(&read_records(&log).await, &latest, true);
            assert_eq!(log.log_end_offset(), end, "offsets never change");
            // New appends continue after the old end.
            let bytes = keyed_batch(&[("key-1".into(), Some("new".into()))], 20_000, compression);
            let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
            let info = log.append(BytesMut::from(&bytes[..]), &headers, 0).unwrap();
            assert_eq!(info.base_offset, end);
            log.close().await.unwrap();
            drop(log);
            // After a restart the compacted log reads the same, gaps and all.
            let log = open(&path, compacted(1_000), 1 << 20).await;
            assert_eq!(log.log_end_offset(), end + 1);
            let mut expected = latest.clone();
            expected.insert("key-1".into(), Some("new".into()));
            let records = read_records(&log).await;
            let last = records.last().unwrap();
            assert_eq!((last.0, last.1.as_str()), (end, "key-1"));
            assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
        });
    }
}

#[test]
fn a_crash_at_any_step_of_the_swap_leaves_a_readable_log_with_every_latest_value() {
    for stop in [
        StopAt::CleanedWritten,
        StopAt::SwapRenamed,
        StopAt::OldRemoved,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let p = path.clone();
        let latest = run(move || async move {
            let log = open(&p, compacted(i64::MAX / 2), 1 << 20).await;
            let latest = write_updates(&log, Compression::None).await;
            assert!(log.clean_until(1_500, stop).await.unwrap().is_none());
            // The process dies here: no close, no index writes.
            latest
        });
        run(move || async move {
            let log = open(&path, compacted(i64::MAX / 2), 1 << 20).await;
            let leftovers = std::fs::read_dir(&path)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                .count();
            assert_eq!(leftovers, 0, "{stop:?}");
            let records = read_records(&log).await;
            assert!(records.windows(2).all(|w| w[0].0 < w[1].0), "{stop:?}");
            let mut last_seen = std::collections::BTreeMap::new();
            for (_, key, value) in &records {
                last_seen.insert(key.clone(), value.clone());
            }
            assert_eq!(last_seen, latest, "{stop:?}: the latest value of every key");
            // And the next pass completes the job (the reopened log's last segment is active
            // again: seal it first).
            seal_active(&log).await;
            log.clean(1_500).await.unwrap();
            check_compacted(&read_records(&log).await, &latest, false);
        });
    }
}

#[test]
fn compaction_waits_for_the_lag_and_the_dirty_ratio_and_reads_at_the_io_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        // Records are timestamped 1000..1120: a 10 s lag keeps them out at t=5000.
        let config = TopicConfig {
            min_compaction_lag_ms: 10_000,
            ..compacted(1_000)
        };
        let log = open(&path, config, 1 << 20).await;
        write_updates(&log, Compression::None).await;
        assert_eq!(log.clean(5_000).await.unwrap(), None, "too young");
        let stats = log.clean(20_000).await.unwrap().expect("old enough");
        assert!(stats.records_removed > 0);
        // Nothing new since: under any ratio above zero there is nothing dirty to clean.
        log.state.borrow_mut().tombstones_due_ms = None;
        assert_eq!(log.clean(30_000).await.unwrap(), None, "nothing dirty");
        // A ratio of 1 needs every cleanable byte to be new.
        let mut config = log.config();
        config.min_cleanable_dirty_ratio = 1.0;
        log.set_config(config);
        write_updates(&log, Compression::None).await;
        assert_eq!(
            log.clean(40_000).await.unwrap(),
            None,
            "clean bytes lower the ratio"
        );
        // The read budget paces a pass: 100 KiB/s over the log's bytes takes measurable time.
        let mut config = log.config();
        config.min_cleanable_dirty_ratio = 0.01;
        log.set_config(config);
        let bytes: u64 = log.state.borrow().segments.iter().map(|s| s.size).sum();
        log.storage.cleaner_io_bytes_per_second.set(100.0 * 1024.0);
        let started = std::time::Instant::now();
        log.clean(50_000).await.unwrap().expect("dirty again");
        let floor = std::time::Duration::from_secs_f64(bytes as f64 / (100.0 * 1024.0) * 0.9);
        assert!(
            started.elapsed() >= floor,
            "{:?} < {floor:?}",
            started.elapsed()
        );
    });
}

/// Every record from the start, walked in place so that repeated header names show:
/// (offset, key, value, header names and values).
type FullRecord = (
    Offset,
    String,
    Option<String>,
    Vec<(String, Option<String>)>,
);

async fn read_full_records(log: &PartitionLog) -> Vec<FullRecord> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let read = log.read(next, 1 << 20, None).await.unwrap();
        if read.chunks.is_empty() {
            break;
        }
        for chunk in &read.chunks {
            let mut data = Bytes::copy_from_slice(chunk.as_ref());
            while !data.is_empty() {
                let header = crate::protocol::records::validate_stored(&data).unwrap();
                let one = data.split_to(header.size);
                let section = crate::protocol::records::section(&one, &header).unwrap();
                batch::walk_records(&section, &header, |r| {
                    if r.offset >= next {
                        let headers = r.headers().unwrap();
                        out.push((
                            r.offset,
                            text(r.key.unwrap()),
                            r.value.map(text),
                            headers
                                .into_iter()
                                .map(|(n, v)| (text(n), v.map(text)))
                                .collect(),
                        ));
                    }
                })
                .unwrap();
                next = header.last_offset() + 1;
            }
        }
    }
    out
}

/// Producer state from every batch header of the log, oldest first.
async fn producers_from_batches(log: &PartitionLog) -> crate::storage::producers::ProducerStates {
    let mut states = crate::storage::producers::ProducerStates::default();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let read = log.read(next, 1 << 20, None).await.unwrap();
        if read.chunks.is_empty() {
            break;
        }
        for chunk in &read.chunks {
            let mut data = chunk.as_ref();
            while !data.is_empty() {
                let header = crate::protocol::records::validate_stored(data).unwrap();
                states.record(&header);
                next = header.last_offset() + 1;
                data = &data[header.size..];
            }
        }
    }
    states
}

/// One idempotent batch as librdkafka sends them: many records, keys repeated, and the same
/// header name more than once on a record.
fn producer_batch(
    records: &[(String, Option<String>)],
    producer: (i64, i16, i32),
    timestamp: i64,
    compression: Compression,
) -> Vec<u8> {
    let mut builder = crate::protocol::builder::BatchBuilder::with_capacity(1 << 16);
    for (i, (key, value)) in records.iter().enumerate() {
        let headers = [
            ("trace".to_string(), Some(Bytes::from(format!("a{i}")))),
            ("trace".to_string(), None),
            ("trace".to_string(), Some(Bytes::from_static(b"c"))),
        ];
        builder.push(
            timestamp + i as i64,
            Some(key.as_bytes()),
            value.as_deref().map(str::as_bytes),
            &headers,
        );
    }
    builder.finish(producer, compression).unwrap().to_vec()
}

#[test]
fn compaction_of_partly_kept_batches_keeps_offsets_producer_state_and_repeated_headers() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        run(move || async move {
            let config = TopicConfig {
                segment_bytes: 64 * 1024,
                ..compacted(1_000)
            };
            let log = open(&path, config.clone(), 1 << 20).await;
            let append = |bytes: Vec<u8>| {
                let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
                log.append(BytesMut::from(&bytes[..]), &headers, 0).unwrap()
            };
            // Producer 10 writes one batch whose keys producer 9 overwrites later: compaction
            // empties it, but it is producer 10's last batch, so it stays, empty.
            let early: Vec<_> = (0..5)
                .map(|k| (format!("key-{k}"), Some("early".to_string())))
                .collect();
            append(producer_batch(&early, (10, 3, 0), 1_000, compression));
            // Producer 9: 100 keys written 50 times, in batches of 90 records that do not line
            // up with the rounds; within a round the keys come in a different order each time.
            let mut all = Vec::new();
            for round in 0..50 {
                for i in 0..100 {
                    let key = (i * 37 + round * 11) % 100;
                    all.push((format!("key-{key}"), Some(format!("v{round}-{key}"))));
                }
            }
            all.extend((0..10).map(|k| (format!("key-{k}"), None)));
            let mut sequence = 0;
            let mut last_batch = Vec::new();
            for chunk in all.chunks(90) {
                last_batch = producer_batch(chunk, (9, 0, sequence), 1_100, compression);
                append(last_batch.clone());
                sequence += chunk.len() as i32;
            }
            seal_active(&log).await;
            let producers_before = (log.producer_state(9), log.producer_state(10));
            let mut latest = std::collections::BTreeMap::new();
            for (key, value) in &all {
                latest.insert(key.clone(), value.clone());
            }
            let before = read_full_records(&log).await;
            assert_eq!(before.len(), 5 + 5_010);
            let stats = log.clean(1_500).await.unwrap().expect("a pass");
            assert_eq!(stats.records_removed, 5 + 5_010 - 100, "{compression:?}");
            let after = read_full_records(&log).await;
            assert_eq!(after.len(), 100, "{compression:?}: one record per key");
            assert!(after.windows(2).all(|w| w[0].0 < w[1].0), "offsets ascend");
            for (offset, key, value, headers) in &after {
                assert_eq!(Some(value), latest.get(key), "{key}");
                // Each kept record is the very one written at that offset.
                let original = before.iter().find(|r| r.0 == *offset).unwrap();
                assert_eq!(
                    (key, value, headers),
                    (&original.1, &original.2, &original.3)
                );
                assert_eq!(headers.len(), 3, "repeated header names survive");
            }
            let status = log.cleaner_status();
            assert_eq!((status.passes, status.passes_failed), (1, 0));
            assert_eq!(status.last_stats, Some(stats));
            // Producer state rebuilt from the batches of the cleaned log (as a replica or a
            // lost snapshot would rebuild it) knows each producer's newest batch, emptied or not.
            let rebuilt = producers_from_batches(&log).await;
            for (id, (epoch, batches)) in [
                (9, producers_before.0.clone().unwrap()),
                (10, producers_before.1.clone().unwrap()),
            ] {
                let (new_epoch, new_batches) = rebuilt.entry(id).expect("producer kept");
                assert_eq!(
                    (new_epoch, new_batches.last()),
                    (epoch, batches.last()),
                    "{compression:?}"
                );
            }
            // After a restart the state is what it was, so a retry of the last batch is a
            // duplicate, not a gap.
            log.close().await.unwrap();
            drop(log);
            let log = open(&path, config, 1 << 20).await;
            assert_eq!(
                (log.producer_state(9), log.producer_state(10)),
                producers_before,
                "{compression:?}"
            );
            let headers = batch::validate_record_set(&last_batch, usize::MAX).unwrap();
            let retry = log
                .append(BytesMut::from(&last_batch[..]), &headers, 0)
                .unwrap();
            assert!(retry.duplicate, "{compression:?}");
            assert_eq!(read_full_records(&log).await, after);
        });
    }
}

/// Rewrites the batch at `position` of a segment file with `mutate` applied to its bytes, and
/// (if `fix_crc`) a CRC that matches again.
fn damage_batch(file: &Path, position: usize, fix_crc: bool, mutate: impl FnOnce(&mut [u8])) {
    let mut data = std::fs::read(file).unwrap();
    let header = batch::parse_header(&data[position..]).unwrap();
    let one = &mut data[position..position + header.size];
    mutate(one);
    if fix_crc {
        let crc = crc32c::crc32c(&one[21..]);
        one[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    std::fs::write(file, data).unwrap();
}

#[test]
fn a_failed_pass_says_what_failed_and_leaves_no_temporary_file() {
    for (fix_crc, expected) in [
        (false, "log is corrupt"),
        (true, "cannot rewrite the batch"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let p = path.clone();
        run(move || async move {
            let log = open(&p, compacted(1_000), 1 << 20).await;
            write_updates(&log, Compression::None).await;
            log.close().await.unwrap();
        });
        // The second batch of the first segment: a key length that runs past its record, under
        // a CRC that is right again (`fix_crc`) or one that no longer holds.
        let first = files(&path, "log").into_iter().min().unwrap();
        let size = batch::parse_header(&std::fs::read(&first).unwrap())
            .unwrap()
            .size;
        damage_batch(&first, size, fix_crc, |b| b[batch::HEADER_BYTES + 3] = 0x7e);
        run(move || async move {
            let log = open(&path, compacted(1_000), 1 << 20).await;
            seal_active(&log).await;
            let error = log.clean(1_500).await.unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            let litter: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                .collect();
            assert!(litter.is_empty(), "{litter:?}");
            let status = log.cleaner_status();
            assert_eq!((status.passes, status.passes_failed), (1, 1));
            assert!(status.last_error.unwrap().contains(expected));
        });
    }
}

#[test]
fn an_old_dirty_record_forces_a_pass_whatever_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = open(&path, compacted(1_000), 1 << 20).await;
        write_updates(&log, Compression::None).await;
        log.clean(20_000).await.unwrap().expect("first pass");
        log.state.borrow_mut().tombstones_due_ms = None;
        // Half the log is new now, but a ratio of 1 asks for all of it.
        let mut config = log.config();
        config.min_cleanable_dirty_ratio = 1.0;
        log.set_config(config);
        write_updates(&log, Compression::None).await;
        assert_eq!(log.clean(40_000).await.unwrap(), None, "ratio not reached");
        // Records are timestamped 1000..1120: a 60 s lag is exceeded at t=70000 only.
        let mut config = log.config();
        config.max_compaction_lag_ms = 60_000;
        log.set_config(config);
        assert_eq!(log.clean(40_000).await.unwrap(), None, "not overdue yet");
        let stats = log.clean(70_000).await.unwrap().expect("overdue");
        assert!(stats.records_removed > 0);
    });
}

#[test]
fn a_full_index_rolls_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        // Three 8-byte offset entries, one per batch.
        let config = TopicConfig {
            segment_index_bytes: 24,
            index_interval_bytes: 0,
            ..TopicConfig::default()
        };
        let log = open(&path, config, 1 << 20).await;
        append_batches(&log, 10, 2).await;
        assert_eq!(log.segment_count(), 4, "3 + 3 + 3 + 1 batches");
        assert_eq!(read_all(&log).await, (0..20).collect::<Vec<_>>());
    });
}

#[test]
fn segment_jitter_moves_each_roll_earlier_by_less_than_the_bound() {
    let config = TopicConfig {
        segment_ms: 10_000,
        segment_jitter_ms: 1_000_000,
        ..TopicConfig::default()
    };
    let jitters: Vec<i64> = (0..50)
        .map(|_| Segment::active(Path::new("/x"), 0, &config).roll_jitter_ms)
        .collect();
    assert!(jitters.iter().all(|j| (0..10_000).contains(j)));
    assert!(jitters.iter().any(|j| *j != jitters[0]), "drawn at random");
    let none = Segment::active(Path::new("/x"), 0, &TopicConfig::default());
    assert_eq!(none.roll_jitter_ms, 0);
}

#[test]
fn retention_keeps_deleted_segments_for_the_file_delete_delay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let config = TopicConfig {
            retention_bytes: 8192,
            file_delete_delay_ms: 200,
            ..small_segments()
        };
        let log = open(&path, config, 1 << 20).await;
        append_batches(&log, 40, 5).await;
        let deleted = log.enforce_retention(0).await.unwrap();
        assert!(deleted > 0);
        assert_eq!(files(&path, "log").len(), log.segment_count());
        assert_eq!(
            files(&path, "deleted").len(),
            3 * deleted,
            "log and both indexes"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !files(&path, "deleted").is_empty() {
            assert!(std::time::Instant::now() < deadline, "still not deleted");
            crate::runtime::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn preallocate_reserves_the_segment_size_without_changing_the_file_length() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let config = TopicConfig {
            preallocate: true,
            segment_bytes: 4 << 20,
            ..TopicConfig::default()
        };
        let log = open(&path, config, 1 << 20).await;
        append_batches(&log, 1, 5).await;
        let segment = &files(&path, "log")[0];
        let metadata = std::fs::metadata(segment).unwrap();
        assert!(metadata.len() < 1 << 20, "length is what was written");
        assert!(
            metadata.blocks() * 512 >= 4 << 20,
            "{} bytes allocated",
            metadata.blocks() * 512
        );
    });
}

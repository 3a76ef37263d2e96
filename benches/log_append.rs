//! Log append on the storage engine: 64 batches of 16 KiB appended, written with O_DIRECT and
//! made durable with one fdatasync (group commit), against the same bytes written through the
//! page cache with `write` + `fdatasync` from std, in the same run and on the same disk.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardlog::config::TopicConfig;
use shardlog::protocol::batch;
use shardlog::protocol::batch::sample::{self, Compression};
use shardlog::storage::{PartitionLog, ShardStorage};

const BATCHES_PER_COMMIT: usize = 64;

fn append(c: &mut Criterion) {
    let bytes = sample::batch(16, 1000, Compression::None);
    let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
    let mut group = c.benchmark_group("log_append/64x16KiB+sync");
    group.throughput(Throughput::Bytes((bytes.len() * BATCHES_PER_COMMIT) as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    group.bench_function("shardlog O_DIRECT + group commit", |b| {
        b.iter_custom(|iters| {
            let path = dir.path().join("direct");
            let _ = std::fs::remove_dir_all(&path);
            let bytes = bytes.clone();
            let headers = headers.clone();
            shardlog::runtime::run_local(1 << 20, move || async move {
                let storage = ShardStorage::new(64 << 20);
                let log = PartitionLog::open(path, TopicConfig::default(), 0, storage)
                    .await
                    .unwrap();
                let started = Instant::now();
                for _ in 0..iters {
                    let mut last = 0;
                    for _ in 0..BATCHES_PER_COMMIT {
                        let info = log.append(BytesMut::from(&bytes[..]), &headers, 0).unwrap();
                        last = info.last_offset;
                    }
                    log.flush(false).await.unwrap();
                    log.wait_durable(last + 1).await.unwrap();
                }
                started.elapsed()
            })
            .unwrap()
        })
    });
    group.bench_function("baseline: std write + fdatasync", |b| {
        b.iter_custom(|iters| {
            let path = dir.path().join("buffered.log");
            let mut file = std::fs::File::create(&path).unwrap();
            let started = Instant::now();
            for _ in 0..iters {
                for _ in 0..BATCHES_PER_COMMIT {
                    file.write_all(&bytes).unwrap();
                }
                file.sync_data().unwrap();
            }
            started.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);

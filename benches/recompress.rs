//! What a topic's `compression.type` costs on the produce path: a batch validated and stored
//! as produced (`compression.type=producer`, the baseline) against the same batch validated
//! and recompressed by the broker into zstd or lz4, and a gzip batch recompressed into zstd,
//! in the same run. Throughput is over the produced batch's bytes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardlog::protocol::batch::{self, sample};
use shardlog::protocol::recompress::{self, Target};

const ZSTD: Target = Target { codec: 4, level: 3 };
const LZ4: Target = Target { codec: 3, level: 9 };

fn recompression(c: &mut Criterion) {
    for (records, size, produced) in [
        (128usize, 1024usize, sample::Compression::None),
        (1024, 100, sample::Compression::None),
        (128, 1024, sample::Compression::Gzip),
    ] {
        let bytes = sample::batch(records, size, produced);
        let mut group = c.benchmark_group(format!("store/{records}x{size}B-{produced:?}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("baseline: producer (passthrough)", |b| {
            b.iter(|| {
                let headers = batch::validate_record_set(std::hint::black_box(&bytes), 1 << 20)
                    .expect("valid");
                let passthrough = Target {
                    codec: headers[0].compression(),
                    level: 0,
                };
                assert!(!recompress::needed(&headers, passthrough));
                headers
            })
        });
        for (name, target) in [("zstd", ZSTD), ("lz4", LZ4)] {
            group.bench_function(format!("recompress to {name}"), |b| {
                b.iter(|| {
                    let headers = batch::validate_record_set(std::hint::black_box(&bytes), 1 << 20)
                        .expect("valid");
                    recompress::recompress(&bytes, &headers, target, usize::MAX)
                        .expect("recompressed")
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(2))
        .warm_up_time(std::time::Duration::from_millis(500));
    targets = recompression
}
criterion_main!(benches);

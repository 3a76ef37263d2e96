//! Produce-path batch validation: the broker's header parse + CRC-32C check, against a full
//! decode of the same batch with the kafka-protocol crate (what a broker that re-encodes would
//! pay), in the same run.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::RecordBatchDecoder;
use shardlog::protocol::batch::sample::{self, Compression};

fn validation(c: &mut Criterion) {
    for (records, size) in [(16usize, 1024usize), (128, 100)] {
        let bytes = sample::batch(records, size, Compression::None);
        let mut group = c.benchmark_group(format!("validate/{records}x{size}B"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("shardlog header+crc32c", |b| {
            b.iter(|| {
                shardlog::protocol::batch::validate_record_set(
                    std::hint::black_box(&bytes),
                    1 << 20,
                )
                .expect("valid")
            })
        });
        let shared = Bytes::from(bytes.clone());
        group.bench_function("baseline: full decode (kafka-protocol)", |b| {
            b.iter(|| {
                let mut buf = shared.clone();
                RecordBatchDecoder::decode(std::hint::black_box(&mut buf)).expect("valid")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, validation);
criterion_main!(benches);

//! Produce-path batch validation: the broker's header parse + CRC-32C check, against a full
//! decode of the same batch with the kafka-protocol crate (what a broker that re-encodes would
//! pay), in the same run. And the producer's side: records appended to a `BatchBuilder` as
//! they are sent, against gathering them and encoding the batch with the kafka-protocol
//! encoder (what the client did before).

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

fn building(c: &mut Criterion) {
    use shardlog::protocol::builder::BatchBuilder;
    for (records, size) in [(128usize, 1024usize), (1024, 100)] {
        let value = Bytes::from(vec![b'v'; size]);
        let key = Bytes::from_static(b"key-00000001");
        let mut group = c.benchmark_group(format!("build/{records}x{size}B"));
        group.throughput(Throughput::Elements(records as u64));
        group.bench_function("shardlog BatchBuilder", |b| {
            b.iter(|| {
                let mut builder = BatchBuilder::with_capacity(128 << 10);
                for i in 0..records {
                    builder.push(1_700_000_000_000 + i as i64, Some(&key), Some(&value), &[]);
                }
                builder
                    .finish((1, 0, 0), Compression::None)
                    .expect("encode")
            })
        });
        group.bench_function("baseline: kafka-protocol encoder", |b| {
            b.iter(|| {
                shardlog::protocol::batch::encode_records(
                    (0..records).map(|i| {
                        (
                            Some(key.clone()),
                            Some(value.clone()),
                            1_700_000_000_000 + i as i64,
                        )
                    }),
                    (1, 0, 0),
                    Compression::None,
                )
                .expect("encode")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, validation, building);
criterion_main!(benches);

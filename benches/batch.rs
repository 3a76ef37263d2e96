//! Produce-path batch validation: the broker's header parse + CRC-32C check, against a full
//! decode of the same batch with the kafka-protocol crate (what a broker that re-encodes would
//! pay), in the same run.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn batch(records: usize, value_size: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; value_size])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.to_vec()
}

fn validation(c: &mut Criterion) {
    for (records, size) in [(16usize, 1024usize), (128, 100)] {
        let bytes = batch(records, size);
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

//! The cleaner's work on one batch that keeps part of its records (500 records over 100 keys,
//! the latest 100 kept): the batch's records walked in place and the kept ones copied as they
//! were written into a batch with the original's offsets (`protocol::records::rebuild`),
//! against decoding the batch with the kafka-protocol crate, filtering and encoding it again
//! (what the cleaner did before, which also loses repeated header names), in the same run.
//! Uncompressed and lz4, as librdkafka sends them.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};
use shardlog::protocol::batch;
use shardlog::protocol::builder::BatchBuilder;
use shardlog::protocol::records;

const RECORDS: usize = 500;
const KEYS: usize = 100;

fn sample(compression: Compression) -> Bytes {
    let mut builder = BatchBuilder::with_capacity(1 << 16);
    let headers = [("trace".to_string(), Some(Bytes::from_static(b"0123456789")))];
    for i in 0..RECORDS {
        let key = format!("key-{}", (i * 37) % KEYS);
        let value = vec![b'v'; 100];
        builder.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            &headers,
        );
    }
    builder.finish((7, 0, 0), compression).expect("batch")
}

/// Keeps the last `KEYS` records: those are the latest of their keys.
fn keep(offset: i64) -> bool {
    offset >= (RECORDS - KEYS) as i64
}

fn rewrite(c: &mut Criterion) {
    for (name, compression) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let bytes = sample(compression);
        let header = records::validate_stored(&bytes).expect("valid");
        let mut group = c.benchmark_group(format!("clean-batch/{name}/{RECORDS}-keep-{KEYS}"));
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.bench_function("shardlog: records in place, rebuilt", |b| {
            b.iter(|| {
                let section = records::section(&bytes, &header).expect("section");
                let mut kept = Vec::with_capacity(KEYS);
                let mut max_timestamp = i64::MIN;
                batch::walk_records(&section, &header, |r| {
                    if keep(r.offset) {
                        kept.push(r.raw);
                        max_timestamp = max_timestamp.max(r.timestamp);
                    }
                })
                .expect("walk");
                let kept = records::Kept {
                    records: &kept,
                    count: KEYS as i32,
                    max_timestamp,
                };
                records::rebuild(&bytes, &header, kept, 9).expect("rebuild")
            })
        });
        group.bench_function("baseline: decode, filter, encode (kafka-protocol)", |b| {
            b.iter(|| {
                let set = RecordBatchDecoder::decode(&mut bytes.clone()).expect("decode");
                let kept: Vec<_> = set.records.into_iter().filter(|r| keep(r.offset)).collect();
                let mut out = bytes::BytesMut::new();
                let options = RecordEncodeOptions {
                    version: 2,
                    compression,
                };
                RecordBatchEncoder::encode(&mut out, &kept, &options).expect("encode");
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, rewrite);
criterion_main!(benches);

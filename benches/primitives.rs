//! The broker's hot primitives, each beside a naive baseline in the same run:
//! - request decode: framing, header and the hand-written Produce decoder (record sets stay
//!   views of the frame) against the `kafka-protocol` crate's full decode of the same frame;
//! - index lookup: the sparse offset index's binary search against a linear scan;
//! - cross-shard hop: a request and its reply between two shards over the mesh against the
//!   same round trip between two threads over std's channels.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use shardlog::protocol::batch::sample::{self, Compression};
use shardlog::protocol::{frame, produce};
use shardlog::storage::index::OffsetIndex;

const PRODUCE_VERSION: i16 = 9;

/// A Produce v9 frame (size prefix included) of 8 partitions of 16 records of 1000 bytes.
fn produce_frame() -> BytesMut {
    let records = Bytes::from(sample::batch(16, 1000, Compression::None));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("bench"));
    topic.partition_data = (0..8)
        .map(|p| {
            let mut partition = PartitionProduceData::default();
            partition.index = p;
            partition.records = Some(records.clone());
            partition
        })
        .collect();
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data.push(topic);
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Produce as i16;
    header.request_api_version = PRODUCE_VERSION;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("bench"));
    let mut body = BytesMut::new();
    header
        .encode(
            &mut body,
            ApiKey::Produce.request_header_version(PRODUCE_VERSION),
        )
        .unwrap();
    request.encode(&mut body, PRODUCE_VERSION).unwrap();
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

fn request_decode(c: &mut Criterion) {
    let wire = produce_frame();
    let mut group = c.benchmark_group("decode/produce 8x16KiB");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    // The connection's read buffer is mutable (offsets are patched in place), so each
    // iteration gets a fresh copy, made outside the timing.
    group.bench_function("shardlog frame + header + produce::decode", |b| {
        b.iter_batched(
            || wire.clone(),
            |mut buffer| {
                let mut frame = frame::split_frame(&mut buffer, usize::MAX)
                    .unwrap()
                    .unwrap();
                let header = frame::parse_request_header(&frame).unwrap();
                let body = frame.split_off(header.body_offset);
                produce::decode(body, header.api_version).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let shared = wire.clone().freeze();
    group.bench_function("baseline: kafka-protocol header + request decode", |b| {
        b.iter(|| {
            let mut buffer = shared.slice(4..);
            let header = RequestHeader::decode(
                &mut buffer,
                ApiKey::Produce.request_header_version(PRODUCE_VERSION),
            )
            .unwrap();
            (
                header,
                ProduceRequest::decode(&mut buffer, PRODUCE_VERSION).unwrap(),
            )
        })
    });
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    // A full 1 GiB segment indexed every 4 KiB: 262,144 entries.
    let entries = 262_144u32;
    let mut index = OffsetIndex::default();
    for i in 0..entries {
        index.push(i * 16, i * 4096);
    }
    let plain: Vec<(u32, u32)> = (0..entries).map(|i| (i * 16, i * 4096)).collect();
    let targets: Vec<u32> = (0..64u32)
        .map(|i| i.wrapping_mul(2_654_435_761) % (entries * 16))
        .collect();
    let mut group = c.benchmark_group("index/lookup in 262144 entries");
    group.throughput(Throughput::Elements(targets.len() as u64));
    group.bench_function("shardlog OffsetIndex (binary search)", |b| {
        b.iter(|| {
            targets
                .iter()
                .map(|&t| index.lookup(std::hint::black_box(t)))
                .fold(0u64, |acc, p| acc + u64::from(p))
        })
    });
    group.bench_function("baseline: linear scan", |b| {
        b.iter(|| {
            targets
                .iter()
                .map(|&t| {
                    plain
                        .iter()
                        .take_while(|&&(o, _)| o <= std::hint::black_box(t))
                        .last()
                        .map_or(0, |&(_, p)| p)
                })
                .fold(0u64, |acc, p| acc + u64::from(p))
        })
    });
    group.finish();
}

/// Round trips from shard 0 to shard 1 over the mesh, `count` of them; the time they took.
fn mesh_round_trips(count: u64) -> Duration {
    let seed = shardlog::runtime::mesh::MeshSeed::<u64, u64>::new(2);
    let spec = shardlog::runtime::ShardSpec {
        count: 2,
        pinning: false,
        io_memory_bytes: 1 << 20,
    };
    let done = Arc::new(AtomicBool::new(false));
    let (report, took) = std::sync::mpsc::channel();
    shardlog::runtime::run_shards(&spec, |shard| {
        let seed = seed.clone();
        let done = done.clone();
        let report = report.clone();
        move || async move {
            let mesh = seed.join(|_, n: u64| async move { n + 1 }).await?;
            if shard == 0 {
                let started = Instant::now();
                for n in 0..count {
                    let reply = mesh.call(1, n).await.unwrap().await.unwrap();
                    assert_eq!(reply, n + 1);
                }
                let _ = report.send(started.elapsed());
                done.store(true, Ordering::SeqCst);
            } else {
                while !done.load(Ordering::SeqCst) {
                    shardlog::runtime::sleep(Duration::from_millis(1)).await;
                }
            }
            Ok(())
        }
    })
    .unwrap();
    took.recv().unwrap()
}

fn thread_round_trips(count: u64) -> Duration {
    let (to_peer, peer_in) = std::sync::mpsc::sync_channel::<u64>(1024);
    let (to_caller, caller_in) = std::sync::mpsc::sync_channel::<u64>(1024);
    let peer = std::thread::spawn(move || {
        while let Ok(n) = peer_in.recv() {
            if to_caller.send(n + 1).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    for n in 0..count {
        to_peer.send(n).unwrap();
        assert_eq!(caller_in.recv().unwrap(), n + 1);
    }
    let took = started.elapsed();
    drop(to_peer);
    peer.join().unwrap();
    took
}

fn cross_shard_hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("hop/request and reply between two cores");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    group.bench_function("shardlog mesh (glommio channels)", |b| {
        b.iter_custom(mesh_round_trips)
    });
    group.bench_function("baseline: std::sync::mpsc between threads", |b| {
        b.iter_custom(thread_round_trips)
    });
    group.finish();
}

criterion_group!(benches, request_decode, index_lookup, cross_shard_hop);
criterion_main!(benches);

//! Allocations on the hot paths, counted per batch and per request by a counting allocator on
//! the calling thread. The bounds are what the design promises: no per-record allocation, a
//! few per batch on append, none per byte.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use shardlog::config::TopicConfig;
use shardlog::protocol::batch::sample::{self, Compression};
use shardlog::protocol::{batch, fetch, produce};
use shardlog::storage::{PartitionLog, ShardStorage};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = f();
    (value, ALLOCATIONS.with(Cell::get) - before)
}

#[test]
fn validation_allocates_once_per_record_set_whatever_its_record_count() {
    for records in [1, 100, 1000] {
        let bytes = sample::batch(records, 100, Compression::None);
        let (_, count) = allocations(|| batch::validate_record_set(&bytes, usize::MAX).unwrap());
        println!("validate {records} records: {count} allocations");
        assert!(count <= 1, "{records} records: {count}");
    }
}

#[test]
fn produce_decode_allocates_per_partition_not_per_byte_or_record() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut request = kafka_protocol::messages::ProduceRequest::default();
    request.acks = -1;
    let mut topic = TopicProduceData::default();
    topic.name = kafka_protocol::messages::TopicName(StrBytes::from_static_str("t"));
    for p in 0..8 {
        let mut partition = PartitionProduceData::default();
        partition.index = p;
        partition.records = Some(Bytes::from(sample::batch(200, 100, Compression::None)));
        topic.partition_data.push(partition);
    }
    request.topic_data.push(topic);
    let mut frame = BytesMut::new();
    request.encode(&mut frame, 9).unwrap();
    let (decoded, count) = allocations(|| produce::decode(frame, 9).unwrap());
    println!("decode a produce request of 8 x 200 records: {count} allocations");
    // Two topic vectors, the name, two partition vectors; record sets are views (no copy).
    assert!(count <= 6, "{count}");
    assert_eq!(decoded.topics[0].partitions.len(), 8);
}

#[test]
fn append_allocates_a_few_times_per_batch_and_fetch_encoding_per_partition() {
    let (append, encode) = shardlog::runtime::run_local(1 << 20, || async {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(
            dir.path().join("t-0"),
            TopicConfig::default(),
            0,
            ShardStorage::new(64 << 20),
        )
        .await
        .unwrap();
        let bytes = sample::batch(100, 100, Compression::None);
        let headers = batch::validate_record_set(&bytes, usize::MAX).unwrap();
        // Warm up the containers' growth, then count steady-state appends.
        for _ in 0..64 {
            log.append(BytesMut::from(&bytes[..]), &headers, 0).unwrap();
        }
        let rounds = 256u64;
        let mut total = 0;
        for _ in 0..rounds {
            // The request buffer is the client's; its allocation is not the append's.
            let records = BytesMut::from(&bytes[..]);
            let (_, count) = allocations(|| log.append(records, &headers, 0).unwrap());
            total += count;
        }
        log.flush(false).await.unwrap();
        let append = total as f64 / rounds as f64;
        let chunks: Vec<Bytes> = (0..8).map(|_| Bytes::from(bytes.clone())).collect();
        let response = fetch::FetchResponse {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![fetch::FetchTopicResponse {
                name: "t".into(),
                topic_id: [0; 16],
                partitions: (0..8)
                    .map(|p| fetch::FetchPartitionResponse {
                        partition: p,
                        error_code: 0,
                        high_watermark: 0,
                        last_stable_offset: 0,
                        log_start_offset: 0,
                        aborted_transactions: None,
                        records: vec![chunks[p as usize].clone()],
                    })
                    .collect(),
            }],
        };
        let (parts, encode) = allocations(|| fetch::encode_frame(response, 1, 12));
        assert_eq!(
            parts.len(),
            8 * 2 + 1,
            "header pieces around each stored buffer"
        );
        (append, encode)
    })
    .unwrap();
    println!("append one batch: {append:.2} allocations; encode a fetch of 8 partitions: {encode}");
    assert!(append <= 4.0, "{append}");
    assert!(encode <= 24, "{encode}");
}

#[test]
fn the_producer_batch_builder_allocates_nothing_per_record() {
    use shardlog::protocol::builder::BatchBuilder;
    let value = vec![b'v'; 1000];
    let headers = vec![("trace".to_owned(), Some(Bytes::from_static(b"abc")))];
    let mut builder = BatchBuilder::with_capacity(128 << 10);
    let (_, count) = allocations(|| {
        for i in 0..100 {
            builder.push(1_700_000_000_000 + i, Some(b"key"), Some(&value), &headers);
        }
    });
    println!("push 100 records of 1 KB: {count} allocations");
    assert_eq!(count, 0);
    // Closing the batch: the output buffer, whatever the record count.
    let (batch, count) = allocations(|| builder.finish((-1, -1, -1), Compression::None).unwrap());
    println!("finish a batch of 100 records: {count} allocations");
    assert!(count <= 1, "{count}");
    assert_eq!(
        batch::validate_record_set(&batch, usize::MAX)
            .unwrap()
            .len(),
        1
    );
}

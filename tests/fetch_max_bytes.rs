//! Fetch byte limits against librdkafka: its own test `0082-fetch_max_bytes` (a consumer whose
//! `receive.message.max.bytes` is just above its `fetch.max.bytes`, on partitions of messages
//! close to 1 MB), and a consumer of many partitions under a small `fetch.max.bytes` checked
//! for every record once and in order.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Broker;
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(120);

fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = block_on(admin.create_topics([&topic], &AdminOptions::new())).expect("create");
    for result in results {
        result.expect("topic created");
    }
}

/// Produces `count` values of `size` bytes to each partition; value `i` of partition `p` starts
/// with "p/i".
fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize, size: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for p in 0..partitions {
        for i in 0..count {
            let mut value = format!("{p}/{i}/").into_bytes();
            value.resize(size.max(value.len()), b'x');
            let record = FutureRecord::<(), [u8]>::to(topic)
                .partition(p)
                .payload(&value);
            pending.push(producer.send_result(record).expect("queued"));
        }
    }
    for delivery in pending {
        block_on(delivery)
            .expect("delivered")
            .expect("acknowledged");
    }
}

/// Consumes until every partition has `count` records, checking each is the next one of its
/// partition (no loss, no duplicate, in order).
fn consume_all(consumer: &BaseConsumer, topic: &str, partitions: i32, count: usize, size: usize) {
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut next: BTreeMap<i32, usize> = (0..partitions).map(|p| (p, 0)).collect();
    let total = partitions as usize * count;
    let mut received = 0;
    let deadline = Instant::now() + TIMEOUT;
    while received < total {
        assert!(
            Instant::now() < deadline,
            "received {received} of {total}; next per partition {next:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("no consume error");
        let p = message.partition();
        let expected = next.get_mut(&p).expect("an assigned partition");
        let value = message.payload().expect("a value");
        let prefix = format!("{p}/{expected}/");
        assert!(
            value.starts_with(prefix.as_bytes()),
            "partition {p}: expected record {expected}, got {:?}",
            String::from_utf8_lossy(&value[..value.len().min(20)])
        );
        assert_eq!(value.len(), size.max(prefix.len()));
        assert_eq!(message.offset(), *expected as i64);
        *expected += 1;
        received += 1;
    }
}

/// librdkafka's 0082-fetch_max_bytes: messages of 900 KiB, `max.partition.fetch.bytes` 20 MB,
/// `fetch.max.bytes` 1 MB and `receive.message.max.bytes` 512 bytes above it. A response over
/// the receive limit makes the client drop the connection and never get anywhere.
#[test]
fn librdkafka_0082_fetch_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let (partitions, count, size) = (3, 10, 900 * 1024);
    create_topic(&broker.bootstrap, "fetch-max-bytes", partitions);
    produce(
        &broker.bootstrap,
        "fetch-max-bytes",
        partitions,
        count,
        size,
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "fetch-max-bytes")
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "20000000")
        .set("fetch.max.bytes", "1000000")
        .set("receive.message.max.bytes", "1000512")
        .create()
        .expect("consumer");
    consume_all(&consumer, "fetch-max-bytes", partitions, count, size);
}

/// 200 partitions over both shards, 1 KiB records, responses limited to about 100 records:
/// every request is cut by the response budget somewhere, on one shard or the other.
#[test]
fn many_partitions_under_a_small_fetch_max_bytes_get_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let (partitions, count, size) = (200, 20, 1024);
    create_topic(&broker.bootstrap, "many", partitions);
    produce(&broker.bootstrap, "many", partitions, count, size);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "many")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .set("fetch.max.bytes", "100000")
        .set("message.max.bytes", "100000")
        .set("receive.message.max.bytes", "100512")
        .set("max.partition.fetch.bytes", "20000")
        .create()
        .expect("consumer");
    consume_all(&consumer, "many", partitions, count, size);
}

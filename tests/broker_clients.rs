//! The broker against a real Kafka client (librdkafka, through the `rdkafka` crate).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, Broker};
use futures::executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("consumer")
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = block_on(admin.create_topics([&topic], &AdminOptions::new())).expect("create");
    for result in results {
        result.expect("topic created");
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Received {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Timestamp,
}

/// Reads `count` messages from `start` on every partition of `topic`.
fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    start: Offset,
    count: usize,
) -> Vec<Received> {
    let consumer = consumer(bootstrap);
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, start).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "consumed {} of {count} from {topic}",
            out.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("consume");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Received {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp: message.timestamp(),
        });
    }
    out
}

fn produce_sequence(
    bootstrap: &str,
    topic: &str,
    from: usize,
    to: usize,
    extra: &[(&str, &str)],
) -> Vec<(i32, i64)> {
    let producer = producer(bootstrap, extra);
    let futures: Vec<_> = (from..to)
        .map(|i| {
            let key = format!("key-{i}");
            let value = format!("value-{i}");
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                .expect("queue")
        })
        .collect();
    futures
        .into_iter()
        .map(|f| block_on(f).expect("delivery").expect("acked"))
        .map(|d| (d.partition, d.offset))
        .collect()
}

#[test]
fn produce_keyed_and_unkeyed_with_headers_then_consume_from_earliest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let topic = "orders";
    create_topic(&broker.bootstrap, topic, 3, &[]);
    let producer = producer(&broker.bootstrap, &[]);
    let mut sent = Vec::new();
    for i in 0..200 {
        let value = format!("payload-{i}");
        let key = format!("customer-{}", i % 7);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some(format!("t{i}").as_bytes()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let mut record = FutureRecord::to(topic).payload(&value).headers(headers);
        if i % 2 == 0 {
            record = record.key(&key);
        }
        let delivery = block_on(producer.send(record, TIMEOUT)).expect("acked");
        sent.push((
            i,
            delivery.partition,
            delivery.offset,
            (i % 2 == 0).then_some(key),
        ));
    }
    // Keyed records of one key all land on one partition.
    let mut key_partition: BTreeMap<String, i32> = BTreeMap::new();
    for (_, partition, _, key) in &sent {
        if let Some(key) = key {
            assert_eq!(
                *key_partition.entry(key.clone()).or_insert(*partition),
                *partition
            );
        }
    }
    let received = consume(&broker.bootstrap, topic, 3, Offset::Beginning, 200);
    let by_position: BTreeMap<(i32, i64), &Received> = received
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    assert_eq!(by_position.len(), 200, "no duplicates");
    for (i, partition, offset, key) in &sent {
        let got = by_position[&(*partition, *offset)];
        assert_eq!(got.value, format!("payload-{i}").into_bytes());
        assert_eq!(got.key, key.as_ref().map(|k| k.clone().into_bytes()));
        assert_eq!(
            got.headers[0],
            ("trace".to_string(), format!("t{i}").into_bytes())
        );
        assert_eq!(got.headers[1].0, "empty");
    }
    // Offsets are dense from 0 on every partition.
    for p in 0..3 {
        let offsets: Vec<i64> = received
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
    // ListOffsets: earliest and latest.
    let consumer = consumer(&broker.bootstrap);
    let mut total = 0;
    for p in 0..3 {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT).unwrap();
        assert_eq!(low, 0);
        total += high;
    }
    assert_eq!(total, 200);
}

#[test]
fn list_offsets_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    create_topic(&broker.bootstrap, "timed", 1, &[]);
    let producer = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let base = 1_700_000_000_000i64;
    for i in 0..50i64 {
        let value = format!("v{i}");
        block_on(
            producer.send(
                FutureRecord::<(), _>::to("timed")
                    .payload(&value)
                    .timestamp(base + i * 1000),
                TIMEOUT,
            ),
        )
        .expect("acked");
    }
    let consumer = consumer(&broker.bootstrap);
    for (target, expected) in [(base, 0), (base + 20_500, 21), (base + 49_000, 49), (0, 0)] {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset("timed", 0, Offset::Offset(target))
            .unwrap();
        let found = consumer.offsets_for_times(query, TIMEOUT).unwrap();
        let offset = found.find_partition("timed", 0).unwrap().offset();
        assert_eq!(offset, Offset::Offset(expected), "timestamp {target}");
    }
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("timed", 0, Offset::Offset(base + 1_000_000))
        .unwrap();
    let found = consumer.offsets_for_times(query, TIMEOUT).unwrap();
    assert_eq!(
        found.find_partition("timed", 0).unwrap().offset(),
        Offset::End
    );
}

#[test]
fn every_compression_codec_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&broker.bootstrap, &topic, 1, &[]);
        produce_sequence(
            &broker.bootstrap,
            &topic,
            0,
            300,
            &[("compression.codec", codec), ("linger.ms", "20")],
        );
        let received = consume(&broker.bootstrap, &topic, 1, Offset::Beginning, 300);
        for (i, r) in received.iter().enumerate() {
            assert_eq!(r.offset, i as i64, "{codec}");
            assert_eq!(r.value, format!("value-{i}").into_bytes(), "{codec}");
        }
        // A fetch in the middle of a compressed batch returns the whole batch; the client
        // skips to its offset.
        let middle = consume(&broker.bootstrap, &topic, 1, Offset::Offset(151), 10);
        assert_eq!(middle[0].offset, 151, "{codec}");
        assert_eq!(middle[0].value, b"value-151".to_vec());
    }
}

#[test]
fn restart_keeps_everything_and_offsets_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("data"), &[]);
    create_topic(
        &broker.bootstrap,
        "kept",
        2,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let first = produce_sequence(&broker.bootstrap, "kept", 0, 400, &[]);
    let status = broker.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    broker.restart();
    let received = consume(&broker.bootstrap, "kept", 2, Offset::Beginning, 400);
    let mut values: Vec<Vec<u8>> = received.iter().map(|r| r.value.clone()).collect();
    values.sort();
    let mut expected: Vec<Vec<u8>> = (0..400)
        .map(|i| format!("value-{i}").into_bytes())
        .collect();
    expected.sort();
    assert_eq!(values, expected);
    assert!(received
        .iter()
        .all(|r| matches!(r.timestamp, Timestamp::LogAppendTime(_))));
    let ends: BTreeMap<i32, i64> = first.iter().fold(BTreeMap::new(), |mut acc, (p, o)| {
        let e = acc.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
        acc
    });
    let second = produce_sequence(&broker.bootstrap, "kept", 400, 410, &[]);
    for (p, o) in second {
        assert!(
            o >= ends.get(&p).copied().unwrap_or(0),
            "offsets continue after restart"
        );
    }
}

#[test]
fn retention_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[("log.retention.check.interval.ms", "100")],
    );
    create_topic(
        &broker.bootstrap,
        "by-size",
        1,
        &[("segment.bytes", "8192"), ("retention.bytes", "16384")],
    );
    create_topic(
        &broker.bootstrap,
        "by-time",
        1,
        &[("segment.bytes", "8192"), ("retention.ms", "60000")],
    );
    let payload = vec![b'x'; 1000];
    let producer = producer(&broker.bootstrap, &[("linger.ms", "0")]);
    let old = rdkafka::util::current_time_millis() - 3_600_000;
    for _ in 0..100 {
        block_on(producer.send(
            FutureRecord::<(), _>::to("by-size").payload(&payload),
            TIMEOUT,
        ))
        .unwrap();
        block_on(
            producer.send(
                FutureRecord::<(), _>::to("by-time")
                    .payload(&payload)
                    .timestamp(old),
                TIMEOUT,
            ),
        )
        .unwrap();
    }
    let consumer = consumer(&broker.bootstrap);
    // What is left is at most retention.bytes plus the active segment.
    let low = eventually(Duration::from_secs(30), "size retention", || {
        let (low, high) = consumer.fetch_watermarks("by-size", 0, TIMEOUT).unwrap();
        assert_eq!(high, 100);
        (low >= 100 - (16384 + 8192) / 1000).then_some(low)
    });
    // Retention may still be deleting: read from wherever the log starts now to its end.
    let reader = self::consumer(&broker.bootstrap);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("by-size", 0, Offset::Beginning)
        .unwrap();
    reader.assign(&assignment).unwrap();
    let mut offsets = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while offsets.last() != Some(&99) {
        assert!(std::time::Instant::now() < deadline, "read {offsets:?}");
        if let Some(message) = reader.poll(Duration::from_millis(200)) {
            offsets.push(message.unwrap().offset());
        }
    }
    assert!(
        offsets[0] >= low,
        "first offset {} is at or past {low}",
        offsets[0]
    );
    assert_eq!(offsets, (offsets[0]..100).collect::<Vec<_>>());
    let log_files = std::fs::read_dir(dir.path().join("data/by-size-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(log_files <= 4, "{log_files} segments left");
    // Time retention: every segment but the active one is older than retention.ms.
    eventually(Duration::from_secs(30), "time retention", || {
        let (low, _) = consumer.fetch_watermarks("by-time", 0, TIMEOUT).unwrap();
        (low >= 90).then_some(low)
    });
}

#[test]
fn topic_admin_create_describe_alter_add_partitions_delete() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let admin = admin(&broker.bootstrap);
    let options = AdminOptions::new();
    create_topic(
        &broker.bootstrap,
        "admin-t",
        2,
        &[("retention.ms", "123456")],
    );
    // Creating it again is TOPIC_ALREADY_EXISTS.
    let again = block_on(admin.create_topics(
        [&NewTopic::new("admin-t", 2, TopicReplication::Fixed(1))],
        &options,
    ))
    .unwrap();
    assert!(matches!(
        again[0],
        Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))
    ));
    // A replication factor this single broker cannot hold is refused.
    let rf = block_on(admin.create_topics(
        [&NewTopic::new("rf3", 1, TopicReplication::Fixed(3))],
        &options,
    ))
    .unwrap();
    assert!(matches!(
        rf[0],
        Err((
            _,
            rdkafka::types::RDKafkaErrorCode::InvalidReplicationFactor
        ))
    ));
    let describe = |name: &str| -> BTreeMap<String, String> {
        let results =
            block_on(admin.describe_configs([&ResourceSpecifier::Topic(name)], &options)).unwrap();
        let resource = results.into_iter().next().unwrap().unwrap();
        resource
            .entries
            .into_iter()
            .filter_map(|e| e.value.map(|v| (e.name, v)))
            .collect()
    };
    let configs = describe("admin-t");
    assert_eq!(configs["retention.ms"], "123456");
    assert_eq!(configs["cleanup.policy"], "delete");
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("admin-t")).set("retention.bytes", "99999");
    block_on(admin.alter_configs([&alter], &options)).unwrap()[0]
        .as_ref()
        .unwrap();
    assert_eq!(describe("admin-t")["retention.bytes"], "99999");
    // An invalid value is refused (INVALID_CONFIG; the rdkafka crate does not surface
    // per-resource errors of AlterConfigs) and changes nothing.
    let bad = AlterConfig::new(ResourceSpecifier::Topic("admin-t")).set("retention.ms", "soon");
    block_on(admin.alter_configs([&bad], &options)).unwrap();
    assert_eq!(describe("admin-t")["retention.bytes"], "99999");
    block_on(admin.create_partitions([&NewPartitions::new("admin-t", 5)], &options)).unwrap()[0]
        .as_ref()
        .unwrap();
    produce_sequence(
        &broker.bootstrap,
        "admin-t",
        0,
        50,
        &[("partitioner", "random")],
    );
    let metadata = consumer(&broker.bootstrap)
        .fetch_metadata(Some("admin-t"), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 5);
    block_on(admin.delete_topics(&["admin-t"], &options)).unwrap()[0]
        .as_ref()
        .unwrap();
    let metadata = consumer(&broker.bootstrap)
        .fetch_metadata(None, TIMEOUT)
        .unwrap();
    assert!(metadata.topics().iter().all(|t| t.name() != "admin-t"));
    assert!(
        !dir.path().join("data/admin-t-0").exists(),
        "partition data deleted"
    );
}

#[test]
fn metadata_auto_creates_topics_with_default_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[("num.partitions", "4")]);
    let delivered = produce_sequence(&broker.bootstrap, "auto-made", 0, 20, &[]);
    assert_eq!(delivered.len(), 20);
    let metadata = consumer(&broker.bootstrap)
        .fetch_metadata(Some("auto-made"), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 4);
}

#[test]
fn flush_interval_mode_serves_before_sync_and_keeps_data_over_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(
        &dir.path().join("data"),
        &[
            ("log.flush.interval.messages", "1000"),
            ("log.flush.interval.ms", "200"),
        ],
    );
    create_topic(&broker.bootstrap, "lazy", 1, &[]);
    produce_sequence(&broker.bootstrap, "lazy", 0, 300, &[]);
    let received = consume(&broker.bootstrap, "lazy", 1, Offset::Beginning, 300);
    assert_eq!(received.last().unwrap().offset, 299);
    assert!(broker.terminate().success());
    broker.restart();
    let received = consume(&broker.bootstrap, "lazy", 1, Offset::Beginning, 300);
    assert_eq!(received[299].value, b"value-299".to_vec());
}

#[test]
fn a_fresh_broker_serves_cold_reads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    // A cache far smaller than the data: consumers from the start read segment files.
    let broker = Broker::start(&dir.path().join("data"), &[("batch.cache.bytes", "65536")]);
    // Default (large) segments, so disk reads are as large as a fetch allows (1 MiB).
    create_topic(&broker.bootstrap, "cold", 2, &[]);
    let payload = vec![b'c'; 2000];
    let producer = producer(&broker.bootstrap, &[("linger.ms", "2")]);
    let deliveries: Vec<_> = (0..2000)
        .map(|i| {
            producer
                .send_result(
                    FutureRecord::<(), _>::to("cold")
                        .payload(&payload)
                        .partition(i % 2),
                )
                .expect("queue")
        })
        .collect();
    for delivery in deliveries {
        block_on(delivery).unwrap().unwrap();
    }
    let received = consume(&broker.bootstrap, "cold", 2, Offset::Beginning, 2000);
    assert!(received.iter().all(|r| r.value == payload));
    for p in 0..2 {
        let mut offsets: Vec<i64> = received
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        offsets.sort_unstable();
        assert_eq!(offsets, (0..1000).collect::<Vec<_>>());
    }
    assert!(!broker.log().contains("read failed"), "{}", broker.log());
}

//! Log compaction end to end: a compacted topic written and read by librdkafka ends up with
//! the latest value of each key, loses deleted keys after `delete.retention.ms`, and never
//! loses a latest value when the broker is killed while cleaning.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{assigned_consumer, eventually, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const KEYS: usize = 40;

fn start(dir: &std::path::Path) -> Broker {
    Broker::start(dir, &[("log.cleaner.backoff.ms", "20")])
}

fn create_compacted(bootstrap: &str, name: &str, delete_retention_ms: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "8192")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", delete_retention_ms);
    let results = futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create");
    assert!(results[0].is_ok(), "{results:?}");
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

/// Sends `(key, value)` records (`None`: a tombstone) and waits for each acknowledgement.
/// Returns how many were acknowledged (all, unless the broker died).
fn send(producer: &FutureProducer, topic: &str, records: &[(String, Option<String>)]) -> usize {
    futures::executor::block_on(async {
        let mut pending = Vec::new();
        for (key, value) in records {
            let mut record = FutureRecord::to(topic).key(key.as_str());
            if let Some(value) = value {
                record = record.payload(value.as_str());
            }
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => panic!("cannot queue: {e}"),
            }
        }
        let mut acked = 0;
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => acked += 1,
                _ => break,
            }
        }
        acked
    })
}

/// Every record of partition 0, in order: (offset, key, value).
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let consumer = assigned_consumer(bootstrap, topic, &[0]);
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut position = 0;
    while position < high {
        assert!(
            Instant::now() < deadline,
            "reading {topic} stalled at {position}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            let key = String::from_utf8(message.key().unwrap_or_default().to_vec()).unwrap();
            let value = message
                .payload()
                .map(|v| String::from_utf8(v.to_vec()).unwrap());
            position = message.offset() + 1;
            out.push((message.offset(), key, value));
        }
        // Compaction may have removed the records at the end of the log.
        if let Ok(positions) = consumer.position() {
            if let Some(rdkafka::Offset::Offset(at)) =
                positions.elements().first().map(|e| e.offset())
            {
                position = position.max(at);
            }
        }
    }
    out
}

fn updates(round: usize) -> Vec<(String, Option<String>)> {
    (0..KEYS * 5)
        .map(|i| {
            (
                format!("key-{}", i % KEYS),
                Some(format!("r{round}-{i}-{}", "x".repeat(40))),
            )
        })
        .collect()
}

/// Unique filler keys, so the segment with the interesting records rolls and becomes cleanable.
fn filler(round: usize) -> Vec<(String, Option<String>)> {
    (0..200)
        .map(|i| (format!("filler-{round}-{i}"), Some("f".repeat(60))))
        .collect()
}

fn latest_of(records: &[(String, Option<String>)], into: &mut BTreeMap<String, Option<String>>) {
    for (k, v) in records {
        into.insert(k.clone(), v.clone());
    }
}

#[test]
fn a_consumer_from_the_start_sees_only_the_latest_value_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir.path().join("data"));
    create_compacted(&broker.bootstrap, "compacted", "1000");
    let producer = producer(&broker.bootstrap);
    let mut latest = BTreeMap::new();
    for round in 0..4 {
        let batch = updates(round);
        assert_eq!(send(&producer, "compacted", &batch), batch.len());
        latest_of(&batch, &mut latest);
    }
    let deletes: Vec<(String, Option<String>)> =
        (0..10).map(|i| (format!("key-{i}"), None)).collect();
    assert_eq!(send(&producer, "compacted", &deletes), deletes.len());
    latest_of(&deletes, &mut latest);
    let written = send(&producer, "compacted", &filler(0));
    assert_eq!(written, 200);

    // The cleaner runs on its own schedule: wait until the log shows one record per key and
    // the deleted keys are gone (their tombstones expire after 1 s).
    let records = eventually(Duration::from_secs(60), "compaction", || {
        let records = read_all(&broker.bootstrap, "compacted");
        let interesting: Vec<_> = records.iter().filter(|r| r.1.starts_with("key-")).collect();
        (interesting.len() == KEYS - 10).then_some(records)
    });
    assert!(
        records.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets ascend"
    );
    let mut seen = BTreeMap::new();
    for (_, key, value) in records.iter().filter(|r| r.1.starts_with("key-")) {
        assert!(
            seen.insert(key.clone(), value.clone()).is_none(),
            "{key} twice"
        );
    }
    for (key, value) in &latest {
        match value {
            None => assert!(!seen.contains_key(key), "{key} was deleted"),
            Some(_) => assert_eq!(seen.get(key), Some(value), "{key}"),
        }
    }
}

#[test]
fn kill_9_while_cleaning_never_loses_a_latest_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start(&dir.path().join("data"));
    create_compacted(&broker.bootstrap, "churn", "60000");
    let mut latest = BTreeMap::new();
    for round in 0..6 {
        let producer = producer(&broker.bootstrap);
        let mut batch = updates(round);
        batch.extend(filler(round));
        assert_eq!(send(&producer, "churn", &batch), batch.len());
        latest_of(&batch, &mut latest);
        drop(producer);
        // Kill at a different moment of the cleaner's work each round.
        std::thread::sleep(Duration::from_millis(5 + 7 * round as u64));
        broker.kill9();
        broker.restart();
        let records = read_all(&broker.bootstrap, "churn");
        assert!(
            records.windows(2).all(|w| w[0].0 < w[1].0),
            "round {round}: offsets ascend"
        );
        let mut last = BTreeMap::new();
        for (_, key, value) in records {
            last.insert(key, value);
        }
        assert_eq!(
            last, latest,
            "round {round}: the latest value of every key survives"
        );
    }
    assert!(
        broker.log().contains("compacted"),
        "the cleaner ran at least once"
    );
}

#[test]
fn a_compacted_topic_refuses_records_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir.path().join("data"));
    create_compacted(&broker.bootstrap, "keys-only", "1000");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("message.timeout.ms", "10000")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .create()
        .expect("producer");
    let keyless = FutureRecord::<(), _>::to("keys-only").payload("no key");
    let result = futures::executor::block_on(producer.send(keyless, Duration::from_secs(10)));
    let (error, _) = result.expect_err("a keyless record is refused");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::InvalidRecord),
        "{error}"
    );
    let keyed = FutureRecord::to("keys-only").key("k").payload("v");
    futures::executor::block_on(producer.send(keyed, Duration::from_secs(10))).expect("keyed");
}

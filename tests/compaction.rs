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
    Broker::start(
        dir,
        &[
            ("log.cleaner.backoff.ms", "20"),
            ("metrics.listener", "127.0.0.1:0"),
        ],
    )
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
    read_all_with_headers(bootstrap, topic)
        .into_iter()
        .map(|(offset, key, value, _)| (offset, key, value))
        .collect()
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

/// Every record of partition 0 with its headers: (offset, key, value, headers).
type Full = (i64, String, Option<String>, Vec<(String, Option<String>)>);

fn read_all_with_headers(bootstrap: &str, topic: &str) -> Vec<Full> {
    use rdkafka::message::Headers;
    let consumer = assigned_consumer(bootstrap, topic, &[0]);
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
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
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(text)))
                        .collect()
                })
                .unwrap_or_default();
            position = message.offset() + 1;
            out.push((
                message.offset(),
                text(message.key().unwrap_or_default()),
                message.payload().map(text),
                headers,
            ));
        }
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

/// Files a pass leaves behind only when it fails or is interrupted.
fn litter(data: &std::path::Path, topic: &str) -> Vec<String> {
    std::fs::read_dir(data.join(format!("{topic}-0")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

/// What librdkafka really sends: 100 keys written 50 times each with default batching (hundreds
/// of records a batch, keys repeated inside it), from an idempotent producer, with a header
/// name repeated on every record, then tombstones for ten keys. Once cleaned, a consumer from
/// the start sees one record per key, the latest, with its headers, in every codec.
#[test]
fn real_client_batches_compact_to_the_latest_value_per_key_in_every_codec() {
    for codec in ["none", "lz4", "zstd"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let broker = start(&data);
        let topic = format!("changelog-{codec}");
        create_compacted(&broker.bootstrap, &topic, "1000");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("enable.idempotence", "true")
            .set("compression.type", codec)
            .set("linger.ms", "20")
            .set("message.timeout.ms", "20000")
            .create()
            .expect("producer");
        let mut latest = BTreeMap::new();
        let mut pending = Vec::new();
        for round in 0..50 {
            for key in 0..100 {
                let (key, value) = (format!("key-{key}"), format!("r{round}-{key}"));
                let headers = rdkafka::message::OwnedHeaders::new()
                    .insert(rdkafka::message::Header {
                        key: "trace",
                        value: Some(&format!("{round}")),
                    })
                    .insert(rdkafka::message::Header {
                        key: "trace",
                        value: Some("again"),
                    });
                let record = FutureRecord::to(&topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value)
                    .headers(headers);
                pending.push(
                    producer
                        .send_result(record)
                        .map_err(|(e, _)| e)
                        .expect("queue"),
                );
                latest.insert(key, Some(value));
            }
        }
        for key in 0..10 {
            let key = format!("key-{key}");
            let record = FutureRecord::<_, ()>::to(&topic).partition(0).key(&key);
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("queue"),
            );
            latest.insert(key, None);
        }
        for delivery in pending {
            futures::executor::block_on(delivery)
                .expect("delivered")
                .expect("acknowledged");
        }
        // Unique keys after them roll the segment, so that all of the above is cleanable.
        assert_eq!(send(&producer, &topic, &filler(0)), 200);
        let records = eventually(Duration::from_secs(60), "compaction", || {
            let records = read_all_with_headers(&broker.bootstrap, &topic);
            let keys = records.iter().filter(|r| r.1.starts_with("key-")).count();
            (keys == 90).then_some(records)
        });
        assert!(
            records.windows(2).all(|w| w[0].0 < w[1].0),
            "{codec}: offsets ascend"
        );
        let mut seen = BTreeMap::new();
        for (_, key, value, headers) in records.iter().filter(|r| r.1.starts_with("key-")) {
            assert!(
                seen.insert(key.clone(), value.clone()).is_none(),
                "{key} twice"
            );
            let round = value.as_deref().unwrap().split('-').next().unwrap()[1..].to_string();
            assert_eq!(
                headers,
                &vec![
                    ("trace".to_string(), Some(round)),
                    ("trace".to_string(), Some("again".into()))
                ],
                "{codec}: {key}'s repeated headers"
            );
        }
        for (key, value) in &latest {
            match value {
                None => assert!(!seen.contains_key(key), "{codec}: {key} was deleted"),
                Some(_) => assert_eq!(seen.get(key), Some(value), "{codec}: {key}"),
            }
        }
        assert!(
            records.len() <= 90 + 200,
            "{codec}: {} records left",
            records.len()
        );
        assert_eq!(litter(&data, &topic), Vec::<String>::new(), "{codec}");
        // The metrics page shows the partition's cleaner state.
        let page = common::metrics::scrape(broker.metrics.as_deref().expect("metrics"));
        let of_topic = [("topic", topic.as_str()), ("partition", "0")];
        let value = |name| common::metrics::total(&page, name, &of_topic);
        assert!(value("shardlog_cleaner_passes_total") >= 1.0, "{page}");
        assert_eq!(value("shardlog_cleaner_passes_failed_total"), 0.0);
        assert!(value("shardlog_cleaner_last_pass_timestamp_seconds") > 1e9);
        let (bytes_in, bytes_out) = (
            value("shardlog_cleaner_last_pass_bytes_in"),
            value("shardlog_cleaner_last_pass_bytes_out"),
        );
        assert!(
            bytes_out > 0.0 && bytes_out < bytes_in,
            "{bytes_in} -> {bytes_out}"
        );
        assert!(
            !broker.log().contains("compaction failed"),
            "{codec}: {}",
            broker.log()
        );
        // The idempotent producer goes on after the cleaning, with no sequence error.
        let after = FutureRecord::to(&topic)
            .partition(0)
            .key("key-1")
            .payload("after");
        futures::executor::block_on(producer.send(after, Duration::from_secs(10)))
            .expect("a produce after the cleaning");
    }
}

/// librdkafka's `0011-produce_batch` (`test_message_single_partition_record_fail`): ten keyless
/// records among 100 sent to a compacted topic. In one batch, the ten fail with INVALID_RECORD
/// and the other ninety with librdkafka's "a different record was invalid" (KIP-467's record
/// errors say which); one record a batch, only the ten fail.
#[test]
fn keyless_records_in_a_batch_fail_alone_with_their_record_errors() {
    use rdkafka::types::RDKafkaErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir.path().join("data"));
    for (variation, batch_size) in [(0, "1000000"), (1, "1")] {
        let topic = format!("record-errors-{variation}");
        create_compacted(&broker.bootstrap, &topic, "1000");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("batch.size", batch_size)
            .set("linger.ms", "50")
            .set("message.timeout.ms", "20000")
            .create()
            .expect("producer");
        let pending: Vec<_> = (0..100)
            .map(|i| {
                let value = format!("test message #{i}");
                let mut record = FutureRecord::to(&topic).partition(0).payload(&value);
                if i % 10 != 0 {
                    record = record.key(&value);
                }
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("queue")
            })
            .collect();
        let (mut invalid, mut different, mut ok) = (0, 0, 0);
        for delivery in pending {
            match futures::executor::block_on(delivery).expect("a report") {
                Ok(_) => ok += 1,
                Err((e, _)) => match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::InvalidRecord) => invalid += 1,
                    Some(RDKafkaErrorCode::InvalidDifferentRecord) => different += 1,
                    other => panic!("unexpected {other:?}: {e}"),
                },
            }
        }
        assert_eq!(invalid, 10, "variation {variation}");
        if variation == 0 {
            assert_eq!((different, ok), (90, 0));
        } else {
            assert_eq!((different, ok), (0, 90));
        }
    }
}

/// KIP-467 on the wire: Produce v8+ names each keyless record by its index and gives a
/// message; v7 has only the error code.
#[test]
fn produce_answers_record_errors_for_keyless_records() {
    use kafka_protocol::messages::{self as m, ApiKey, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir.path().join("data"));
    let mut client = common::raw::Client::connect(&broker.bootstrap);
    common::raw::create_topic(&mut client, "raw-keys", &[("cleanup.policy", "compact")]);
    let records = (0..6).map(|i| {
        let key = (i != 1 && i != 4).then(|| bytes::Bytes::from(format!("k{i}")));
        (
            key,
            Some(bytes::Bytes::from_static(b"v")),
            1_700_000_000_000,
        )
    });
    let batch = shardlog::protocol::batch::encode_records(
        records,
        (-1, -1, -1),
        shardlog::protocol::batch::sample::Compression::None,
    )
    .unwrap()
    .freeze();
    for version in [7, 9] {
        let mut request = m::ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 5000;
        let mut data = m::produce_request::TopicProduceData::default();
        data.name = TopicName(StrBytes::from_static_str("raw-keys"));
        let mut p = m::produce_request::PartitionProduceData::default();
        p.records = Some(batch.clone());
        data.partition_data.push(p);
        request.topic_data.push(data);
        let response: m::ProduceResponse = client.call(ApiKey::Produce, version, &request);
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 87, "v{version}: INVALID_RECORD");
        if version >= 8 {
            let indexes: Vec<i32> = partition
                .record_errors
                .iter()
                .map(|e| e.batch_index)
                .collect();
            assert_eq!(indexes, vec![1, 4]);
            assert!(partition.record_errors.iter().all(|e| e
                .batch_index_error_message
                .as_ref()
                .is_some_and(|m| m.contains("without key"))));
            assert!(partition.error_message.is_some());
        }
    }
    assert_eq!(
        common::raw::latest_offset(&mut client, "raw-keys"),
        0,
        "nothing appended"
    );
}

//! Our producer against the real broker, read back with librdkafka: keyed records land on
//! Kafka's murmur2 partition, every codec round-trips, memory stays bounded without losing a
//! record, and idempotent retries across cut connections leave no duplicates and no gaps.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::proxy::Proxy;
use common::{assigned_consumer, Broker};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use shardlog::client::admin::Admin;
use shardlog::client::blocking;
use shardlog::client::partitioner::partition_for_key;
use shardlog::client::producer::{Compression, Producer, ProducerConfig, RecordMetadata};

/// Everything in `topic` (all `partitions`), as (partition, offset) → (key, value).
fn read_back(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)> {
    let all: Vec<i32> = (0..partitions).collect();
    let consumer = assigned_consumer(bootstrap, topic, &all);
    let mut out = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {expected}",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            let previous = out.insert(
                (message.partition(), message.offset()),
                (
                    message.key().unwrap_or_default().to_vec(),
                    message.payload().unwrap_or_default().to_vec(),
                ),
            );
            assert!(previous.is_none());
        }
    }
    drop(consumer.unassign());
    out
}

/// A broker that advertises, and is reached through, a proxy the test can cut or hold.
fn behind_proxy(dir: &tempfile::TempDir, overrides: &[(&str, &str)]) -> (Proxy, Broker) {
    let proxy = Proxy::start();
    let advertised = format!("PLAINTEXT://127.0.0.1:{}", proxy.port());
    let mut settings = vec![("advertised.listeners", advertised.as_str())];
    settings.extend_from_slice(overrides);
    let broker = Broker::start(&dir.path().join("data"), &settings);
    proxy.set_target(&broker.bootstrap);
    (proxy, broker)
}

#[test]
fn keyed_records_in_every_codec_land_on_murmur2_partitions_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    for (n, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("codec-{n}");
        let bootstrap = broker.bootstrap.clone();
        let t = topic.clone();
        let delivered: Vec<(Vec<u8>, Vec<u8>, RecordMetadata)> =
            blocking::run(move || async move {
                Admin::connect(&bootstrap)
                    .await
                    .unwrap()
                    .create_topic(&t, 3, 1, &[])
                    .await
                    .unwrap();
                let mut config = ProducerConfig::new(&bootstrap);
                config.compression = codec;
                config.linger = Duration::from_millis(2);
                let producer = Producer::connect(config).await.expect("producer");
                let mut pending = Vec::new();
                for i in 0..300 {
                    let key = format!("key-{}", i % 37).into_bytes();
                    let value = format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes();
                    let delivery = producer
                        .send(
                            &t,
                            Some(Bytes::from(key.clone())),
                            Some(Bytes::from(value.clone())),
                            None,
                        )
                        .await
                        .expect("queued");
                    pending.push((key, value, delivery));
                }
                producer.flush().await;
                let mut out = Vec::new();
                for (key, value, delivery) in pending {
                    out.push((
                        key,
                        value,
                        delivery.await.expect("answered").expect("delivered"),
                    ));
                }
                out
            })
            .expect("client executor");
        for (key, _, meta) in &delivered {
            assert_eq!(meta.partition, partition_for_key(key, 3), "{codec:?}");
        }
        let stored = read_back(&broker.bootstrap, &topic, 3, delivered.len());
        for (key, value, meta) in &delivered {
            assert_eq!(
                stored.get(&(meta.partition, meta.offset)),
                Some(&(key.clone(), value.clone())),
                "{codec:?} at {meta:?}"
            );
        }
    }
}

#[test]
fn a_small_memory_budget_slows_sends_down_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let bootstrap = broker.bootstrap.clone();
    let offsets = blocking::run(move || async move {
        let mut config = ProducerConfig::new(&bootstrap);
        config.buffer_memory = 4096;
        config.batch_size = 1024;
        let producer = Producer::connect(config).await.expect("producer");
        let mut pending = Vec::new();
        for i in 0..2000 {
            let value = Bytes::from(vec![b'a' + (i % 26) as u8; 100]);
            pending.push(
                producer
                    .send("budget", None, Some(value), Some(0))
                    .await
                    .expect("queued"),
            );
        }
        producer.flush().await;
        let mut offsets = Vec::new();
        for d in pending {
            offsets.push(d.await.unwrap().expect("delivered").offset);
        }
        offsets
    })
    .expect("client executor");
    assert_eq!(
        offsets,
        (0..2000).collect::<Vec<i64>>(),
        "in order, no gaps"
    );
}

#[test]
fn idempotent_retries_over_cut_connections_leave_no_duplicates_and_no_gaps() {
    const RECORDS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, broker) = behind_proxy(&dir, &[]);
    let address = proxy.address.clone();
    let proxy = std::sync::Arc::new(proxy);
    let cutter = proxy.clone();
    blocking::run(move || async move {
        let mut config = ProducerConfig::new(&address);
        config.linger = Duration::from_millis(1);
        config.batch_size = 2048;
        let producer = Producer::connect(config).await.expect("producer");
        let mut pending = Vec::new();
        for i in 0..RECORDS {
            if i % 700 == 350 {
                cutter.cut();
            }
            let value = Bytes::from(format!("seq-{i}"));
            pending.push(
                producer
                    .send("idem", None, Some(value), Some(0))
                    .await
                    .expect("queued"),
            );
        }
        producer.flush().await;
        for d in pending {
            d.await.unwrap().expect("delivered despite the cuts");
        }
    })
    .expect("client executor");
    let stored = read_back(&broker.bootstrap, "idem", 1, RECORDS);
    let values: Vec<String> = stored
        .values()
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..RECORDS).map(|i| format!("seq-{i}")).collect();
    assert_eq!(values, expected, "every record once, in order");
}

#[test]
fn a_batch_refused_for_good_inside_a_window_fails_alone_and_the_rest_follow_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.expect("admin");
        admin
            .create_topic("strict", 1, 1, &[("max.message.bytes", "2000")])
            .await
            .expect("create");
        let mut config = ProducerConfig::new(&bootstrap);
        // One record per batch, several batches in flight: the too-large one sits between
        // others of the same partition.
        config.batch_size = 1;
        config.linger = Duration::from_millis(50);
        let producer = Producer::connect(config).await.expect("producer");
        let mut deliveries = Vec::new();
        for i in 0..8 {
            let value = if i == 3 {
                Bytes::from(vec![b'x'; 5000])
            } else {
                Bytes::from(format!("small-{i}"))
            };
            deliveries.push(
                producer
                    .send("strict", None, Some(value), Some(0))
                    .await
                    .unwrap(),
            );
        }
        producer.flush().await;
        let mut offsets = Vec::new();
        for (i, d) in deliveries.into_iter().enumerate() {
            match d.await.unwrap() {
                Ok(meta) => offsets.push(meta.offset),
                Err(e) => {
                    assert_eq!(i, 3, "only the large record fails: {e}");
                    assert_eq!(e.code(), Some(10), "MESSAGE_TOO_LARGE: {e}");
                }
            }
        }
        assert_eq!(
            offsets,
            (0..7).collect::<Vec<i64>>(),
            "the rest in order, no gap"
        );
    })
    .expect("client executor");
    let stored = read_back(&broker.bootstrap, "strict", 1, 7);
    let values: Vec<String> = stored
        .values()
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .collect();
    let expected: Vec<String> = [0, 1, 2, 4, 5, 6, 7]
        .iter()
        .map(|i| format!("small-{i}"))
        .collect();
    assert_eq!(values, expected);
}

#[test]
fn with_linger_zero_records_wait_in_one_batch_while_the_window_is_full() {
    const HELD: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, broker) = behind_proxy(&dir, &[("metrics.listener", "127.0.0.1:0")]);
    let metrics = broker.metrics.clone().expect("metrics address");
    let produces = move || {
        common::metrics::total(
            &common::metrics::scrape(&metrics),
            "shardlog_requests_total",
            &[("api", "Produce")],
        )
    };
    let address = proxy.address.clone();
    let proxy = std::sync::Arc::new(proxy);
    let holder = proxy.clone();
    let count = produces.clone();
    let (before, offsets) = blocking::run(move || async move {
        let mut config = ProducerConfig::new(&address);
        config.linger = Duration::ZERO;
        config.max_in_flight = 1;
        let producer = Producer::connect(config).await.expect("producer");
        let send =
            |i: usize| producer.send("held", None, Some(Bytes::from(format!("r{i}"))), Some(0));
        // Connected, metadata known, and the partition's sender idle.
        send(0)
            .await
            .expect("queued")
            .await
            .unwrap()
            .expect("delivered");
        let before = count();
        holder.hold_answers();
        let mut pending = vec![send(1).await.expect("queued")];
        // Each record arrives after the one before it was due (linger 0), while the only
        // slot on the wire waits for its answer.
        for i in 2..HELD + 2 {
            shardlog::runtime::sleep(Duration::from_millis(2)).await;
            pending.push(send(i).await.expect("queued"));
        }
        holder.release();
        producer.flush().await;
        let mut offsets = Vec::new();
        for delivery in pending {
            offsets.push(delivery.await.unwrap().expect("delivered").offset);
        }
        (before, offsets)
    })
    .expect("client executor");
    let expected: Vec<i64> = (1..HELD as i64 + 2).collect();
    assert_eq!(offsets, expected, "every record once, in order");
    let requests = produces() - before;
    // The first record's request, then one (at most two, if a record raced the release) for
    // all the records that waited; one request per record without the coalescing.
    assert!(
        (2.0..=3.0).contains(&requests),
        "{requests} produce requests for {} records",
        HELD + 1
    );
}

/// KIP-360: a batch whose request was lost (it never reached the broker, and no answer came
/// before the delivery timeout) leaves its sequences in doubt. The producer bumps its epoch, so
/// the next batches start again at sequence 0 and are written, instead of failing for ever
/// with OUT_OF_ORDER_SEQUENCE_NUMBER on the gap.
#[test]
fn a_lost_request_past_the_delivery_timeout_bumps_the_epoch_and_later_batches_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, broker) = behind_proxy(&dir, &[]);
    let address = proxy.address.clone();
    let proxy = std::sync::Arc::new(proxy);
    let faults = proxy.clone();
    let outcomes = blocking::run(move || async move {
        let mut config = ProducerConfig::new(&address);
        config.linger = Duration::from_millis(1);
        config.delivery_timeout = Duration::from_millis(300);
        let producer = Producer::connect(config).await.expect("producer");
        let send = |value: &'static str| {
            let producer = producer.clone();
            async move {
                let delivery = producer
                    .send("bumped", None, Some(Bytes::from(value)), Some(0))
                    .await
                    .expect("queued");
                producer.flush().await;
                delivery.await.expect("an outcome")
            }
        };
        let first = send("first").await;
        // The next request is held in the network, and lost when the connection is cut after
        // the delivery timeout.
        faults.hold_requests();
        let cutter = faults.clone();
        let cut = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            cutter.cut();
            cutter.release_requests();
        });
        let lost = send("lost").await;
        cut.join().unwrap();
        let later: Vec<_> = futures::future::join_all(["after-1", "after-2"].map(send)).await;
        (first, lost, later)
    })
    .expect("client executor");
    let (first, lost, later) = outcomes;
    first.expect("the first record");
    assert!(lost.is_err(), "the lost record fails: {lost:?}");
    for outcome in later {
        outcome.expect("records after the bump are written");
    }
    let stored = read_back(&broker.bootstrap, "bumped", 1, 3);
    let values: Vec<Vec<u8>> = stored.values().map(|(_, v)| v.clone()).collect();
    assert_eq!(values, [&b"first"[..], b"after-1", b"after-2"]);
}

/// The producer puts the batches of every partition a broker leads into one Produce request
/// when they are ready together, as Java's sender does: 16 partitions flushed at once cost one
/// request, counted by the broker.
#[test]
fn batches_of_many_partitions_for_one_broker_share_one_produce_request() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[("metrics.listener", "127.0.0.1:0")],
    );
    let metrics = broker.metrics.clone().expect("metrics");
    let produces = move || {
        let page = common::metrics::scrape(&metrics);
        common::metrics::total(&page, "shardlog_requests_total", &[("api", "Produce")])
    };
    let bootstrap = broker.bootstrap.clone();
    let (before, after) = blocking::run(move || async move {
        Admin::connect(&bootstrap)
            .await
            .unwrap()
            .create_topic("wide", 16, 1, &[])
            .await
            .unwrap();
        let mut config = ProducerConfig::new(&bootstrap);
        // Nothing goes before the flush.
        config.linger = Duration::from_secs(30);
        let producer = Producer::connect(config).await.expect("producer");
        let mut deliveries = Vec::new();
        for partition in 0..16 {
            let value = Bytes::from(format!("p{partition}"));
            deliveries.push(
                producer
                    .send("wide", None, Some(value), Some(partition))
                    .await
                    .unwrap(),
            );
        }
        let before = produces();
        producer.flush().await;
        for delivery in deliveries {
            delivery.await.unwrap().expect("delivered");
        }
        (before, produces())
    })
    .expect("client executor");
    assert_eq!(after - before, 1.0, "one Produce request for 16 partitions");
    assert_eq!(read_back(&broker.bootstrap, "wide", 16, 16).len(), 16);
}

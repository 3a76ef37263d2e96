//! The Prometheus endpoint (`metrics.listener`) against a real broker: a produce and a fetch
//! show up in the request counts, bytes, sync histogram, cache and partition gauges; paths,
//! methods and garbage other than `GET /metrics` are refused without hurting the broker.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::metrics::{http, scrape, total};
use common::{shardlog, Broker};
use shardlog::client::blocking::{BlockingConsumer, BlockingProducer};
use shardlog::client::consumer::{ConsumerConfig, Offset};
use shardlog::client::producer::{ProducerConfig, ProducerRecord};

const TOPIC: &str = "metered";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 40;
const VALUE_BYTES: usize = 500;

fn start() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[("metrics.listener", "127.0.0.1:0")],
    );
    assert!(
        broker.metrics.is_some(),
        "the broker printed its metrics address"
    );
    (dir, broker)
}

#[test]
fn a_scrape_accounts_for_produce_and_fetch() {
    let (_dir, broker) = start();
    let metrics = broker.metrics.clone().expect("metrics address");
    let bootstrap = broker.bootstrap.as_str();
    let created = shardlog(
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            &PARTITIONS.to_string(),
        ],
        bootstrap,
    );
    assert!(created.status.success(), "{created:?}");

    let before = scrape(&metrics);
    assert_eq!(
        total(&before, "shardlog_partitions", &[]),
        f64::from(PARTITIONS),
        "{before}"
    );
    assert_eq!(total(&before, "shardlog_shard_up", &[]), 2.0);
    assert_eq!(total(&before, "shardlog_build_info", &[]), 1.0);

    // One acknowledged request per record: each send waits, so none share a request.
    let mut producer = BlockingProducer::connect(ProducerConfig::new(bootstrap)).expect("producer");
    for i in 0..RECORDS {
        producer
            .send_and_wait(ProducerRecord {
                topic: TOPIC.into(),
                partition: Some((i % PARTITIONS as usize) as i32),
                value: Some(Bytes::from(vec![b'v'; VALUE_BYTES])),
                ..Default::default()
            })
            .expect("acknowledged");
    }
    drop(producer);

    let mut consumer = BlockingConsumer::connect(ConsumerConfig::new(bootstrap)).expect("consumer");
    let partitions: Vec<(&str, i32)> = (0..PARTITIONS).map(|p| (TOPIC, p)).collect();
    consumer.assign(&partitions).expect("assign");
    for p in 0..PARTITIONS {
        consumer.seek(TOPIC, p, Offset::Beginning).expect("seek");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut consumed = 0;
    while consumed < RECORDS {
        assert!(Instant::now() < deadline, "consumed only {consumed}");
        consumed += consumer.poll().expect("poll").len();
    }
    drop(consumer);

    let after = scrape(&metrics);
    let grew = |name: &str, labels: &[(&str, &str)]| {
        total(&after, name, labels) - total(&before, name, labels)
    };
    let produce = [("api", "Produce")];
    let fetch = [("api", "Fetch")];
    assert!(
        grew("shardlog_requests_total", &produce) >= RECORDS as f64,
        "{after}"
    );
    assert!(grew("shardlog_requests_total", &fetch) >= 1.0, "{after}");
    assert!(
        grew("shardlog_request_latency_seconds_count", &produce) >= RECORDS as f64,
        "a latency for every produce answered"
    );
    assert!(grew("shardlog_request_latency_seconds_sum", &produce) > 0.0);
    assert!(grew("shardlog_request_latency_seconds_count", &fetch) >= 1.0);
    assert_eq!(
        total(
            &after,
            "shardlog_request_latency_seconds_bucket",
            &[("api", "Produce"), ("le", "+Inf")]
        ),
        total(&after, "shardlog_request_latency_seconds_count", &produce)
    );
    assert_eq!(grew("shardlog_request_errors_total", &produce), 0.0);

    let value_bytes = (RECORDS * VALUE_BYTES) as f64;
    assert_eq!(grew("shardlog_produce_records_total", &[]), RECORDS as f64);
    let produce_bytes = grew("shardlog_produce_bytes_total", &[]);
    assert!(
        produce_bytes >= value_bytes,
        "{produce_bytes} < {value_bytes}"
    );
    assert!(
        grew("shardlog_fetch_bytes_total", &[]) >= produce_bytes,
        "everything produced was fetched once at least"
    );
    assert!(grew("shardlog_bytes_received_total", &[]) >= value_bytes);
    assert!(grew("shardlog_bytes_sent_total", &[]) >= produce_bytes);

    // acks=all answers after a sync: every acknowledged produce needed one.
    assert!(grew("shardlog_log_sync_latency_seconds_count", &[]) >= 1.0);
    assert!(grew("shardlog_log_sync_bytes_sum", &[]) >= value_bytes);
    assert!(grew("shardlog_batch_cache_hits_total", &[]) >= 1.0);
    assert!(total(&after, "shardlog_batch_cache_bytes", &[]) >= produce_bytes);
    assert_eq!(
        total(&after, "shardlog_partitions", &[]),
        f64::from(PARTITIONS)
    );
}

#[test]
fn the_endpoint_refuses_everything_but_a_scrape_and_the_broker_carries_on() {
    let (_dir, broker) = start();
    let metrics = broker.metrics.clone().expect("metrics address");

    // A connection that never sends anything must not hold up the next scrape.
    let idle = TcpStream::connect(&metrics).expect("idle connection");
    let started = Instant::now();
    scrape(&metrics);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "an idle connection delayed a scrape"
    );

    let status = |request: &[u8]| http(&metrics, request).map(|(status, _)| status);
    assert_eq!(status(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), Some(404));
    assert_eq!(
        status(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(405)
    );
    assert_eq!(status(b"garbage\r\n\r\n"), Some(400));
    assert_eq!(status(b"GET /metrics HTTP/9\r\n\r\n"), Some(400));
    // A Kafka frame sent to the wrong port.
    assert!(matches!(
        status(b"\x00\x00\x00\x0c\x00\x12\x00\x03\x00\x00\x00\x01\x00\x00"),
        Some(400) | None
    ));
    // An oversized head: refused, or reset because the broker stopped reading it.
    let mut oversized = b"GET /metrics HTTP/1.1\r\n".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 64 << 10));
    assert!(matches!(status(&oversized), Some(431) | None));
    drop(idle);

    // The broker still serves Kafka and the endpoint still serves scrapes.
    let listed = shardlog(&["topic", "list"], &broker.bootstrap);
    assert!(listed.status.success(), "{listed:?}");
    let text = scrape(&metrics);
    assert!(total(&text, "shardlog_requests_total", &[("api", "Metadata")]) >= 1.0);
}

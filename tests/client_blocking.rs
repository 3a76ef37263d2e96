//! The blocking facade from a plain program (no async anywhere in the test): a producer sends
//! and waits, a consumer assigns, seeks and polls, a group member commits, and the next member
//! of the group starts where the first one committed.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Broker;
use shardlog::client::blocking::{BlockingConsumer, BlockingProducer};
use shardlog::client::consumer::{ConsumerConfig, ConsumerRecord, Offset};
use shardlog::client::group::GroupConfig;
use shardlog::client::producer::{ProducerConfig, ProducerRecord};

fn record(topic: &str, i: usize) -> ProducerRecord {
    ProducerRecord {
        topic: topic.into(),
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(format!("value-{i}"))),
        headers: vec![("n".into(), Some(Bytes::from(i.to_string())))],
        ..Default::default()
    }
}

fn poll_until(consumer: &mut BlockingConsumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records",
            records.len()
        );
        records.extend(consumer.poll().expect("poll"));
    }
    records
}

#[test]
fn plain_programs_produce_consume_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[
            ("num.partitions", "3"),
            ("group.initial.rebalance.delay.ms", "0"),
        ],
    );
    let b = broker.bootstrap.as_str();

    let mut producer = BlockingProducer::connect(ProducerConfig::new(b)).expect("producer");
    let first = producer
        .send_and_wait(record("plain", 0))
        .expect("acknowledged");
    assert_eq!(first.offset, 0);
    let handles: Vec<_> = (1..100)
        .map(|i| producer.send(record("plain", i)).expect("queued"))
        .collect();
    producer.flush().expect("flush");
    let mut placed = BTreeSet::new();
    for handle in handles {
        let meta = handle.wait().expect("acknowledged");
        assert!(
            placed.insert((meta.partition, meta.offset)),
            "{meta:?} twice"
        );
    }
    drop(producer);

    let mut consumer = BlockingConsumer::connect(ConsumerConfig::new(b)).expect("consumer");
    consumer
        .assign(&[("plain", 0), ("plain", 1), ("plain", 2)])
        .unwrap();
    for p in 0..3 {
        consumer.seek("plain", p, Offset::Beginning).unwrap();
    }
    let records = poll_until(&mut consumer, 100);
    let values: BTreeSet<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
        .collect();
    assert_eq!(values.len(), 100);
    assert!(records.iter().all(|r| r.headers.len() == 1));
    assert!(consumer.commit().is_err(), "commit needs a group");
    drop(consumer);

    // A group member reads everything and commits; the next one finds nothing left, then the
    // new records only.
    let mut config = ConsumerConfig::new(b);
    config.auto_offset_reset = Offset::Beginning;
    let mut member = BlockingConsumer::subscribe(
        config.clone(),
        GroupConfig::new("plain-readers"),
        &["plain"],
    )
    .expect("member");
    assert!(member.assign(&[("plain", 0)]).is_err(), "the group assigns");
    assert_eq!(poll_until(&mut member, 100).len(), 100);
    member.commit().expect("commit");
    drop(member);
    let mut producer = BlockingProducer::connect(ProducerConfig::new(b)).expect("producer");
    producer
        .send_and_wait(record("plain", 100))
        .expect("acknowledged");
    drop(producer);
    let mut next =
        BlockingConsumer::subscribe(config, GroupConfig::new("plain-readers"), &["plain"])
            .expect("member");
    let records = poll_until(&mut next, 1);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].value.as_deref(), Some(&b"value-100"[..]));
}

#[test]
fn connecting_to_nothing_fails_at_once() {
    let error = BlockingProducer::connect(ProducerConfig::new("127.0.0.1:1"))
        .err()
        .expect("no broker there");
    assert!(error.is_retriable(), "{error}");
    assert!(BlockingConsumer::connect(ConsumerConfig::new("127.0.0.1:1")).is_err());
}

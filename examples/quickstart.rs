//! The Rust client from a plain program: produce a few keyed records, read them back as a
//! member of a consumer group, commit, and leave.
//!
//!   cargo run --release -- broker                      (in one terminal)
//!   cargo run --example quickstart [BOOTSTRAP] [TOPIC]  (in another)

use std::time::{Duration, Instant};

use bytes::Bytes;
use shardlog::client::blocking::{BlockingConsumer, BlockingProducer};
use shardlog::client::consumer::{ConsumerConfig, Offset};
use shardlog::client::group::GroupConfig;
use shardlog::client::producer::{ProducerConfig, ProducerRecord};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "quickstart".into());

    // Idempotent, acks=all: each acknowledged record is synced on the broker.
    let mut producer = BlockingProducer::connect(ProducerConfig::new(&bootstrap))?;
    let mut waiting = Vec::new();
    for (key, value) in [
        ("alice", "signed up"),
        ("bob", "logged in"),
        ("alice", "paid"),
    ] {
        waiting.push(producer.send(ProducerRecord {
            topic: topic.as_str().into(),
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            ..Default::default()
        })?);
    }
    for delivery in waiting {
        let landed = delivery.wait()?;
        println!(
            "produced to partition {} at offset {}",
            landed.partition, landed.offset
        );
    }
    drop(producer);

    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = Offset::Beginning;
    let mut consumer =
        BlockingConsumer::subscribe(config, GroupConfig::new("quickstart-readers"), &[&topic])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    while read < 3 && Instant::now() < deadline {
        for record in consumer.poll()? {
            read += 1;
            println!(
                "{}-{}@{}: {} = {}",
                record.topic,
                record.partition,
                record.offset,
                String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()),
            );
        }
    }
    consumer.commit()?;
    Ok(())
}

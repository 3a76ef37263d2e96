//! Our consumer keeps the next fetch in flight while the application works on what `poll`
//! returned; what that fetch brings back must not outlive a seek, a pause or a new
//! assignment made meanwhile.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Broker;
use shardlog::client::admin::Admin;
use shardlog::client::blocking;
use shardlog::client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset};
use shardlog::client::producer::{Producer, ProducerConfig};

const BATCHES: i64 = 10;
const PER_BATCH: i64 = 10;

/// The next non-empty poll.
async fn next_records(consumer: &mut Consumer) -> Vec<ConsumerRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "no records");
        let records = consumer.poll().await.expect("poll");
        if !records.is_empty() {
            return records;
        }
    }
}

fn offsets(records: &[ConsumerRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}

#[test]
fn data_in_flight_is_dropped_after_a_seek_a_pause_or_a_new_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin.create_topic("ahead", 1, 1, &[]).await.unwrap();
        let producer = Producer::connect(ProducerConfig::new(&bootstrap))
            .await
            .unwrap();
        for batch in 0..BATCHES {
            let mut deliveries = Vec::new();
            for i in 0..PER_BATCH {
                let value = Bytes::from(format!("{batch}-{i}"));
                deliveries.push(
                    producer
                        .send("ahead", None, Some(value), Some(0))
                        .await
                        .unwrap(),
                );
            }
            producer.flush().await;
            for d in deliveries {
                d.await.unwrap().unwrap();
            }
        }

        let mut config = ConsumerConfig::new(&bootstrap);
        config.auto_offset_reset = Offset::Beginning;
        config.max_wait = Duration::from_millis(50);
        // One batch per fetch, so the fetch in flight holds the next batch.
        config.partition_max_bytes = 1;
        let mut consumer = Consumer::connect(config).await.unwrap();
        consumer.assign(&[("ahead", 0)]);
        let first = next_records(&mut consumer).await;
        assert_eq!(offsets(&first), (0..PER_BATCH).collect::<Vec<_>>());
        assert_eq!(consumer.position("ahead", 0), Some(PER_BATCH));

        // A seek back: the batch in flight (from offset 10) is not returned.
        consumer.seek("ahead", 0, Offset::At(3));
        let again = next_records(&mut consumer).await;
        assert_eq!(again[0].offset, 3);
        assert_eq!(offsets(&again), (3..PER_BATCH).collect::<Vec<_>>());

        // Paused with a fetch in flight: nothing from it, then resume where it stood.
        consumer.pause("ahead", 0);
        for _ in 0..3 {
            assert!(consumer.poll().await.unwrap().is_empty());
        }
        consumer.resume("ahead", 0);
        let resumed = next_records(&mut consumer).await;
        assert_eq!(resumed[0].offset, PER_BATCH);

        // Unassigned and assigned again: the position is forgotten, the reset policy rules.
        consumer.assign(&[]);
        assert!(consumer.poll().await.unwrap().is_empty());
        consumer.assign(&[("ahead", 0)]);
        let from_start = next_records(&mut consumer).await;
        assert_eq!(from_start[0].offset, 0);

        // Read on to the end: every record once, in order.
        let mut read = offsets(&from_start);
        while read.len() < (BATCHES * PER_BATCH) as usize {
            read.extend(offsets(&next_records(&mut consumer).await));
        }
        assert_eq!(read, (0..BATCHES * PER_BATCH).collect::<Vec<_>>());
    })
    .expect("client executor");
}

//! Our consumer reads what librdkafka produced, in every codec, with keys, values and headers
//! intact; seeks to an offset inside a batch, to the end and by timestamp; pauses a partition.

mod common;

use std::time::Duration;

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shardlog::client::blocking;
use shardlog::client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset};

const PER_PARTITION: usize = 100;

/// librdkafka writes `PER_PARTITION` records to each of partitions 0 and 1 with `codec`,
/// timestamps 1_000_000 + i.
fn produce_with_librdkafka(bootstrap: &str, topic: &str, codec: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    futures::executor::block_on(async {
        let mut pending = Vec::new();
        for partition in 0..2 {
            for i in 0..PER_PARTITION {
                let key = format!("k{partition}-{i}");
                let value = format!("v{partition}-{i}-{}", "z".repeat(i % 40));
                let headers = OwnedHeaders::new().insert(Header {
                    key: "n",
                    value: Some(&format!("{i}")),
                });
                let record = FutureRecord::to(topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&value)
                    .timestamp(1_000_000 + i as i64)
                    .headers(headers);
                pending.push(
                    producer
                        .send_result(record)
                        .map_err(|(e, _)| e)
                        .expect("queue"),
                );
            }
        }
        for delivery in pending {
            delivery.await.expect("report").expect("delivered");
        }
    });
}

async fn poll_until(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "got {} of {count}",
            out.len()
        );
        out.extend(consumer.poll().await.expect("poll"));
    }
    out
}

#[test]
fn reads_librdkafka_batches_in_every_codec_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[("num.partitions", "2")]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("from-librdkafka-{codec}");
        produce_with_librdkafka(&broker.bootstrap, &topic, codec);
        let bootstrap = broker.bootstrap.clone();
        blocking::run(move || async move {
            let mut config = ConsumerConfig::new(&bootstrap);
            config.auto_offset_reset = Offset::Beginning;
            config.max_wait = Duration::from_millis(100);
            let mut consumer = Consumer::connect(config).await.expect("consumer");
            consumer.assign(&[(topic.as_str(), 0), (topic.as_str(), 1)]);
            let records = poll_until(&mut consumer, 2 * PER_PARTITION).await;
            assert_eq!(records.len(), 2 * PER_PARTITION, "{codec}");
            for r in &records {
                let i = r.offset as usize;
                let p = r.partition;
                assert_eq!(
                    r.key.as_deref(),
                    Some(format!("k{p}-{i}").as_bytes()),
                    "{codec}"
                );
                let value = format!("v{p}-{i}-{}", "z".repeat(i % 40));
                assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "{codec}");
                assert_eq!(r.timestamp, 1_000_000 + i as i64);
                assert_eq!(r.headers.len(), 1);
                assert_eq!(r.headers[0].1.as_deref(), Some(format!("{i}").as_bytes()));
            }

            // Inside a batch: the records before the position are skipped.
            consumer.seek(&topic, 0, Offset::At(37));
            consumer.pause(&topic, 1);
            let next = poll_until(&mut consumer, 1).await;
            assert_eq!((next[0].partition, next[0].offset), (0, 37), "{codec}");
            assert!(
                next.iter().all(|r| r.partition == 0),
                "partition 1 is paused"
            );
            consumer.resume(&topic, 1);

            // By timestamp, and to the end.
            consumer.seek(&topic, 1, Offset::Timestamp(1_000_000 + 60));
            consumer.seek(&topic, 0, Offset::End);
            let after = poll_until(&mut consumer, 1).await;
            assert_eq!((after[0].partition, after[0].offset), (1, 60), "{codec}");
            assert_eq!(consumer.position(&topic, 0), Some(PER_PARTITION as i64));
        })
        .expect("client executor");
    }
}

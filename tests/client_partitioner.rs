//! Our partitioner against librdkafka's `murmur2_random` (Kafka's Java default for keyed
//! records): for the same keys on the same topic, both pick the same partition.

mod common;

use std::time::Duration;

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use shardlog::client::partitioner::partition_for_key;

#[test]
fn keyed_records_land_where_librdkafka_murmur2_puts_them() {
    const PARTITIONS: i32 = 12;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[("num.partitions", "12")]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let keys: Vec<Vec<u8>> = (0..300)
        .map(|i| match i % 3 {
            0 => format!("user-{i}").into_bytes(),
            1 => (0..(i % 17) as u8).map(|b| b.wrapping_mul(37)).collect(),
            _ => format!("{i:x}-{}", "k".repeat(i % 9)).into_bytes(),
        })
        .collect();
    futures::executor::block_on(async {
        let mut pending = Vec::new();
        for key in &keys {
            let record = FutureRecord::to("partitioned").key(key).payload("v");
            pending.push(producer.send(record, Duration::from_secs(30)));
        }
        for (key, delivery) in keys.iter().zip(futures::future::join_all(pending).await) {
            let delivered = delivery.expect("delivered");
            assert_eq!(
                delivered.partition,
                partition_for_key(key, PARTITIONS),
                "key {key:?}"
            );
        }
    });
}

//! Stopping a broker, many times over: idle, just started, and under produce load, with one or
//! two shards. Every stop on SIGTERM ends cleanly (status 0) within a few seconds; a second
//! signal ends the process at once. A stop that hangs fails with every thread's stack.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};

/// What "a few seconds" means for one stop: an idle broker needs a fraction of it.
const STOP_LIMIT: Duration = Duration::from_secs(5);

fn start(dir: &std::path::Path, shards: &str) -> Broker {
    Broker::start(dir, &[("num.shards", shards)])
}

#[test]
fn idle_brokers_stop_promptly_hundreds_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut slowest = Duration::ZERO;
    for round in 0..200 {
        let shards = if round % 2 == 0 { "2" } else { "1" };
        let mut broker = start(&dir.path().join(format!("data-{round}")), shards);
        // Some rounds stop at once, others after a topic change reached every shard.
        if round % 3 == 1 {
            let mut client = common::raw::Client::connect(&broker.bootstrap);
            common::raw::create_topic_with_partitions(&mut client, "idle", 4);
        }
        let (status, took) = broker.stop_within(libc::SIGTERM, STOP_LIMIT);
        assert!(
            status.success(),
            "round {round}: {status:?}\n{}",
            broker.log()
        );
        slowest = slowest.max(took);
    }
    eprintln!("slowest idle stop: {slowest:?}");
}

#[test]
fn brokers_under_produce_load_stop_promptly() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..30 {
        let shards = if round % 2 == 0 { "2" } else { "1" };
        let mut broker = start(&dir.path().join("data"), shards);
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("linger.ms", "1")
            .set("message.timeout.ms", "5000")
            .set("reconnect.backoff.max.ms", "100")
            .create()
            .expect("producer");
        let running = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let load = {
            let (running, sent) = (running.clone(), sent.clone());
            std::thread::spawn(move || {
                let value = vec![b'x'; 512];
                while running.load(Ordering::Relaxed) {
                    let key = format!("k{}", sent.load(Ordering::Relaxed) % 64);
                    let record = BaseRecord::to("loaded").key(&key).payload(&value);
                    if producer.send(record).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        producer.poll(Duration::from_millis(1));
                    }
                }
                producer
            })
        };
        // Stop once the load is really flowing.
        common::eventually(Duration::from_secs(30), "produce load", || {
            (sent.load(Ordering::Relaxed) > 2_000).then_some(())
        });
        let (status, _) = broker.stop_within(libc::SIGTERM, STOP_LIMIT);
        running.store(false, Ordering::Relaxed);
        drop(load.join().unwrap());
        assert!(
            status.success(),
            "round {round}: {status:?}\n{}",
            broker.log()
        );
    }
}

#[test]
fn a_second_signal_ends_the_process_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut broker = start(&dir.path().join("data"), "2");
        broker.signal(signal);
        let (status, _) = broker.stop_within(signal, STOP_LIMIT);
        // Either the clean stop finished before the second signal arrived, or the second one
        // ended the process with 128 + its number.
        let code = status.code();
        assert!(
            code == Some(0) || code == Some(128 + signal),
            "{status:?}\n{}",
            broker.log()
        );
    }
}

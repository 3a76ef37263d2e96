//! Consumer-group and compaction measurements against a running broker, with librdkafka.
//! Driven by `perf/groups-and-compaction.sh`, which starts the broker and stores the results.
//!
//!   group_bench rebalance BOOTSTRAP           8 consumers on 64 partitions: time to a full
//!                                             assignment, then for each of 5 rounds of one
//!                                             member leaving and another joining
//!   group_bench commit BOOTSTRAP              synchronous OffsetCommit latency and rate, one
//!                                             partition and 64 partitions per commit, against
//!                                             synchronous acks=all produce of 100 B records
//!   group_bench fill BOOTSTRAP TOPIC MB       writes MB of 1 KiB updates over 1000 keys
//!   group_bench latency BOOTSTRAP TOPIC SECS  acks=all produce latency, one record in flight
//!   group_bench alter BOOTSTRAP TOPIC KEY=VALUE...   (replaces all of the topic's overrides)

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;

const MEMBERS: usize = 8;
const PARTITIONS: i32 = 64;

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin")
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results =
        futures::executor::block_on(admin(bootstrap).create_topics([&topic], &AdminOptions::new()))
            .expect("create topic");
    for result in results {
        if let Err((name, e)) = result {
            if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                panic!("cannot create {name}: {e}");
            }
        }
    }
}

fn percentiles(label: &str, h: &Histogram<u64>) {
    println!(
        "{label}: n={} p50={:.3} ms p99={:.3} ms p99.9={:.3} ms max={:.3} ms",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3
    );
}

/// A member polling in its own thread and publishing its assignment.
struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, slot: usize, board: Arc<Mutex<Vec<BTreeSet<i32>>>>) -> Member {
        let stop = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "rebalance-bench")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "100")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&["rebalance-bench"]).expect("subscribe");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(10));
                let mine: BTreeSet<i32> = consumer
                    .assignment()
                    .map(|l| l.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                board.lock().unwrap()[slot] = mine;
            }
            board.lock().unwrap()[slot].clear();
            // Dropping the consumer sends LeaveGroup.
        });
        Member {
            stop,
            thread: Some(thread),
        }
    }

    fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn balanced(board: &Mutex<Vec<BTreeSet<i32>>>) -> bool {
    let board = board.lock().unwrap();
    let total: usize = board.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = board.iter().flatten().copied().collect();
    board.iter().all(|s| !s.is_empty()) && total == PARTITIONS as usize && union.len() == total
}

fn wait_balanced(board: &Mutex<Vec<BTreeSet<i32>>>) -> Duration {
    let started = Instant::now();
    while !balanced(board) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no balanced assignment"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

fn rebalance(bootstrap: &str) {
    create_topic(bootstrap, "rebalance-bench", PARTITIONS, &[]);
    let board = Arc::new(Mutex::new(vec![BTreeSet::new(); MEMBERS]));
    let started = Instant::now();
    let mut members: Vec<Member> = (0..MEMBERS)
        .map(|slot| Member::start(bootstrap, slot, board.clone()))
        .collect();
    wait_balanced(&board);
    println!(
        "initial: {MEMBERS} members on {PARTITIONS} partitions balanced {:.1} ms after the first subscribe",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut rounds = Vec::new();
    for round in 0..5 {
        let slot = round % MEMBERS;
        members.remove(slot).leave();
        let started = Instant::now();
        members.insert(slot, Member::start(bootstrap, slot, board.clone()));
        wait_balanced(&board);
        let took = started.elapsed();
        rounds.push(took);
        println!(
            "round {round}: one member left and one joined; balanced again after {:.1} ms",
            took.as_secs_f64() * 1e3
        );
    }
    rounds.sort();
    println!(
        "rebalance (leave + join, {} rounds): median {:.1} ms, max {:.1} ms (heartbeat.interval.ms=100)",
        rounds.len(),
        rounds[rounds.len() / 2].as_secs_f64() * 1e3,
        rounds[rounds.len() - 1].as_secs_f64() * 1e3
    );
    for m in members {
        m.leave();
    }
}

/// acks=all, no linger: for one-at-a-time latency measurements.
fn synchronous_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

fn commit(bootstrap: &str) {
    const ROUNDS: usize = 3000;
    create_topic(bootstrap, "commit-bench", PARTITIONS, &[]);
    let producer = synchronous_producer(bootstrap);
    let value = vec![b'x'; 100];
    let mut produce = Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    for i in 0..ROUNDS {
        let t = Instant::now();
        let record = FutureRecord::<(), _>::to("commit-bench")
            .partition((i % PARTITIONS as usize) as i32)
            .payload(&value);
        futures::executor::block_on(producer.send(record, Duration::from_secs(10)))
            .expect("produce");
        produce.record(t.elapsed().as_micros() as u64).unwrap();
    }
    let produce_rate = ROUNDS as f64 / started.elapsed().as_secs_f64();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "commit-bench")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut results = Vec::new();
    for per_commit in [1, PARTITIONS] {
        let mut h = Histogram::<u64>::new(3).unwrap();
        let started = Instant::now();
        for i in 0..ROUNDS {
            let mut list = TopicPartitionList::new();
            for p in 0..per_commit {
                list.add_partition_offset("commit-bench", p, rdkafka::Offset::Offset(i as i64))
                    .unwrap();
            }
            let t = Instant::now();
            consumer.commit(&list, CommitMode::Sync).expect("commit");
            h.record(t.elapsed().as_micros() as u64).unwrap();
        }
        let rate = ROUNDS as f64 / started.elapsed().as_secs_f64();
        results.push((per_commit, h, rate));
    }
    percentiles("baseline: produce acks=all, 100 B, one in flight", &produce);
    println!("baseline rate: {produce_rate:.0} produces/s");
    for (per_commit, h, rate) in &results {
        percentiles(
            &format!("OffsetCommit of {per_commit} partition(s), sync"),
            h,
        );
        println!(
            "commit rate: {rate:.0} commits/s = {:.0} offsets/s; p50 vs produce p50: {:.2}x",
            rate * *per_commit as f64,
            h.value_at_quantile(0.5) as f64 / produce.value_at_quantile(0.5) as f64
        );
    }
}

fn fill(bootstrap: &str, topic: &str, megabytes: usize) {
    create_topic(
        bootstrap,
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "16777216"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "9223372036854775807"),
        ],
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .create()
        .expect("producer");
    let value = vec![b'v'; 1024];
    let count = megabytes * 1024;
    let started = Instant::now();
    futures::executor::block_on(async {
        let mut pending = std::collections::VecDeque::new();
        for i in 0..count {
            let key = format!("key-{}", i % 1000);
            let mut record = FutureRecord::to(topic).key(&key).payload(&value);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push_back(delivery);
                        break;
                    }
                    Err((_, back)) => {
                        // The client's queue is full: wait for the oldest delivery.
                        record = back;
                        if let Some(d) = pending.pop_front() {
                            d.await.expect("delivery").expect("delivered");
                        }
                    }
                }
            }
            while pending.len() > 50_000 {
                pending
                    .pop_front()
                    .unwrap()
                    .await
                    .expect("delivery")
                    .expect("delivered");
            }
        }
        for d in pending {
            d.await.expect("delivery").expect("delivered");
        }
    });
    println!(
        "filled {topic}: {count} records of 1 KiB over 1000 keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn latency(bootstrap: &str, topic: &str, seconds: u64) {
    create_topic(bootstrap, topic, 1, &[]);
    let producer = synchronous_producer(bootstrap);
    let value = vec![b'x'; 1024];
    let mut h = Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    let wall = std::time::SystemTime::now();
    let mut slowest = (Duration::ZERO, Duration::ZERO);
    while started.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        let record = FutureRecord::<(), _>::to(topic).payload(&value);
        futures::executor::block_on(producer.send(record, Duration::from_secs(10)))
            .expect("produce");
        let took = t.elapsed();
        if took > slowest.1 {
            slowest = (t - started, took);
        }
        h.record(took.as_micros() as u64).unwrap();
    }
    percentiles(&format!("produce acks=all 1 KiB to {topic}"), &h);
    let at = wall + slowest.0;
    eprintln!(
        "slowest request started at {:?} (unix ms {}) and took {:?}",
        slowest.0,
        at.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        slowest.1
    );
}

/// AlterConfigs replaces every override of the topic with `settings`.
fn alter(bootstrap: &str, topic: &str, settings: &[&str]) {
    let mut config = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for setting in settings {
        let (key, value) = setting.split_once('=').expect("KEY=VALUE");
        config = config.set(key, value);
    }
    let results = futures::executor::block_on(
        admin(bootstrap).alter_configs([&config], &AdminOptions::new()),
    )
    .expect("alter configs");
    for r in results {
        r.expect("altered");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["rebalance", bootstrap] => rebalance(bootstrap),
        ["commit", bootstrap] => commit(bootstrap),
        ["fill", bootstrap, topic, mb] => fill(bootstrap, topic, mb.parse().expect("MB")),
        ["latency", bootstrap, topic, secs] => {
            latency(bootstrap, topic, secs.parse().expect("seconds"))
        }
        ["alter", bootstrap, topic, ref settings @ ..] if !settings.is_empty() => {
            alter(bootstrap, topic, settings)
        }
        _ => {
            eprintln!("usage: see the top of perf/group_bench.rs");
            std::process::exit(2);
        }
    }
}

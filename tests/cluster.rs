//! Several brokers as one cluster, each a separate process: the three-broker setup a new user
//! builds from the shipped config files, Metadata that agrees across brokers, consumer groups
//! spanning brokers, brokers and controllers killed and restarted, links between brokers cut
//! and healed, and the configuration mistakes a broker must refuse at start or at
//! registration (exit code 2).
//!
//! The network between brokers runs through the harness's link proxies
//! (`common::cluster`); clients (librdkafka through the `rdkafka` crate, and raw requests
//! where a test needs one broker's exact answer) connect to the brokers directly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::assigned_consumer;
use common::cluster::{
    create_topic, create_topic_retrying, free_port, metadata, overrides_as_arguments, poll,
    reserve_ports, BrokerProcess, Cluster, ClusterView, CLUSTER_START_TIMEOUT,
};
use futures::executor::block_on;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

/// How long a cluster may take to notice and get over a fault (fencing, an election).
const SETTLE: Duration = Duration::from_secs(30);
/// How long a consumer may take to read what it expects.
const CONSUME: Duration = Duration::from_secs(30);
/// How long a broker refusing its configuration may take to exit.
const REFUSAL: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------------------------------
// Clients.

fn producer(bootstrap: &str, idempotent: bool) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// Sends `records` (key, value) to `topic` in order and waits for every acknowledgement;
/// returns (partition, offset) of each.
fn produce_keyed(
    producer: &FutureProducer,
    topic: &str,
    records: &[(String, String)],
) -> Vec<(i32, i64)> {
    let pending: Vec<_> = records
        .iter()
        .map(|(key, value)| {
            producer
                .send_result(FutureRecord::to(topic).key(key).payload(value))
                .map_err(|(e, _)| e)
                .expect("queue a record")
        })
        .collect();
    pending
        .into_iter()
        .map(|delivery| {
            let delivery = block_on(delivery)
                .expect("delivery report")
                .map_err(|(e, _)| e)
                .expect("acknowledged");
            (delivery.partition, delivery.offset)
        })
        .collect()
}

/// Sends `count` records to each of `partitions` of `topic`; returns each record's value by
/// its (partition, offset).
fn produce_to_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    count: usize,
) -> BTreeMap<(i32, i64), String> {
    let producer = producer(bootstrap, false);
    let mut pending = Vec::new();
    for &partition in partitions {
        for i in 0..count {
            let value = format!("{topic}-{partition}-{i}");
            let delivery = producer
                .send_result(
                    FutureRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(&value),
                )
                .map_err(|(e, _)| e)
                .expect("queue a record");
            pending.push((value, delivery));
        }
    }
    pending
        .into_iter()
        .map(|(value, delivery)| {
            let delivery = block_on(delivery)
                .expect("delivery report")
                .map_err(|(e, _)| e)
                .unwrap_or_else(|e| panic!("{value} not acknowledged: {e}"));
            ((delivery.partition, delivery.offset), value)
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Received {
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: String,
}

fn received(message: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    Received {
        partition: message.partition(),
        offset: message.offset(),
        key: message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned()),
        value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
    }
}

/// Reads `partitions` of `topic` from the beginning until `count` records came.
fn consume_from_start(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    count: usize,
) -> Vec<Received> {
    let consumer = assigned_consumer(bootstrap, topic, partitions);
    let mut out = Vec::new();
    let deadline = Instant::now() + CONSUME;
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records of {topic} {partitions:?} through {bootstrap}",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            out.push(received(&message.expect("consume")));
        }
    }
    out
}

fn group_member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

fn assigned(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// Metadata.

/// Waits until Metadata from every broker in `from` is the same and lists `topic` with
/// `partitions` partitions, each with a live leader; returns that answer.
fn agreed_view(cluster: &Cluster, from: &[usize], topic: &str, partitions: usize) -> ClusterView {
    poll(
        SETTLE,
        &format!("brokers {from:?} to agree on {topic}"),
        || {
            let views: Vec<ClusterView> = from
                .iter()
                .map(|&id| cluster.metadata(id))
                .collect::<Result<_, _>>()
                .ok()?;
            for view in &views {
                view.check_consistent()
                    .unwrap_or_else(|e| panic!("an inconsistent Metadata answer: {e}\n{view:?}"));
            }
            let first = &views[0];
            let complete = first.topics.get(topic).is_some_and(|p| {
                p.len() == partitions && p.iter().all(|partition| partition.leader >= 0)
            });
            (complete && views.iter().all(|view| view == first)).then(|| first.clone())
        },
    )
}

// ------------------------------------------------------------------------------------------
// The shipped config files, as a new user runs them.

const SEED_PORTS: [u16; 3] = [9092, 9093, 9094];

/// Sets `key` as a text edit: the one uncommented line that sets any of `replaces` becomes
/// `line`; none is an error, so that the test notices when the shipped file changes shape.
fn edit_line(text: &str, replaces: &[&str], line: &str) -> String {
    let sets = |existing: &str| {
        let existing = existing.trim_start();
        !existing.starts_with('#')
            && replaces.iter().any(|key| {
                existing
                    .split_once('=')
                    .is_some_and(|(k, _)| k.trim() == *key)
            })
    };
    let matching = text.lines().filter(|existing| sets(existing)).count();
    assert_eq!(
        matching, 1,
        "config/server.properties should set one of {replaces:?} on exactly one line"
    );
    let mut out: Vec<&str> = Vec::new();
    for existing in text.lines() {
        out.push(if sets(existing) { line } else { existing });
    }
    out.join("\n") + "\n"
}

fn seed_broker(dir: &Path, index: usize, file: &Path) -> BrokerProcess {
    // Settings of this test machine, not of the cluster.
    let machine = [
        ("num.shards".to_string(), "2".to_string()),
        ("shard.pinning".to_string(), "false".to_string()),
        ("shard.io.memory.bytes".to_string(), "1048576".to_string()),
    ];
    let mut arguments = vec![file.display().to_string()];
    arguments.extend(overrides_as_arguments(&machine));
    BrokerProcess::spawn(dir, &arguments, &dir.join(format!("broker-{index}.log")))
}

#[test]
fn the_seed_three_broker_setup_from_the_shipped_config_files() {
    // Something answering on a port means another process has it; a port that only fails
    // to bind (connections of an earlier run lingering) is left for the brokers to report.
    for port in SEED_PORTS {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
            panic!(
                "port {port} is taken on this machine (something accepts connections on it); \
                 this test runs the shipped config files, which name ports 9092-9094, so it \
                 needs them free"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/server.properties"
    ))
    .expect("config/server.properties");
    let log_dirs = ["log.dirs", "log.dir"];
    let files = [
        edit_line(
            &shipped,
            &log_dirs,
            &format!("log.dir={}", dir.path().join("kafka-logs").display()),
        ),
        edit_line(
            &edit_line(
                &edit_line(&shipped, &["broker.id"], "broker.id=1"),
                &["listeners"],
                "listeners=PLAINTEXT://:9093",
            ),
            &log_dirs,
            &format!("log.dir={}", dir.path().join("kafka-logs-1").display()),
        ),
        edit_line(
            &edit_line(
                &edit_line(&shipped, &["broker.id"], "broker.id=2"),
                &["listeners"],
                "listeners=PLAINTEXT://:9094",
            ),
            &log_dirs,
            &format!("log.dir={}", dir.path().join("kafka-logs-2").display()),
        ),
    ];
    let names = [
        "server.properties",
        "server-1.properties",
        "server-2.properties",
    ];
    let mut brokers: Vec<BrokerProcess> = files
        .iter()
        .zip(names)
        .enumerate()
        .map(|(index, (text, name))| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write a config file");
            seed_broker(dir.path(), index, &path)
        })
        .collect();
    let logs = |brokers: &[BrokerProcess]| -> String {
        brokers
            .iter()
            .enumerate()
            .map(|(index, broker)| format!("\n---- broker {index} ----\n{}", broker.log()))
            .collect()
    };
    let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
    for index in 0..3 {
        if let Err(failure) = brokers[index].wait_listening(deadline) {
            panic!(
                "broker {index} ({}) did not start: {failure:?}{}",
                names[index],
                logs(&brokers)
            );
        }
    }
    let addresses: Vec<String> = SEED_PORTS
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();

    // One cluster of three, whichever broker is asked.
    let deadline = Instant::now() + SETTLE;
    let views: Vec<ClusterView> = addresses
        .iter()
        .map(|address| loop {
            let view = metadata(address);
            if let Ok(view) = &view {
                if view.brokers.len() == 3 {
                    break view.clone();
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "the three brokers started from the shipped config files did not form one \
                     cluster: Metadata from {address} says {view:?}{}",
                    logs(&brokers)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        })
        .collect();
    for (address, view) in addresses.iter().zip(&views) {
        for (id, port) in SEED_PORTS.iter().enumerate() {
            let (host, listed_port) = view
                .brokers
                .get(&(id as i32))
                .unwrap_or_else(|| panic!("{address} does not list broker {id}: {view:?}"));
            assert_eq!(
                (host.as_str(), *listed_port),
                ("localhost", *port),
                "broker {id} as {address} lists it"
            );
        }
        assert_eq!(
            view.controller, views[0].controller,
            "controller as {address} names it"
        );
    }
    assert!((0..3).contains(&views[0].controller), "{:?}", views[0]);

    // A topic created through broker 2 has leaders on all three brokers.
    let topic = "seed-topic";
    create_topic(&addresses[2], topic, 6).expect("create the topic through broker 2");
    let view = poll(SETTLE, "the topic's leaders", || {
        let view = metadata(&addresses[0]).ok()?;
        let leaders = view.leaders(topic)?;
        (leaders.len() == 6 && leaders.iter().all(|&leader| leader >= 0)).then_some(view)
    });
    let leaders: BTreeSet<i32> = view.leaders(topic).unwrap().into_iter().collect();
    assert_eq!(leaders, BTreeSet::from([0, 1, 2]), "{view:?}");

    // 600 keyed records through broker 0 with an idempotent producer...
    let records: Vec<(String, String)> = (0..600)
        .map(|i| (format!("key-{}", i % 50), i.to_string()))
        .collect();
    let positions = produce_keyed(&producer(&addresses[0], true), topic, &records);
    // ... read back through broker 1.
    let consumer = assigned_consumer(&addresses[1], topic, &[0, 1, 2, 3, 4, 5]);
    let mut got: Vec<Received> = Vec::new();
    let deadline = Instant::now() + CONSUME;
    while got.len() < records.len() {
        assert!(
            Instant::now() < deadline,
            "read {} of {} records through broker 1",
            got.len(),
            records.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            got.push(received(&message.expect("consume")));
        }
    }
    // Nothing written twice: the partitions hold exactly the 600.
    let mut stored = 0;
    for partition in 0..6 {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        stored += high - low;
    }
    assert_eq!(stored, 600, "records stored in the six partitions");
    // Every record exactly once, where its acknowledgement said.
    let by_value: BTreeMap<usize, &Received> = got
        .iter()
        .map(|r| (r.value.parse::<usize>().expect("a number"), r))
        .collect();
    assert_eq!(by_value.len(), 600, "each record once");
    for (i, (key, _)) in records.iter().enumerate() {
        let r = by_value[&i];
        assert_eq!(r.key.as_deref(), Some(key.as_str()), "record {i}");
        assert_eq!((r.partition, r.offset), positions[i], "record {i}");
    }
    // In order within each partition.
    let mut last: BTreeMap<i32, (i64, usize)> = BTreeMap::new();
    for r in &got {
        let i: usize = r.value.parse().unwrap();
        if let Some((offset, value)) = last.insert(r.partition, (r.offset, i)) {
            assert!(
                r.offset > offset && i > value,
                "partition {}: record {i} at {} after record {value} at {offset}",
                r.partition,
                r.offset
            );
        }
    }
    // One partition per key.
    let mut key_partition: BTreeMap<&str, i32> = BTreeMap::new();
    for r in &got {
        let key = r.key.as_deref().expect("keyed");
        let first = *key_partition.entry(key).or_insert(r.partition);
        assert_eq!(first, r.partition, "{key} landed in two partitions");
    }
    assert_eq!(key_partition.len(), 50);
    drop(consumer);
    for broker in &mut brokers {
        broker.kill();
    }
}

// ------------------------------------------------------------------------------------------
// A healthy cluster.

#[test]
fn metadata_from_every_broker_agrees() {
    let cluster = Cluster::start(3, &[]);
    create_topic_retrying(&cluster.bootstrap(1), "agreed", 6, SETTLE);
    let view = agreed_view(&cluster, &cluster.ids(), "agreed", 6);
    let expected: BTreeMap<i32, (String, u16)> = cluster
        .ids()
        .into_iter()
        .map(|id| (id as i32, ("127.0.0.1".to_string(), cluster.port(id))))
        .collect();
    assert_eq!(view.brokers, expected);
    assert!(view.brokers.contains_key(&view.controller), "{view:?}");
    let leaders: BTreeSet<i32> = view.leaders("agreed").unwrap().into_iter().collect();
    assert_eq!(leaders, BTreeSet::from([0, 1, 2]), "{view:?}");
    for partition in &view.topics["agreed"] {
        assert_eq!(partition.replicas, vec![partition.leader]);
    }
}

#[test]
fn a_consumer_group_spanning_three_brokers_splits_and_commits() {
    let cluster = Cluster::start(
        3,
        &[
            ("group.initial.rebalance.delay.ms", "0"),
            ("offsets.topic.num.partitions", "6"),
        ],
    );
    let topic = "shared";
    create_topic_retrying(&cluster.bootstrap(0), topic, 6, SETTLE);
    agreed_view(&cluster, &cluster.ids(), topic, 6);

    let a = group_member(&cluster.bootstrap(0), "spanning", topic);
    let b = group_member(&cluster.bootstrap(1), "spanning", topic);
    let mut seen = [BTreeSet::new(), BTreeSet::new()];
    let poll_both = |seen: &mut [BTreeSet<(i32, i64)>; 2]| {
        for (consumer, seen) in [&a, &b].into_iter().zip(seen.iter_mut()) {
            if let Some(message) = consumer.poll(Duration::from_millis(20)) {
                let message = message.expect("consume");
                let fresh = seen.insert((message.partition(), message.offset()));
                assert!(fresh, "a record delivered twice to one member");
            }
        }
    };
    let deadline = Instant::now() + SETTLE;
    loop {
        let (x, y) = (assigned(&a), assigned(&b));
        if !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && x.len() + y.len() == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "no split: {x:?} and {y:?}");
        poll_both(&mut seen);
    }
    let shares = [assigned(&a), assigned(&b)];
    let written = produce_to_partitions(&cluster.bootstrap_all(), topic, &[0, 1, 2, 3, 4, 5], 20);
    let deadline = Instant::now() + CONSUME;
    while seen[0].len() + seen[1].len() < written.len() {
        assert!(
            Instant::now() < deadline,
            "the members read {} and {} of {}",
            seen[0].len(),
            seen[1].len(),
            written.len()
        );
        poll_both(&mut seen);
    }
    assert_eq!(
        assigned(&a),
        shares[0],
        "a rebalance happened while reading"
    );
    assert_eq!(
        assigned(&b),
        shares[1],
        "a rebalance happened while reading"
    );
    for (member, (seen, share)) in seen.iter().zip(&shares).enumerate() {
        assert!(!seen.is_empty(), "member {member} read nothing");
        assert!(
            seen.iter().all(|(partition, _)| share.contains(partition)),
            "member {member} read outside its share {share:?}"
        );
    }
    assert!(seen[0].is_disjoint(&seen[1]));
    let everything: BTreeSet<(i32, i64)> = seen[0].union(&seen[1]).copied().collect();
    assert_eq!(everything, written.keys().copied().collect());

    a.commit_consumer_state(CommitMode::Sync)
        .expect("a commits");
    b.commit_consumer_state(CommitMode::Sync)
        .expect("b commits");
    drop(a);
    drop(b);

    // A third member, after both left, resumes at the commits: nothing old, then the new.
    let c = group_member(&cluster.bootstrap(2), "spanning", topic);
    let mut read = Vec::new();
    let deadline = Instant::now() + SETTLE;
    while assigned(&c).len() < 6 {
        assert!(Instant::now() < deadline, "c never got the six partitions");
        if let Some(message) = c.poll(Duration::from_millis(50)) {
            read.push(received(&message.expect("consume")));
        }
    }
    let committed = c
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    for element in committed.elements() {
        let end = written
            .keys()
            .filter(|(partition, _)| *partition == element.partition())
            .map(|(_, offset)| offset + 1)
            .max()
            .unwrap();
        assert_eq!(
            element.offset(),
            Offset::Offset(end),
            "committed offset of partition {}",
            element.partition()
        );
    }
    let new = produce_to_partitions(&cluster.bootstrap(2), topic, &[0, 1, 2, 3, 4, 5], 5);
    let deadline = Instant::now() + CONSUME;
    while read.len() < new.len() {
        assert!(
            Instant::now() < deadline,
            "c read {} of the {} new records",
            read.len(),
            new.len()
        );
        if let Some(message) = c.poll(Duration::from_millis(50)) {
            read.push(received(&message.expect("consume")));
        }
    }
    let read_positions: BTreeSet<(i32, i64)> =
        read.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(read.len(), read_positions.len(), "c read a record twice");
    assert_eq!(
        read_positions,
        new.keys().copied().collect::<BTreeSet<_>>(),
        "c should read the new records and nothing before its group's commits"
    );
}

// ------------------------------------------------------------------------------------------
// Brokers killed, restarted and cut off.

#[test]
fn with_one_broker_killed_the_others_keep_the_quorum() {
    let mut cluster = Cluster::start(3, &[]);
    let all = cluster.ids();
    create_topic_retrying(&cluster.bootstrap(0), "before", 6, SETTLE);
    let before = agreed_view(&cluster, &all, "before", 6);
    let on_two: Vec<i32> = (0..6)
        .filter(|&p| before.topics["before"][p as usize].leader == 2)
        .collect();
    assert!(!on_two.is_empty(), "broker 2 leads none of {before:?}");
    let written =
        produce_to_partitions(&cluster.bootstrap_all(), "before", &[0, 1, 2, 3, 4, 5], 20);

    cluster.kill(2);
    let killed = Instant::now();
    for survivor in [0, 1] {
        poll(
            SETTLE,
            &format!("broker {survivor} to drop broker 2"),
            || {
                let view = cluster.metadata(survivor).ok()?;
                view.check_consistent()
                    .unwrap_or_else(|e| panic!("broker {survivor}: {e}\n{view:?}"));
                let partitions = &view.topics["before"];
                let gone = !view.brokers.contains_key(&2)
                    && on_two.iter().all(|&p| partitions[p as usize].leader == -1);
                gone.then_some(())
            },
        );
    }
    eprintln!("broker 2 fenced after {} ms", killed.elapsed().as_millis());
    // From now on no answer points at broker 2.
    for survivor in [0, 1] {
        let view = cluster.metadata(survivor).expect("metadata");
        view.check_consistent().expect("consistent");
        assert!(!view.brokers.contains_key(&2), "{view:?}");
        for (p, partition) in view.topics["before"].iter().enumerate() {
            let expected = if on_two.contains(&(p as i32)) {
                -1
            } else {
                before.topics["before"][p].leader
            };
            assert_eq!(
                partition.leader, expected,
                "before-{p} as broker {survivor} says"
            );
        }
    }

    // The two left create, describe and take records.
    create_topic_retrying(&cluster.bootstrap(0), "during", 4, SETTLE);
    let during = agreed_view(&cluster, &[0, 1], "during", 4);
    for (p, partition) in during.topics["during"].iter().enumerate() {
        assert!(
            partition.leader == 0 || partition.leader == 1,
            "during-{p} placed on broker {}",
            partition.leader
        );
    }
    let bootstrap_live = format!("{},{}", cluster.bootstrap(0), cluster.bootstrap(1));
    let written_during = produce_to_partitions(&bootstrap_live, "during", &[0, 1, 2, 3], 10);
    assert_eq!(written_during.len(), 40);

    // Broker 2 comes back, leads its partitions again under a new epoch, and kept its data.
    cluster.restart(2);
    cluster.wait_for_brokers(&all, &all);
    let after = poll(SETTLE, "broker 2 to lead its partitions again", || {
        let view = agreed_view(&cluster, &all, "before", 6);
        on_two
            .iter()
            .all(|&p| view.topics["before"][p as usize].leader == 2)
            .then_some(view)
    });
    for &p in &on_two {
        let (old, new) = (
            before.topics["before"][p as usize].leader_epoch,
            after.topics["before"][p as usize].leader_epoch,
        );
        assert!(
            new > old,
            "before-{p}: leader epoch {old} before the kill, {new} after"
        );
    }
    assert!(
        after.topics.contains_key("during"),
        "broker 2 sees the topic made without it"
    );
    let kept: BTreeMap<(i32, i64), String> = written
        .iter()
        .filter(|((p, _), _)| on_two.contains(p))
        .map(|(position, value)| (*position, value.clone()))
        .collect();
    let read = consume_from_start(&cluster.bootstrap(0), "before", &on_two, kept.len());
    let read: BTreeMap<(i32, i64), String> = read
        .into_iter()
        .map(|r| ((r.partition, r.offset), r.value))
        .collect();
    assert_eq!(read, kept, "what broker 2 held before the kill");
}

#[test]
fn the_controller_killed_a_new_one_takes_over() {
    let mut cluster = Cluster::start(3, &[]);
    let controller = cluster.controller(&cluster.ids());
    let survivors: Vec<usize> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id as i32 != controller)
        .collect();
    cluster.kill(controller as usize);
    let killed = Instant::now();
    let (reporter, successor) = poll(SETTLE, "a new controller", || {
        survivors.iter().find_map(|&id| {
            let view = cluster.metadata(id).ok()?;
            (view.controller >= 0 && view.controller != controller).then_some((id, view.controller))
        })
    });
    let ms = killed.elapsed().as_millis();
    eprintln!("new controller after {ms} ms");
    assert!(
        survivors.contains(&(successor as usize)),
        "broker {reporter} names controller {successor}"
    );
    let successor = cluster.controller(&survivors);
    assert_ne!(successor, controller);
    let topic = "after-failover";
    create_topic(&cluster.bootstrap(survivors[0]), topic, 4)
        .expect("create a topic once a new controller is known");
    // The killed broker may not be fenced yet, so some partitions may be placed on it: the
    // survivors need only agree that the topic exists.
    let view = poll(SETTLE, "the survivors to list the new topic", || {
        let views: Vec<ClusterView> = survivors
            .iter()
            .map(|&id| cluster.metadata(id))
            .collect::<Result<_, _>>()
            .ok()?;
        views
            .iter()
            .all(|view| view.topics.get(topic).is_some_and(|p| p.len() == 4))
            .then(|| views[0].clone())
    });
    view.check_consistent().expect("consistent");
}

#[test]
fn a_controller_kill_loop_never_loses_an_acknowledged_topic() {
    let mut cluster = Cluster::start(3, &[]);
    let all = cluster.ids();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut controllers = Vec::new();
    for round in 0..5 {
        let controller = cluster.controller(&all) as usize;
        controllers.push(controller);
        let via = (controller + 1) % all.len();
        let name = format!("round-{round}");
        match create_topic(&cluster.bootstrap(via), &name, 2) {
            Ok(()) => acknowledged.push(name),
            Err(refused) => {
                eprintln!(
                    "round {round}: {name} through broker {via} not acknowledged: {refused:?}"
                )
            }
        }
        cluster.kill(controller);
        cluster.restart(controller);
        poll(
            SETTLE,
            &format!("every acknowledged topic after round {round}"),
            || {
                all.iter()
                    .all(|&id| {
                        cluster.metadata(id).is_ok_and(|view| {
                            acknowledged
                                .iter()
                                .all(|topic| view.topics.contains_key(topic))
                        })
                    })
                    .then_some(())
            },
        );
    }
    eprintln!("controllers killed: {controllers:?}; topics acknowledged: {acknowledged:?}");
    assert_eq!(
        acknowledged.len(),
        5,
        "a settled cluster should acknowledge every creation"
    );
}

#[test]
fn cut_links_isolate_a_broker_and_healing_brings_it_back() {
    let cluster = Cluster::start(3, &[]);
    cluster.isolate(2);
    create_topic_retrying(&cluster.bootstrap(0), "cut-off-1", 3, SETTLE);
    let isolated = Instant::now();
    for survivor in [0, 1] {
        poll(
            SETTLE,
            &format!("broker {survivor} to fence broker 2"),
            || {
                let view = cluster.metadata(survivor).ok()?;
                view.check_consistent()
                    .unwrap_or_else(|e| panic!("broker {survivor}: {e}\n{view:?}"));
                (!view.brokers.contains_key(&2)).then_some(())
            },
        );
    }
    eprintln!(
        "isolated broker fenced after {} ms",
        isolated.elapsed().as_millis()
    );
    create_topic_retrying(&cluster.bootstrap(1), "cut-off-2", 4, SETTLE);
    let view = agreed_view(&cluster, &[0, 1], "cut-off-2", 4);
    for partition in &view.topics["cut-off-2"] {
        assert!(partition.leader == 0 || partition.leader == 1, "{view:?}");
    }

    cluster.heal_all();
    let all = cluster.ids();
    cluster.wait_for_brokers(&all, &all);
    let view = agreed_view(&cluster, &all, "cut-off-1", 3);
    assert!(view.topics.contains_key("cut-off-2"), "{view:?}");
}

#[test]
fn a_paused_broker_is_fenced_and_comes_back_when_resumed() {
    let cluster = Cluster::start(3, &[]);
    let all = cluster.ids();
    cluster.pause(1);
    for survivor in [0, 2] {
        poll(
            SETTLE,
            &format!("broker {survivor} to fence the paused broker"),
            || {
                let view = cluster.metadata(survivor).ok()?;
                view.check_consistent()
                    .unwrap_or_else(|e| panic!("broker {survivor}: {e}\n{view:?}"));
                (!view.brokers.contains_key(&1)).then_some(())
            },
        );
    }
    create_topic_retrying(&cluster.bootstrap(2), "while-paused", 2, SETTLE);
    cluster.resume(1);
    cluster.wait_for_brokers(&all, &all);
    let view = agreed_view(&cluster, &all, "while-paused", 2);
    view.check_consistent().expect("consistent");
}

#[test]
fn a_stopped_broker_exits_0_and_leaves_the_cluster() {
    let mut cluster = Cluster::start(3, &[]);
    create_topic_retrying(&cluster.bootstrap(0), "led-everywhere", 6, SETTLE);
    agreed_view(&cluster, &cluster.ids(), "led-everywhere", 6);
    let status = cluster.stop(1);
    assert!(status.success(), "{status:?}; its log:\n{}", cluster.log(1));
    for survivor in [0, 2] {
        poll(
            SETTLE,
            &format!("broker {survivor} to drop the stopped broker"),
            || {
                let view = cluster.metadata(survivor).ok()?;
                view.check_consistent()
                    .unwrap_or_else(|e| panic!("broker {survivor}: {e}\n{view:?}"));
                (!view.brokers.contains_key(&1)).then_some(())
            },
        );
    }
    create_topic_retrying(&cluster.bootstrap(2), "after-the-stop", 4, SETTLE);
    let view = agreed_view(&cluster, &[0, 2], "after-the-stop", 4);
    for partition in &view.topics["after-the-stop"] {
        assert!(partition.leader == 0 || partition.leader == 2, "{view:?}");
    }
}

#[test]
fn a_broker_stopped_cleanly_starts_again_on_its_port_at_once() {
    let mut cluster = Cluster::start(3, &[]);
    let status = cluster.stop(1);
    assert!(status.success(), "{status:?}; its log:\n{}", cluster.log(1));
    cluster.restart(1);
    let all = cluster.ids();
    cluster.wait_for_brokers(&all, &all);
}

// ------------------------------------------------------------------------------------------
// Configurations a broker refuses.

/// A broker with the test settings plus `settings`, its files in `dir`.
fn lone_broker(dir: &Path, name: &str, settings: &[(String, String)]) -> BrokerProcess {
    let mut all: Vec<(String, String)> =
        vec![("log.dirs".to_string(), dir.join(name).display().to_string())];
    all.extend(
        common::cluster::TEST_MACHINE_SETTINGS
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string())),
    );
    all.extend(settings.iter().cloned());
    BrokerProcess::spawn(
        dir,
        &overrides_as_arguments(&all),
        &dir.join(format!("{name}.log")),
    )
}

fn setting(key: &str, value: impl ToString) -> (String, String) {
    (key.to_string(), value.to_string())
}

/// Waits for `broker` to exit; asserts the exit code 2 and a message containing one of
/// `names`, and that it never listened.
fn assert_refused(broker: &mut BrokerProcess, what: &str, names: &[&str]) {
    let status = broker.wait_exit(REFUSAL);
    let log = broker.log();
    let Some(status) = status else {
        panic!("{what}: the broker still runs after {REFUSAL:?}; its log:\n{log}");
    };
    assert!(
        !broker.has_listened(),
        "{what}: the broker listened first; its log:\n{log}"
    );
    assert_eq!(status.code(), Some(2), "{what}: its log:\n{log}");
    assert!(
        names.iter().any(|name| log.contains(name)),
        "{what}: the message should name {names:?}; its log:\n{log}"
    );
}

/// The cluster still has its three brokers at their own addresses and takes a new topic.
fn assert_unharmed(cluster: &Cluster, topic: &str) {
    let all = cluster.ids();
    cluster.wait_for_brokers(&all, &all);
    for id in all.iter().copied() {
        let view = cluster.metadata(id).expect("metadata");
        for other in all.iter().copied() {
            assert_eq!(
                view.brokers[&(other as i32)],
                ("127.0.0.1".to_string(), cluster.port(other)),
                "broker {other} as broker {id} lists it"
            );
        }
    }
    create_topic_retrying(&cluster.bootstrap(0), topic, 3, SETTLE);
    agreed_view(cluster, &all, topic, 3);
}

#[test]
fn a_node_id_missing_from_the_voters_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ports = reserve_ports(3);
    let port = |index: usize| common::cluster::port_of(&ports[index]);
    let voters = format!("0@127.0.0.1:{},1@127.0.0.1:{}", port(1), port(2));
    let settings = [
        setting("node.id", 2),
        setting("listeners", format!("PLAINTEXT://127.0.0.1:{}", port(0))),
        setting("controller.quorum.voters", voters),
    ];
    drop(ports);
    let mut broker = lone_broker(dir.path(), "stranger", &settings);
    assert_refused(
        &mut broker,
        "node.id 2 with voters 0 and 1",
        &["controller.quorum.voters"],
    );
}

#[test]
fn a_second_broker_with_a_live_brokers_id_exits_2() {
    let cluster = Cluster::start(3, &[]);
    let port = free_port();
    // Node 1 again, at another port: the cluster's voters, itself at its own address.
    let voters = format!(
        "0@{},1@127.0.0.1:{port},2@{}",
        cluster.bootstrap(0),
        cluster.bootstrap(2)
    );
    let settings = [
        setting("node.id", 1),
        setting("listeners", format!("PLAINTEXT://127.0.0.1:{port}")),
        setting("controller.quorum.voters", voters),
    ];
    let mut intruder = lone_broker(cluster.dir(), "intruder", &settings);
    assert_refused(
        &mut intruder,
        "a second node 1 at another port",
        &["node.id", "broker.id"],
    );
    assert_unharmed(&cluster, "after-the-intruder");
}

#[test]
fn a_broker_with_another_voter_set_exits_2() {
    let cluster = Cluster::start(3, &[]);
    let port = free_port();
    let voters = format!("{},3@127.0.0.1:{port}", cluster.voters());
    let settings = [
        setting("node.id", 3),
        setting("listeners", format!("PLAINTEXT://127.0.0.1:{port}")),
        setting("controller.quorum.voters", voters),
    ];
    let mut outsider = lone_broker(cluster.dir(), "outsider", &settings);
    assert_refused(
        &mut outsider,
        "voters 0,1,2,3 against a cluster of 0,1,2",
        &["controller.quorum.voters"],
    );
    assert_unharmed(&cluster, "after-the-outsider");
}

#[test]
fn a_broker_whose_voters_are_unreachable_says_so_and_waits() {
    let dir = tempfile::tempdir().unwrap();
    let ports = reserve_ports(3);
    let port = |index: usize| common::cluster::port_of(&ports[index]);
    let unreachable = [
        format!("127.0.0.1:{}", port(1)),
        format!("127.0.0.1:{}", port(2)),
    ];
    let voters = format!(
        "0@127.0.0.1:{},1@{},2@{}",
        port(0),
        unreachable[0],
        unreachable[1]
    );
    let settings = [
        setting("node.id", 0),
        setting("listeners", format!("PLAINTEXT://127.0.0.1:{}", port(0))),
        setting("controller.quorum.voters", voters),
    ];
    drop(ports);
    let mut broker = lone_broker(dir.path(), "alone", &settings);
    let line = poll(
        Duration::from_secs(10),
        "a log line naming the unreachable voters",
        || {
            assert!(
                broker.exited().is_none(),
                "the broker exited: {:?}; its log:\n{}",
                broker.exited(),
                broker.log()
            );
            broker
                .log()
                .lines()
                .find(|line| {
                    line.contains("controller.quorum.voters")
                        && unreachable
                            .iter()
                            .all(|address| line.contains(address.as_str()))
                })
                .map(str::to_string)
        },
    );
    eprintln!("the broker says: {line}");
    assert!(broker.exited().is_none(), "the broker should keep waiting");
    assert!(
        !broker.has_listened(),
        "the broker cannot have joined a cluster"
    );
}

#[test]
fn two_brokers_asking_one_listener_port_the_second_exits() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let original = format!(
        "broker.id=0\nlisteners=PLAINTEXT://{address}\nlog.dirs={}\nnum.shards=2\n\
         shard.pinning=false\nshard.io.memory.bytes=1048576\nmetrics.listener=none\n",
        dir.path().join("first").display()
    );
    // The copy got its own id and data directory, but not its own port.
    let copy = edit_line(
        &edit_line(&original, &["broker.id"], "broker.id=1"),
        &["log.dirs"],
        &format!("log.dirs={}", dir.path().join("second").display()),
    );
    let first_file = dir.path().join("first.properties");
    let second_file = dir.path().join("second.properties");
    std::fs::write(&first_file, original).unwrap();
    std::fs::write(&second_file, copy).unwrap();

    let mut first = BrokerProcess::spawn(
        dir.path(),
        &[first_file.display().to_string()],
        &dir.path().join("first.log"),
    );
    if let Err(failure) = first.wait_listening(Instant::now() + CLUSTER_START_TIMEOUT) {
        panic!(
            "the first broker did not start: {failure:?}\n{}",
            first.log()
        );
    }
    let mut second = BrokerProcess::spawn(
        dir.path(),
        &[second_file.display().to_string()],
        &dir.path().join("second.log"),
    );
    let status = second.wait_exit(Duration::from_secs(10));
    let log = second.log();
    assert!(
        !second.has_listened(),
        "the second broker listens on {address} too, beside the first; its log:\n{log}"
    );
    let status = status.unwrap_or_else(|| panic!("the second broker still runs; its log:\n{log}"));
    assert!(!status.success(), "{status:?}; its log:\n{log}");
    assert!(
        log.contains("listeners") && log.contains(&address),
        "the message should name listeners and {address}; its log:\n{log}"
    );
    // The first broker still serves.
    let view = metadata(&first.address.clone().unwrap()).expect("metadata from the first");
    assert_eq!(view.broker_ids(), BTreeSet::from([0]));
}

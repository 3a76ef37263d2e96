//! Consumer groups with a real client (librdkafka through the `rdkafka` crate): partitions are
//! split between members, a member that leaves or dies is replaced, separate groups each see
//! every message, and committed offsets survive a broker kill -9.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{example, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;

const WAIT: Duration = Duration::from_secs(60);
const GROUP_SETTINGS: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("group.min.session.timeout.ms", "500"),
    ("offsets.topic.num.partitions", "4"),
];

fn start_broker(dir: &tempfile::TempDir) -> Broker {
    Broker::start(&dir.path().join("data"), GROUP_SETTINGS)
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .expect("create topics");
    assert!(results[0].is_ok(), "{results:?}");
}

/// Produces `count` records to every partition; returns (partition, offset) of each.
fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize) -> BTreeSet<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let mut written = BTreeSet::new();
    futures::executor::block_on(async {
        let mut pending = Vec::new();
        for partition in 0..partitions {
            for i in 0..count {
                let value = format!("{partition}-{i}");
                let record = FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&value);
                let delivery = producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("queue a record");
                pending.push(delivery);
            }
        }
        for delivery in futures::future::join_all(pending).await {
            let delivery = delivery.expect("delivery report").expect("delivered");
            written.insert((delivery.partition, delivery.offset));
        }
    });
    written
}

fn member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    member_with(
        bootstrap,
        group,
        topic,
        &[
            ("session.timeout.ms", "1000"),
            ("heartbeat.interval.ms", "100"),
        ],
    )
}

/// A subscribed group member; `settings` pick the protocol and its timings.
fn member_with(
    bootstrap: &str,
    group: &str,
    topic: &str,
    settings: &[(&str, &str)],
) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

fn assigned(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls the consumers (each delivering into its own set) until `done` holds.
fn poll_until(
    consumers: &[&BaseConsumer],
    seen: &mut [BTreeSet<(i32, i64)>],
    what: &str,
    mut done: impl FnMut(&[BTreeSet<(i32, i64)>]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(seen) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for (consumer, seen) in consumers.iter().zip(seen.iter_mut()) {
            if let Some(message) = consumer.poll(Duration::from_millis(20)) {
                let message = message.expect("consume");
                let fresh = seen.insert((message.partition(), message.offset()));
                assert!(fresh, "a record was delivered twice to one member");
            }
        }
    }
}

#[test]
fn members_split_partitions_and_the_last_one_takes_over_when_the_other_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    create_topic(&broker.bootstrap, "split", 3);
    let a = member(&broker.bootstrap, "splitters", "split");
    let b = member(&broker.bootstrap, "splitters", "split");
    let mut seen = vec![BTreeSet::new(), BTreeSet::new()];
    poll_until(&[&a, &b], &mut seen, "a split assignment", |_| {
        let (x, y) = (assigned(&a), assigned(&b));
        !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && x.len() + y.len() == 3
    });
    let (mine, theirs) = (assigned(&a), assigned(&b));
    let written = produce(&broker.bootstrap, "split", 3, 100);
    poll_until(&[&a, &b], &mut seen, "every record", |seen| {
        seen[0].len() + seen[1].len() >= written.len()
    });
    assert!(seen[0].iter().all(|(p, _)| mine.contains(p)));
    assert!(seen[1].iter().all(|(p, _)| theirs.contains(p)));
    assert!(seen[0].is_disjoint(&seen[1]));
    let union: BTreeSet<_> = seen[0].union(&seen[1]).cloned().collect();
    assert_eq!(union, written);

    // b leaves cleanly (LeaveGroup on close): a ends up with all three partitions.
    drop(b);
    let mut alone = vec![seen[0].clone()];
    poll_until(&[&a], &mut alone, "a to take every partition", |_| {
        assigned(&a).len() == 3
    });
}

#[test]
fn a_killed_member_is_replaced_after_its_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    create_topic(&broker.bootstrap, "kill", 3);
    let a = member(&broker.bootstrap, "survivors", "kill");
    let mut child = Command::new(example("group_member"))
        .args([&broker.bootstrap, "kill", "survivors", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the member process");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(list) = line.strip_prefix("ASSIGNED ") {
                let set: BTreeSet<i32> = list.split(',').filter_map(|p| p.parse().ok()).collect();
                let _ = tx.send(set);
            }
        }
    });
    let mut other = BTreeSet::new();
    let mut seen = vec![BTreeSet::new()];
    poll_until(&[&a], &mut seen, "a split with the other process", |_| {
        while let Ok(set) = rx.try_recv() {
            other = set;
        }
        let mine = assigned(&a);
        !mine.is_empty()
            && !other.is_empty()
            && mine.is_disjoint(&other)
            && mine.len() + other.len() == 3
    });
    child.kill().expect("kill -9 the member");
    child.wait().unwrap();
    let killed_at = Instant::now();
    poll_until(
        &[&a],
        &mut seen,
        "a to take the dead member's partitions",
        |_| assigned(&a).len() == 3,
    );
    // The dead member had a 1 s session: the group must not have waited for much longer.
    assert!(killed_at.elapsed() < Duration::from_secs(20));
    let written = produce(&broker.bootstrap, "kill", 3, 20);
    poll_until(
        &[&a],
        &mut seen,
        "every record after the takeover",
        |seen| written.is_subset(&seen[0]),
    );
}

#[test]
fn separate_groups_each_receive_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    create_topic(&broker.bootstrap, "broadcast", 3);
    let written = produce(&broker.bootstrap, "broadcast", 3, 50);
    let a = member(&broker.bootstrap, "first", "broadcast");
    let b = member(&broker.bootstrap, "second", "broadcast");
    let mut seen = vec![BTreeSet::new(), BTreeSet::new()];
    poll_until(
        &[&a, &b],
        &mut seen,
        "both groups to see everything",
        |seen| seen[0].len() >= written.len() && seen[1].len() >= written.len(),
    );
    assert_eq!(seen[0], written);
    assert_eq!(seen[1], written);
}

#[test]
fn committed_offsets_survive_kill_9_and_a_new_member_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start_broker(&dir);
    create_topic(&broker.bootstrap, "resume", 3);
    let first = produce(&broker.bootstrap, "resume", 3, 40);
    let consumer = member(&broker.bootstrap, "resumers", "resume");
    let mut seen = vec![BTreeSet::new()];
    poll_until(&[&consumer], &mut seen, "the first batch", |seen| {
        seen[0].len() >= first.len()
    });
    // Commit a position in the middle of each partition, not just the end.
    let mut positions = TopicPartitionList::new();
    let mut expected = BTreeMap::new();
    for partition in 0..3 {
        let offset = 10 + 5 * partition as i64;
        positions
            .add_partition_offset("resume", partition, rdkafka::Offset::Offset(offset))
            .unwrap();
        expected.insert(partition, offset);
    }
    consumer
        .commit(&positions, CommitMode::Sync)
        .expect("commit");
    drop(consumer);

    broker.kill9();
    broker.restart();

    let consumer = member(&broker.bootstrap, "resumers", "resume");
    let committed = {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut wanted = TopicPartitionList::new();
            for partition in 0..3 {
                wanted.add_partition("resume", partition);
            }
            if let Ok(list) = consumer.committed_offsets(wanted, Duration::from_secs(10)) {
                break list;
            }
            assert!(
                Instant::now() < deadline,
                "committed offsets never came back"
            );
        }
    };
    for element in committed.elements() {
        assert_eq!(
            element.offset(),
            rdkafka::Offset::Offset(expected[&element.partition()]),
            "partition {}",
            element.partition()
        );
    }
    let mut resumed = vec![BTreeSet::new()];
    let remaining: usize = (0..3).map(|p| 40 - expected[&p] as usize).sum();
    poll_until(
        &[&consumer],
        &mut resumed,
        "the rest after restart",
        |seen| seen[0].len() >= remaining,
    );
    for partition in 0..3 {
        let first_seen = resumed[0]
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .min();
        assert_eq!(
            first_seen,
            Some(expected[&partition]),
            "partition {partition}"
        );
    }
    assert_eq!(resumed[0].len(), remaining);
}

/// The new consumer group protocol (KIP-848): the broker computes the assignment.
fn kip848_member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    member_with(bootstrap, group, topic, &[("group.protocol", "consumer")])
}

#[test]
fn kip848_members_split_partitions_hand_them_over_and_resume_from_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = GROUP_SETTINGS.to_vec();
    settings.push(("group.consumer.heartbeat.interval.ms", "100"));
    settings.push(("group.consumer.session.timeout.ms", "3000"));
    let broker = Broker::start(&dir.path().join("data"), &settings);
    create_topic(&broker.bootstrap, "kip848", 3);
    let a = kip848_member(&broker.bootstrap, "new-protocol", "kip848");
    let b = kip848_member(&broker.bootstrap, "new-protocol", "kip848");
    let mut seen = vec![BTreeSet::new(), BTreeSet::new()];
    poll_until(&[&a, &b], &mut seen, "a split assignment", |_| {
        let (x, y) = (assigned(&a), assigned(&b));
        !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && x.len() + y.len() == 3
    });
    let (mine, theirs) = (assigned(&a), assigned(&b));
    // The broker holds the assignment: ConsumerGroupDescribe shows both members and theirs.
    let mut client = common::raw::Client::connect(&broker.bootstrap);
    let mut request = kafka_protocol::messages::ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![kafka_protocol::messages::GroupId(
        kafka_protocol::protocol::StrBytes::from_static_str("new-protocol"),
    )];
    let described: kafka_protocol::messages::ConsumerGroupDescribeResponse = client.call(
        kafka_protocol::messages::ApiKey::ConsumerGroupDescribe,
        0,
        &request,
    );
    let group = &described.groups[0];
    assert_eq!(group.error_code, 0);
    assert_eq!(group.assignor_name.as_str(), "uniform");
    assert_eq!(group.members.len(), 2);
    let held: usize = group
        .members
        .iter()
        .flat_map(|m| m.assignment.topic_partitions.iter())
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(held, 3);
    let written = produce(&broker.bootstrap, "kip848", 3, 50);
    poll_until(&[&a, &b], &mut seen, "every record", |seen| {
        seen[0].len() + seen[1].len() >= written.len()
    });
    assert!(seen[0].iter().all(|(p, _)| mine.contains(p)));
    assert!(seen[1].iter().all(|(p, _)| theirs.contains(p)));
    let union: BTreeSet<_> = seen[0].union(&seen[1]).cloned().collect();
    assert_eq!(union, written);

    // Commits carry the member epoch; then b leaves and a takes everything.
    let mut positions = TopicPartitionList::new();
    for partition in &theirs {
        positions
            .add_partition_offset("kip848", *partition, rdkafka::Offset::Offset(20))
            .unwrap();
    }
    b.commit(&positions, CommitMode::Sync)
        .expect("commit with the member epoch");
    drop(b);
    let mut alone = vec![BTreeSet::new()];
    poll_until(&[&a], &mut alone, "a to take every partition", |_| {
        assigned(&a).len() == 3
    });
    // a resumes b's partitions at b's commits: 30 records each are left there.
    poll_until(
        &[&a],
        &mut alone,
        "b's partitions from the commits",
        |seen| {
            theirs
                .iter()
                .all(|p| seen[0].iter().filter(|(q, _)| q == p).count() == 30)
        },
    );
    for partition in &theirs {
        let first = alone[0]
            .iter()
            .filter(|(p, _)| p == partition)
            .map(|(_, o)| *o)
            .min();
        assert_eq!(first, Some(20), "partition {partition}");
    }
}

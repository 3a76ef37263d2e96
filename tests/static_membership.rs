//! Static group membership (KIP-345) against librdkafka, as its regression test
//! 0102-static_group_rebalance expects: a member with `group.instance.id` that closes and comes
//! back within `session.timeout.ms` gets its partitions back and the other member sees no
//! rebalance; one that stays away longer is removed by the session timeout and the other
//! member takes its partitions.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Broker;
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

const TIMEOUT: Duration = Duration::from_secs(30);
const SESSION_TIMEOUT_MS: u64 = 6000;
const TOPIC: &str = "static-t";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &rdkafka::TopicPartitionList| {
            let mut partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            partitions.sort_unstable();
            partitions
        };
        let event = match rebalance {
            Rebalance::Assign(list) => Event::Assigned(partitions(list)),
            Rebalance::Revoke(list) => Event::Revoked(partitions(list)),
            Rebalance::Error(_) => return,
        };
        self.0.lock().unwrap().push(event);
    }
}

fn member(bootstrap: &str, instance: &str) -> (BaseConsumer<Recorder>, Recorder) {
    let recorder = Recorder::default();
    let consumer: BaseConsumer<Recorder> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "static-group")
        .set("group.instance.id", instance)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("max.poll.interval.ms", "9000")
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .create_with_context(recorder.clone())
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    (consumer, recorder)
}

/// Polls every consumer until `done` holds; no sleeps, a deadline.
fn poll_until(consumers: &[&BaseConsumer<Recorder>], what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        for consumer in consumers {
            let _ = consumer.poll(Duration::from_millis(50));
        }
    }
}

fn last_assignment(recorder: &Recorder) -> Option<Vec<i32>> {
    match recorder.events().last() {
        Some(Event::Assigned(partitions)) => Some(partitions.clone()),
        _ => None,
    }
}

fn setup(dir: &tempfile::TempDir) -> Broker {
    let broker = Broker::start(
        &dir.path().join("data"),
        &[("group.initial.rebalance.delay.ms", "0")],
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let topic = NewTopic::new(TOPIC, 4, TopicReplication::Fixed(1));
    block_on(admin.create_topics([&topic], &AdminOptions::new())).unwrap()[0]
        .as_ref()
        .unwrap();
    broker
}

/// Both members joined and each holds two of the four partitions.
fn stable_pair(
    bootstrap: &str,
) -> (
    (BaseConsumer<Recorder>, Recorder),
    (BaseConsumer<Recorder>, Recorder),
) {
    let first = member(bootstrap, "consumer1");
    let second = member(bootstrap, "consumer2");
    poll_until(
        &[&first.0, &second.0],
        "both members hold partitions",
        || {
            let a = last_assignment(&first.1).unwrap_or_default();
            let b = last_assignment(&second.1).unwrap_or_default();
            a.len() == 2 && b.len() == 2
        },
    );
    (first, second)
}

#[test]
fn a_static_member_back_within_its_session_gets_its_partitions_and_the_other_sees_no_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = setup(&dir);
    let (first, second) = stable_pair(&broker.bootstrap);
    let first_events = first.1.events();
    let second_partitions = last_assignment(&second.1).unwrap();

    let restarted_at = Instant::now();
    // librdkafka sends no LeaveGroup for a static member on close (KIP-345).
    drop(second);
    let again = member(&broker.bootstrap, "consumer2");
    poll_until(
        &[&first.0, &again.0],
        "the restarted member is assigned",
        || last_assignment(&again.1).is_some(),
    );
    assert!(
        restarted_at.elapsed() < Duration::from_millis(SESSION_TIMEOUT_MS),
        "back within the session timeout: {:?}",
        restarted_at.elapsed()
    );
    assert_eq!(last_assignment(&again.1).unwrap(), second_partitions);
    // Keep polling a little longer than a heartbeat so a rebalance would have shown.
    let settle = Instant::now() + Duration::from_secs(4);
    poll_until(&[&first.0, &again.0], "a few heartbeats passed", || {
        Instant::now() >= settle
    });
    assert_eq!(
        first.1.events(),
        first_events,
        "the other member saw no revoke and no new assignment"
    );

    // Now the other one, so that whichever of them leads the group has restarted once.
    let again_events = again.1.events();
    let first_partitions = last_assignment(&first.1).unwrap();
    let restarted_at = Instant::now();
    drop(first);
    let first = member(&broker.bootstrap, "consumer1");
    poll_until(
        &[&first.0, &again.0],
        "the restarted member is assigned",
        || last_assignment(&first.1).is_some(),
    );
    assert!(restarted_at.elapsed() < Duration::from_millis(SESSION_TIMEOUT_MS));
    assert_eq!(last_assignment(&first.1).unwrap(), first_partitions);
    let settle = Instant::now() + Duration::from_secs(4);
    poll_until(&[&first.0, &again.0], "a few heartbeats passed", || {
        Instant::now() >= settle
    });
    assert_eq!(again.1.events(), again_events, "no rebalance for the other");
}

#[test]
fn a_static_member_gone_past_its_session_timeout_is_removed_by_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = setup(&dir);
    let (first, second) = stable_pair(&broker.bootstrap);
    let closed_at = Instant::now();
    drop(second);
    poll_until(
        &[&first.0],
        "the remaining member takes every partition",
        || last_assignment(&first.1).is_some_and(|p| p.len() == 4),
    );
    let waited = closed_at.elapsed();
    assert!(
        first
            .1
            .events()
            .iter()
            .any(|e| matches!(e, Event::Revoked(_))),
        "a rebalance"
    );
    // Not before the session timeout could have run out (less the last heartbeat's age).
    assert!(
        waited >= Duration::from_millis(SESSION_TIMEOUT_MS - 3000),
        "evicted after {waited:?}"
    );
}

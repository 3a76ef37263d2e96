//! Commits and rebalance callbacks of our group consumer with the eager protocol (range):
//! a rebalance revokes everything and then assigns, a commit asked for on revoke is what the
//! next owner starts from, auto commit on close hands over exactly after the last record
//! returned, and the interval auto commit covers what `poll` returned.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::{
    group_consumer_config as consumer_config, start_group_broker as start_broker, wait_for,
};
use shardlog::client::admin::Admin;
use shardlog::client::blocking;
use shardlog::client::group::{
    Assignor, GroupConfig, GroupConsumer, RebalanceContext, RebalanceListener, TopicPartition,
};
use shardlog::client::producer::{Producer, ProducerConfig};
use shardlog::runtime;

const DEADLINE: Duration = Duration::from_secs(60);

fn group_config(group: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group);
    config.session_timeout = Duration::from_secs(5);
    config.rebalance_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(100);
    config
}

/// Produces `count` records to `partitions` round-robin, each its own batch when `one_by_one`.
async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: i32, one_by_one: bool) {
    let producer = Producer::connect(ProducerConfig::new(bootstrap))
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..count {
        let value = Bytes::from(format!("r{i}"));
        let delivery = producer
            .send(topic, None, Some(value), Some(i % partitions))
            .await
            .unwrap();
        if one_by_one {
            producer.flush().await;
            delivery.await.unwrap().unwrap();
        } else {
            deliveries.push(delivery);
        }
    }
    producer.flush().await;
    for d in deliveries {
        d.await.unwrap().unwrap();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(BTreeSet<i32>),
    Revoked(BTreeSet<i32>),
    Lost(BTreeSet<i32>),
}

/// Records the callbacks it sees; commits on revoke.
struct Recorder {
    events: Rc<RefCell<Vec<Event>>>,
}

fn partitions_of(set: &BTreeSet<TopicPartition>) -> BTreeSet<i32> {
    set.iter().map(|(_, p)| *p).collect()
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        context: &mut RebalanceContext<'_>,
    ) {
        context.commit();
        self.events
            .borrow_mut()
            .push(Event::Revoked(partitions_of(partitions)));
    }

    fn on_partitions_assigned(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        _context: &mut RebalanceContext<'_>,
    ) {
        if !partitions.is_empty() {
            self.events
                .borrow_mut()
                .push(Event::Assigned(partitions_of(partitions)));
        }
    }

    fn on_partitions_lost(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        _context: &mut RebalanceContext<'_>,
    ) {
        self.events
            .borrow_mut()
            .push(Event::Lost(partitions_of(partitions)));
    }
}

#[derive(Default)]
struct Member {
    assignment: BTreeSet<i32>,
    seen: BTreeSet<(i32, i64)>,
    read_twice: bool,
    stop: bool,
    stopped: bool,
}

type Shared = Rc<RefCell<Vec<Member>>>;

/// Runs member `index`'s poll loop until told to stop; then it closes.
fn spawn_member(mut member: GroupConsumer, shared: Shared, index: usize) {
    runtime::spawn(async move {
        loop {
            if shared.borrow()[index].stop {
                member.close().await.expect("close");
                shared.borrow_mut()[index].stopped = true;
                return;
            }
            let records = member.poll().await.expect("poll");
            let mut state = shared.borrow_mut();
            let me = &mut state[index];
            me.assignment = partitions_of(member.assignment());
            for r in records {
                if !me.seen.insert((r.partition, r.offset)) {
                    me.read_twice = true;
                }
            }
        }
    });
}

#[test]
fn an_eager_rebalance_revokes_everything_then_assigns_and_a_commit_on_revoke_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin.create_topic("eager", 4, 1, &[]).await.unwrap();
        produce(&bootstrap, "eager", 4, 40, false).await;

        let shared: Shared = Rc::new(RefCell::new((0..2).map(|_| Member::default()).collect()));
        let events: Vec<Rc<RefCell<Vec<Event>>>> = (0..2).map(|_| Rc::default()).collect();
        let mut members = Vec::new();
        for recorder in &events {
            let mut config = group_config("eager-group");
            config.assignors = vec![Assignor::Range];
            config.enable_auto_commit = false;
            let mut member =
                GroupConsumer::connect(consumer_config(&bootstrap), config, &["eager"])
                    .await
                    .unwrap();
            member.set_rebalance_listener(Recorder {
                events: recorder.clone(),
            });
            members.push(member);
        }
        let second = members.pop().unwrap();
        spawn_member(members.pop().unwrap(), shared.clone(), 0);
        wait_for("the first member to read everything", || {
            shared.borrow()[0].seen.len() == 40
        })
        .await;
        // No manual commit: what the second member skips is what the revoke committed.
        spawn_member(second, shared.clone(), 1);
        wait_for("a split over two", || {
            let state = shared.borrow();
            state[0].assignment.len() == 2 && state[1].assignment.len() == 2
        })
        .await;
        produce(&bootstrap, "eager", 4, 40, false).await;
        wait_for("every record", || {
            shared.borrow().iter().map(|m| m.seen.len()).sum::<usize>() >= 80
        })
        .await;

        let all: BTreeSet<i32> = (0..4).collect();
        let first_events = events[0].borrow().clone();
        let kept = shared.borrow()[0].assignment.clone();
        assert_eq!(
            first_events,
            vec![
                Event::Assigned(all.clone()),
                Event::Revoked(all),
                Event::Assigned(kept.clone()),
            ]
        );
        let given = shared.borrow()[1].assignment.clone();
        assert_eq!(
            events[1].borrow().clone(),
            vec![Event::Assigned(given.clone())]
        );
        assert!(kept.is_disjoint(&given));

        let state = shared.borrow();
        assert!(state.iter().all(|m| !m.read_twice));
        let total: usize = state.iter().map(|m| m.seen.len()).sum();
        assert_eq!(
            total, 80,
            "every record once: the second member started at the commits"
        );
        assert!(state[1].seen.iter().all(|(_, offset)| *offset >= 10));
    })
    .expect("client executor");
}

#[test]
fn auto_commit_on_close_lets_the_next_member_start_right_after_the_last_polled_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin.create_topic("auto", 2, 1, &[]).await.unwrap();
        // One batch per record, and one batch per partition per fetch: the first member stops
        // part way through.
        produce(&bootstrap, "auto", 2, 30, true).await;
        let mut consumer = consumer_config(&bootstrap);
        consumer.partition_max_bytes = 1;
        let mut config = group_config("auto-group");
        // Only the close commits.
        config.auto_commit_interval = Duration::from_secs(3600);

        let mut first = GroupConsumer::connect(consumer.clone(), config.clone(), &["auto"])
            .await
            .unwrap();
        let mut read: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while read.values().map(Vec::len).sum::<usize>() < 6 {
            assert!(
                std::time::Instant::now() < deadline,
                "first member read nothing"
            );
            for r in first.poll().await.unwrap() {
                read.entry(r.partition).or_default().push(r.offset);
            }
        }
        let first_count: usize = read.values().map(Vec::len).sum();
        assert!(first_count < 30, "the first member stopped part way");
        first.close().await.unwrap();

        let mut second = GroupConsumer::connect(consumer, config, &["auto"])
            .await
            .unwrap();
        let mut after: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while first_count + after.values().map(Vec::len).sum::<usize>() < 30 {
            assert!(
                std::time::Instant::now() < deadline,
                "second member stalled"
            );
            for r in second.poll().await.unwrap() {
                after.entry(r.partition).or_default().push(r.offset);
            }
        }
        for partition in 0..2 {
            let before = read.get(&partition).cloned().unwrap_or_default();
            let later = after.get(&partition).cloned().unwrap_or_default();
            let joined: Vec<i64> = before.iter().chain(later.iter()).copied().collect();
            assert_eq!(
                joined,
                (0..15).collect::<Vec<i64>>(),
                "partition {partition}: nothing re-read, nothing skipped"
            );
        }
        second.close().await.unwrap();
    })
    .expect("client executor");
}

#[test]
fn the_interval_auto_commit_commits_what_poll_returned() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin.create_topic("interval", 2, 1, &[]).await.unwrap();
        produce(&bootstrap, "interval", 2, 20, false).await;
        let mut config = group_config("interval-group");
        config.auto_commit_interval = Duration::ZERO;
        let mut member = GroupConsumer::connect(consumer_config(&bootstrap), config, &["interval"])
            .await
            .unwrap();
        let mut count = 0;
        let deadline = std::time::Instant::now() + DEADLINE;
        while count < 20 {
            assert!(std::time::Instant::now() < deadline, "got {count} of 20");
            count += member.poll().await.unwrap().len();
        }
        // The next poll commits before it fetches (and finds nothing new).
        assert!(member.poll().await.unwrap().is_empty());
        let owned = member.assignment().clone();
        let committed = member.committed(&owned).await.unwrap();
        let expected: BTreeMap<TopicPartition, i64> =
            owned.iter().map(|slot| (slot.clone(), 10)).collect();
        assert_eq!(committed, expected);
        // Nothing changed since: closing commits nothing new and succeeds.
        member.close().await.unwrap();
    })
    .expect("client executor");
}

#[test]
fn a_member_whose_session_expired_reports_its_partitions_lost_then_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin.create_topic("fenced", 2, 1, &[]).await.unwrap();
        let events: Rc<RefCell<Vec<Event>>> = Rc::default();
        let mut config = group_config("fenced-group");
        config.session_timeout = Duration::from_secs(1);
        config.rebalance_timeout = Duration::from_secs(1);
        let mut idle = GroupConsumer::connect(consumer_config(&bootstrap), config, &["fenced"])
            .await
            .unwrap();
        idle.set_rebalance_listener(Recorder {
            events: events.clone(),
        });
        let deadline = std::time::Instant::now() + DEADLINE;
        while idle.assignment().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "first join");
            idle.poll().await.unwrap();
        }

        // `idle` stops polling, so it neither heartbeats nor rejoins: the coordinator drops it
        // and the other member ends up with everything.
        let shared: Shared = Rc::new(RefCell::new((0..1).map(|_| Member::default()).collect()));
        let other = GroupConsumer::connect(
            consumer_config(&bootstrap),
            group_config("fenced-group"),
            &["fenced"],
        )
        .await
        .unwrap();
        spawn_member(other, shared.clone(), 0);
        wait_for("the other member to own both partitions", || {
            shared.borrow()[0].assignment.len() == 2
        })
        .await;

        // Back to polling: the heartbeat finds it unknown, so the partitions are lost (not
        // revoked), and it joins again as a new member.
        let deadline = std::time::Instant::now() + DEADLINE;
        while events.borrow().len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "events: {:?}",
                events.borrow()
            );
            idle.poll().await.unwrap();
        }
        let both: BTreeSet<i32> = (0..2).collect();
        let got = partitions_of(idle.assignment());
        assert_eq!(
            events.borrow().clone(),
            vec![
                Event::Assigned(both.clone()),
                Event::Lost(both),
                Event::Assigned(got.clone()),
            ]
        );
        assert_eq!(got.len(), 1);
        idle.close().await.unwrap();
    })
    .expect("client executor");
}

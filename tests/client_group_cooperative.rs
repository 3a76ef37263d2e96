//! Incremental cooperative rebalancing (KIP-429) with our `cooperative-sticky` assignor: a
//! fourth member joining three takes only the excess partitions, which are revoked from their
//! owners alone and handed over in a second rebalance, so no partition ever has two owners and
//! every record is read once. And a mixed group: our member and a librdkafka member, both
//! `cooperative-sticky`, split the partitions whichever of them leads, which shows the
//! subscription and assignment bytes we embed are the ones librdkafka (and Kafka) read.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

fn cooperative_member_config(group: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group);
    config.session_timeout = Duration::from_secs(6);
    config.rebalance_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(100);
    config.assignors = vec![Assignor::CooperativeSticky];
    config.enable_auto_commit = false;
    config
}

async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: i32) {
    let producer = Producer::connect(ProducerConfig::new(bootstrap))
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..count {
        let value = Bytes::from(format!("r{i}"));
        deliveries.push(
            producer
                .send(topic, None, Some(value), Some(i % partitions))
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    for d in deliveries {
        d.await.unwrap().unwrap();
    }
}

#[derive(Default)]
struct Member {
    assignment: BTreeSet<i32>,
    revoked: Vec<BTreeSet<i32>>,
    assigned: Vec<BTreeSet<i32>>,
    seen: BTreeSet<(i32, i64)>,
    read_twice: bool,
}

#[derive(Default)]
struct Group {
    members: Vec<Member>,
    /// Partition → the member whose callbacks say it owns it now.
    owners: BTreeMap<i32, usize>,
    violations: Vec<String>,
}

type Shared = Rc<RefCell<Group>>;

struct Ownership {
    index: usize,
    shared: Shared,
}

fn partitions_of(set: &BTreeSet<TopicPartition>) -> BTreeSet<i32> {
    set.iter().map(|(_, p)| *p).collect()
}

impl RebalanceListener for Ownership {
    fn on_partitions_revoked(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        context: &mut RebalanceContext<'_>,
    ) {
        // The next owner starts where this one stopped.
        context.commit();
        let mut group = self.shared.borrow_mut();
        for p in partitions_of(partitions) {
            if group.owners.remove(&p) != Some(self.index) {
                let message = format!("member {} revoked {p}, which it did not own", self.index);
                group.violations.push(message);
            }
        }
        group.members[self.index]
            .revoked
            .push(partitions_of(partitions));
    }

    fn on_partitions_assigned(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        _context: &mut RebalanceContext<'_>,
    ) {
        let mut group = self.shared.borrow_mut();
        for p in partitions_of(partitions) {
            if let Some(owner) = group.owners.insert(p, self.index) {
                let message = format!("{p} assigned to {} while {owner} owns it", self.index);
                group.violations.push(message);
            }
        }
        if !partitions.is_empty() {
            group.members[self.index]
                .assigned
                .push(partitions_of(partitions));
        }
    }

    fn on_partitions_lost(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        _context: &mut RebalanceContext<'_>,
    ) {
        let message = format!("member {} lost {partitions:?}", self.index);
        self.shared.borrow_mut().violations.push(message);
    }
}

fn spawn_member(mut member: GroupConsumer, shared: Shared, index: usize) {
    runtime::spawn(async move {
        loop {
            let records = member.poll().await.expect("poll");
            let got_records = !records.is_empty();
            {
                let mut group = shared.borrow_mut();
                let group = &mut *group;
                let me = &mut group.members[index];
                me.assignment = partitions_of(member.assignment());
                for r in records {
                    if group.owners.get(&r.partition) != Some(&index) {
                        let message = format!("member {index} read {} unowned", r.partition);
                        group.violations.push(message);
                    }
                    if !me.seen.insert((r.partition, r.offset)) {
                        me.read_twice = true;
                    }
                }
            }
            if got_records {
                // Manual commits; one refused during a rebalance is redone by the next, or by
                // the commit on revoke.
                member.commit().await.ok();
            }
        }
    });
}

fn counts(shared: &Shared, members: usize) -> Vec<usize> {
    let group = shared.borrow();
    (0..members)
        .map(|i| group.members[i].assignment.len())
        .collect()
}

#[test]
fn a_fourth_member_takes_only_the_excess_and_nobody_else_stops_or_rereads() {
    const PARTITIONS: i32 = 8;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin
            .create_topic("coop", PARTITIONS, 1, &[])
            .await
            .unwrap();
        let shared: Shared = Rc::new(RefCell::new(Group {
            members: (0..4).map(|_| Member::default()).collect(),
            ..Group::default()
        }));
        let mut members = Vec::new();
        for index in 0..4 {
            let mut member = GroupConsumer::connect(
                consumer_config(&bootstrap),
                cooperative_member_config("coop-group"),
                &["coop"],
            )
            .await
            .unwrap();
            assert!(member.is_cooperative());
            member.set_rebalance_listener(Ownership {
                index,
                shared: shared.clone(),
            });
            members.push(member);
        }
        let fourth = members.pop().unwrap();
        for (index, member) in members.into_iter().enumerate() {
            spawn_member(member, shared.clone(), index);
        }
        wait_for("3, 3, 2 over three members", || {
            let mut c = counts(&shared, 3);
            c.sort();
            c == vec![2, 3, 3] && shared.borrow().owners.len() == PARTITIONS as usize
        })
        .await;
        produce(&bootstrap, "coop", PARTITIONS, 80).await;
        wait_for("the first 80 records", || {
            let group = shared.borrow();
            group.members.iter().map(|m| m.seen.len()).sum::<usize>() >= 80
        })
        .await;
        let before: Vec<BTreeSet<i32>> = (0..3)
            .map(|i| shared.borrow().members[i].assignment.clone())
            .collect();
        let revokes_before: Vec<usize> = (0..3)
            .map(|i| shared.borrow().members[i].revoked.len())
            .collect();

        spawn_member(fourth, shared.clone(), 3);
        // Records arrive while the group rebalances.
        produce(&bootstrap, "coop", PARTITIONS, 40).await;
        wait_for("2, 2, 2, 2 over four members", || {
            counts(&shared, 4) == vec![2, 2, 2, 2]
                && shared.borrow().owners.len() == PARTITIONS as usize
        })
        .await;
        produce(&bootstrap, "coop", PARTITIONS, 40).await;
        wait_for("all 160 records", || {
            let group = shared.borrow();
            group.members.iter().map(|m| m.seen.len()).sum::<usize>() >= 160
        })
        .await;

        let group = shared.borrow();
        assert!(group.violations.is_empty(), "{:?}", group.violations);
        let mut moved = BTreeSet::new();
        for (i, held) in before.iter().enumerate() {
            let now = &group.members[i].assignment;
            assert!(
                now.is_subset(held),
                "member {i} gained {now:?} from {held:?}"
            );
            let revoked: BTreeSet<i32> = group.members[i].revoked[revokes_before[i]..]
                .iter()
                .flatten()
                .copied()
                .collect();
            // Only what moved was revoked; what it kept never saw a revoke.
            assert_eq!(revoked, held - now, "member {i}");
            moved.extend(revoked);
        }
        assert_eq!(
            moved.len(),
            2,
            "the minimum movement: 8 over 4 from 3, 3, 2"
        );
        assert_eq!(group.members[3].assignment, moved);
        assert_eq!(group.members[3].assigned, vec![moved.clone()]);

        let all: BTreeSet<(i32, i64)> = group
            .members
            .iter()
            .flat_map(|m| m.seen.iter().copied())
            .collect();
        let total: usize = group.members.iter().map(|m| m.seen.len()).sum();
        assert_eq!(all.len(), 160);
        assert_eq!(total, 160, "every record read exactly once");
        assert!(group.members.iter().all(|m| !m.read_twice));
    })
    .expect("client executor");
}

/// A librdkafka member of group `group` on `topic` with cooperative-sticky, polling on its own
/// thread until `stop`; records what it reads and its assignment.
struct Librdkafka {
    seen: Arc<Mutex<BTreeSet<(i32, i64)>>>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Librdkafka {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Librdkafka {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "100")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "100")
            .create()
            .expect("librdkafka consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, assignment, stop) = (seen.clone(), assignment.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(20)) {
                        seen.lock()
                            .unwrap()
                            .insert((message.partition(), message.offset()));
                    }
                    if let Ok(list) = consumer.assignment() {
                        *assignment.lock().unwrap() =
                            list.elements().iter().map(|e| e.partition()).collect();
                    }
                }
                consumer.unsubscribe();
            })
        };
        Librdkafka {
            seen,
            assignment,
            stop,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn seen(&self) -> BTreeSet<(i32, i64)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Librdkafka {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn our_member_and_a_librdkafka_member_share_a_cooperative_sticky_group_either_leading() {
    const PARTITIONS: i32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&dir);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin
            .create_topic("mixed", PARTITIONS, 1, &[])
            .await
            .unwrap();
        produce(&bootstrap, "mixed", PARTITIONS, 40).await;
        let ours_seen: Rc<RefCell<BTreeSet<(i32, i64)>>> = Rc::default();
        let ours_assignment: Rc<RefCell<BTreeSet<i32>>> = Rc::default();
        let stop = Rc::new(RefCell::new(false));
        let stopped = Rc::new(RefCell::new(false));
        let run_ours = |member: GroupConsumer| {
            let (seen, assignment) = (ours_seen.clone(), ours_assignment.clone());
            let (stop, stopped) = (stop.clone(), stopped.clone());
            let mut member = member;
            runtime::spawn(async move {
                loop {
                    if *stop.borrow() {
                        member.close().await.expect("close");
                        *stopped.borrow_mut() = true;
                        return;
                    }
                    let records = member.poll().await.expect("poll");
                    *assignment.borrow_mut() = partitions_of(member.assignment());
                    let got_records = !records.is_empty();
                    seen.borrow_mut()
                        .extend(records.iter().map(|r| (r.partition, r.offset)));
                    if got_records {
                        member.commit().await.ok();
                    }
                }
            });
        };
        struct CommitOnRevoke;
        impl RebalanceListener for CommitOnRevoke {
            fn on_partitions_revoked(
                &mut self,
                _partitions: &BTreeSet<TopicPartition>,
                context: &mut RebalanceContext<'_>,
            ) {
                context.commit();
            }
        }
        let connect = || async {
            let mut member = GroupConsumer::connect(
                consumer_config(&bootstrap),
                cooperative_member_config("mixed-group"),
                &["mixed"],
            )
            .await
            .unwrap();
            member.set_rebalance_listener(CommitOnRevoke);
            member
        };

        // Ours first: it leads, and reads librdkafka's subscription.
        run_ours(connect().await);
        wait_for("our member to own everything", || {
            ours_assignment.borrow().len() == PARTITIONS as usize
        })
        .await;
        let librdkafka = Librdkafka::start(&bootstrap, "mixed-group", "mixed");
        wait_for("a split between ours and librdkafka", || {
            let ours = ours_assignment.borrow().clone();
            let theirs = librdkafka.assignment();
            ours.len() == 2 && theirs.len() == 2 && ours.is_disjoint(&theirs)
        })
        .await;
        produce(&bootstrap, "mixed", PARTITIONS, 40).await;
        wait_for("both to read the new records", || {
            let theirs = librdkafka.seen();
            let ours = ours_seen.borrow();
            theirs.iter().any(|(_, offset)| *offset >= 10)
                && ours.iter().any(|(_, offset)| *offset >= 10)
        })
        .await;

        // Ours leaves; librdkafka leads now, and a new member of ours gets half from it.
        *stop.borrow_mut() = true;
        wait_for("our member to leave", || *stopped.borrow()).await;
        wait_for("librdkafka to own everything", || {
            librdkafka.assignment().len() == PARTITIONS as usize
        })
        .await;
        *stop.borrow_mut() = false;
        ours_assignment.borrow_mut().clear();
        run_ours(connect().await);
        wait_for("a split with librdkafka leading", || {
            let ours = ours_assignment.borrow().clone();
            let theirs = librdkafka.assignment();
            ours.len() == 2 && theirs.len() == 2 && ours.is_disjoint(&theirs)
        })
        .await;
        let ours_before = ours_seen.borrow().len();
        produce(&bootstrap, "mixed", PARTITIONS, 40).await;
        wait_for("every record read by one of them", || {
            let mut all = librdkafka.seen();
            all.extend(ours_seen.borrow().iter().copied());
            all.len() == 120
        })
        .await;
        wait_for("the new member of ours to read", || {
            ours_seen.borrow().len() > ours_before
        })
        .await;
        *stop.borrow_mut() = true;
        wait_for("our member to leave", || *stopped.borrow()).await;
        drop(librdkafka);
    })
    .expect("client executor");
}

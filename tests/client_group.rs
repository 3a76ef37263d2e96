//! Three of our consumers in one group (classic protocol, range assignor computed by the
//! leader member) split six partitions, read every record once, commit, and rebalance when one
//! leaves. Each member runs its own poll loop, as separate applications would.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::{wait_for, Broker};
use shardlog::client::admin::Admin;
use shardlog::client::blocking;
use shardlog::client::consumer::{ConsumerConfig, Offset};
use shardlog::client::group::{GroupConfig, GroupConsumer};
use shardlog::client::producer::{Producer, ProducerConfig};
use shardlog::runtime;

const PARTITIONS: i32 = 6;

#[derive(Default)]
struct Member {
    assignment: BTreeSet<i32>,
    seen: BTreeSet<(i32, i64)>,
    read_twice: bool,
    stop: bool,
    stopped: bool,
}

type Shared = Rc<RefCell<Vec<Member>>>;

fn balanced(shared: &Shared, members: &[usize]) -> bool {
    let state = shared.borrow();
    let sets: Vec<&BTreeSet<i32>> = members.iter().map(|i| &state[*i].assignment).collect();
    let total: usize = sets.iter().map(|s| s.len()).sum();
    let union: BTreeSet<_> = sets.iter().flat_map(|s| s.iter()).collect();
    sets.iter().all(|s| !s.is_empty()) && total == PARTITIONS as usize && union.len() == total
}

#[test]
fn three_members_split_partitions_read_everything_once_and_rebalance_on_leave() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &common::GROUP_SETTINGS);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin
            .create_topic("grouped", PARTITIONS, 1, &[])
            .await
            .unwrap();
        let shared: Shared = Rc::new(RefCell::new((0..3).map(|_| Member::default()).collect()));
        for i in 0..3 {
            let mut consumer = ConsumerConfig::new(&bootstrap);
            consumer.auto_offset_reset = Offset::Beginning;
            consumer.max_wait = Duration::from_millis(50);
            let mut group = GroupConfig::new("ours");
            group.session_timeout = Duration::from_secs(5);
            group.rebalance_timeout = Duration::from_secs(10);
            group.heartbeat_interval = Duration::from_millis(100);
            let mut member = GroupConsumer::connect(consumer, group, &["grouped"])
                .await
                .unwrap();
            let shared = shared.clone();
            runtime::spawn(async move {
                loop {
                    if shared.borrow()[i].stop {
                        member.commit().await.expect("commit");
                        member.close().await.expect("leave");
                        shared.borrow_mut()[i].stopped = true;
                        return;
                    }
                    let records = member.poll().await.expect("poll");
                    {
                        let mut state = shared.borrow_mut();
                        let me = &mut state[i];
                        me.assignment = member.assignment().iter().map(|(_, p)| *p).collect();
                        for r in records {
                            if !me.seen.insert((r.partition, r.offset)) {
                                me.read_twice = true;
                            }
                        }
                    }
                    if !member.assignment().is_empty() {
                        member.commit().await.ok();
                    }
                }
            });
        }
        wait_for("a balanced split over three", || {
            balanced(&shared, &[0, 1, 2])
        })
        .await;
        let producer = Producer::connect(ProducerConfig::new(&bootstrap))
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..120 {
            let value = Bytes::from(format!("r{i}"));
            deliveries.push(
                producer
                    .send("grouped", None, Some(value), Some(i % PARTITIONS))
                    .await
                    .unwrap(),
            );
        }
        producer.flush().await;
        for d in deliveries {
            d.await.unwrap().unwrap();
        }
        wait_for("every record", || {
            shared.borrow().iter().map(|m| m.seen.len()).sum::<usize>() >= 120
        })
        .await;
        {
            let state = shared.borrow();
            let all: BTreeSet<(i32, i64)> =
                state.iter().flat_map(|m| m.seen.iter().copied()).collect();
            assert_eq!(all.len(), 120, "every record once");
            for m in state.iter() {
                assert!(!m.read_twice);
                assert!(m.seen.iter().all(|(p, _)| m.assignment.contains(p)));
            }
        }
        // One leaves (after committing); the other two share all six partitions and read
        // nothing again, since they start from the commits.
        shared.borrow_mut()[2].stop = true;
        wait_for("the leave", || shared.borrow()[2].stopped).await;
        wait_for("a balanced split over two", || balanced(&shared, &[0, 1])).await;
        let state = shared.borrow();
        let total: usize = state.iter().map(|m| m.seen.len()).sum();
        assert_eq!(total, 120, "nothing read twice after the rebalance");
        assert!(state.iter().all(|m| !m.read_twice));
    })
    .expect("client executor");
}

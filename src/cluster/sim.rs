//! A seeded simulation of the controller quorum: three voters (`QuorumNode` over `MemDisk`)
//! on a network that loses, delays, reorders and cuts messages, with crashes (unsynced writes
//! lost) and restarts, driven step by step from one seed. It checks Raft's promises as the
//! cluster relies on them: at most one leader per term, every node applies the same entry at
//! an index, and no change that was committed (answered to its proposer) is ever lost.
//! `SIM_SEEDS=N` runs more seeds; a failure names its seed, which replays it exactly.

use std::collections::{BTreeMap, HashMap};

use raft::eraftpb::Message;

use super::quorum::{node_id, QuorumConfig, QuorumNode};
use super::state::{MetadataRecord, PartitionState, TopicState};
use super::store::MemDisk;
use crate::broker::metadata::TopicRecord;

/// SplitMix64: small, seedable, good enough for choosing faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const VOTERS: [i32; 3] = [0, 1, 2];

struct SimNode {
    disk: MemDisk,
    node: Option<QuorumNode<MemDisk>>,
}

struct Sim {
    rng: Rng,
    nodes: Vec<SimNode>,
    config: Vec<QuorumConfig>,
    network: Vec<(i32, i32, Message)>,
    /// Links that drop everything: (from, to).
    cut: Vec<(i32, i32)>,
    /// term -> the node that led it.
    leaders: HashMap<u64, i32>,
    /// index -> (term, data) of the entry applied there, by anyone.
    applied: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Proposals whose commit was seen by their proposer: topic names.
    acknowledged: Vec<String>,
    next_proposal: u64,
    seed: u64,
}

fn topic_record(name: &str) -> MetadataRecord {
    MetadataRecord::CreateTopic(TopicState {
        record: TopicRecord {
            name: name.to_owned(),
            id: [1; 16],
            partitions: 1,
            replication_factor: 1,
            overrides: Vec::new(),
        },
        partitions: vec![PartitionState::new(vec![0])],
    })
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config: Vec<QuorumConfig> = VOTERS
            .iter()
            .map(|&node| QuorumConfig {
                node,
                voters: VOTERS.to_vec(),
                election_ticks: 10,
                heartbeat_ticks: 1,
                // Small, so that snapshots are taken and sent to lagging nodes.
                snapshot_every: 16,
            })
            .collect();
        let mut sim = Sim {
            rng: Rng(seed),
            nodes: Vec::new(),
            config,
            network: Vec::new(),
            cut: Vec::new(),
            leaders: HashMap::new(),
            applied: BTreeMap::new(),
            acknowledged: Vec::new(),
            next_proposal: 0,
            seed,
        };
        for i in 0..VOTERS.len() {
            let disk = MemDisk::default();
            let node = QuorumNode::open(&sim.config[i], disk.reopen()).expect("open");
            sim.nodes.push(SimNode {
                disk,
                node: Some(node),
            });
        }
        sim
    }

    fn process(&mut self, i: usize) {
        let seed = self.seed;
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let output = node.process().expect("memory disk");
        let term = node.term();
        let is_leader = node.is_leader();
        for message in output.messages {
            self.network.push((i as i32, node_id(message.to), message));
        }
        if is_leader {
            let previous = *self.leaders.entry(term).or_insert(i as i32);
            assert_eq!(
                previous, i as i32,
                "seed {seed}: nodes {previous} and {i} both led term {term}"
            );
        }
        for committed in output.committed {
            let key = (committed.term, committed.context.clone());
            match self.applied.get(&committed.index) {
                Some((term, context)) => assert_eq!(
                    (term, context),
                    (&key.0, &key.1),
                    "seed {seed}: node {i} applied a different entry at index {}",
                    committed.index
                ),
                None => {
                    self.applied.insert(committed.index, key);
                }
            }
            if let Ok(bytes) = <[u8; 8]>::try_from(committed.context.as_slice()) {
                // Only the proposer knows the context's meaning: it acknowledges its own.
                let proposal = u64::from_be_bytes(bytes);
                let proposer = (proposal % 3) as usize;
                if proposer == i {
                    self.acknowledged.push(format!("t{proposal}"));
                }
            }
        }
    }

    fn step(&mut self, faults: bool) {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some())
            .collect();
        match self.rng.below(100) {
            // Deliver a message (any in flight: reordering), unless lost or cut.
            0..=54 if !self.network.is_empty() => {
                let at = self.rng.below(self.network.len() as u64) as usize;
                let (from, to, message) = self.network.swap_remove(at);
                let lost = faults && self.rng.chance(5);
                if lost || self.cut.contains(&(from, to)) {
                    return;
                }
                if let Some(node) = self.nodes[to as usize].node.as_mut() {
                    node.step(message);
                    self.process(to as usize);
                }
            }
            55..=84 => {
                if let Some(&i) = live.get(self.rng.below(live.len() as u64) as usize) {
                    self.nodes[i].node.as_mut().expect("live").tick();
                    self.process(i);
                }
            }
            85..=92 => {
                // A proposal at whichever node thinks it leads.
                for &i in &live {
                    let node = self.nodes[i].node.as_mut().expect("live");
                    if node.is_leader() {
                        // The proposal number says who proposed it (number % 3).
                        let mut proposal = self.next_proposal;
                        while proposal % 3 != i as u64 {
                            proposal += 1;
                        }
                        self.next_proposal = proposal + 1;
                        let record = topic_record(&format!("t{proposal}"));
                        let _ = node.propose(proposal.to_be_bytes().to_vec(), &[record]);
                        self.process(i);
                        break;
                    }
                }
            }
            93..=95 if faults => {
                // Crash a node: what it did not sync is gone; messages to it are lost.
                let i = self.rng.below(self.nodes.len() as u64) as usize;
                if self.nodes[i].node.take().is_some() {
                    self.network.retain(|(_, to, _)| *to != i as i32);
                }
            }
            96..=97 => {
                // Restart a crashed node from its disk.
                if let Some(i) = (0..self.nodes.len()).find(|&i| self.nodes[i].node.is_none()) {
                    let disk = self.nodes[i].disk.reopen();
                    self.nodes[i].node =
                        Some(QuorumNode::open(&self.config[i], disk).expect("reopen"));
                    self.process(i);
                }
            }
            98 if faults => {
                let from = self.rng.below(3) as i32;
                let to = (from + 1 + self.rng.below(2) as i32) % 3;
                self.cut.push((from, to));
            }
            99 => self.cut.clear(),
            _ => {}
        }
    }

    /// Heals everything and runs until every node has applied the same state.
    fn settle(&mut self) {
        self.cut.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                let disk = self.nodes[i].disk.reopen();
                self.nodes[i].node = Some(QuorumNode::open(&self.config[i], disk).expect("reopen"));
            }
        }
        for _ in 0..20_000 {
            self.step(false);
            if self.converged() {
                return;
            }
        }
        panic!("seed {}: the nodes did not converge once healed", self.seed);
    }

    fn converged(&self) -> bool {
        let states: Vec<Vec<u8>> = self
            .nodes
            .iter()
            .map(|n| n.node.as_ref().expect("live").state().encode())
            .collect();
        let leader = self
            .nodes
            .iter()
            .any(|n| n.node.as_ref().expect("live").is_leader());
        leader && states.windows(2).all(|w| w[0] == w[1])
    }

    fn check_nothing_acknowledged_was_lost(&self) {
        for node in &self.nodes {
            let state = node.node.as_ref().expect("live").state();
            for name in &self.acknowledged {
                assert!(
                    state.topics.contains_key(name),
                    "seed {}: {name} was committed, then lost",
                    self.seed
                );
            }
        }
    }
}

fn run_seed(seed: u64, steps: usize) -> usize {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step(true);
    }
    sim.settle();
    sim.check_nothing_acknowledged_was_lost();
    sim.acknowledged.len()
}

#[test]
fn the_quorum_keeps_one_leader_per_term_and_every_committed_change_over_many_fault_schedules() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut acknowledged = 0;
    for seed in 0..seeds {
        acknowledged += run_seed(seed, 1500);
    }
    // The schedules must let work through, or the checks above prove nothing.
    assert!(
        acknowledged as u64 > seeds * 5,
        "only {acknowledged} changes committed over {seeds} seeds"
    );
}

#[test]
fn a_lone_voter_leads_at_once_and_commits_alone() {
    let config = QuorumConfig {
        node: 4,
        voters: vec![4],
        election_ticks: 10,
        heartbeat_ticks: 1,
        snapshot_every: 2,
    };
    let disk = MemDisk::default();
    let mut node = QuorumNode::open(&config, disk.reopen()).unwrap();
    node.process().unwrap();
    assert!(node.is_leader());
    for i in 0..5u64 {
        node.propose(i.to_be_bytes().to_vec(), &[topic_record(&format!("t{i}"))])
            .unwrap();
        let out = node.process().unwrap();
        assert_eq!(out.committed.len(), 1, "commits in the same round");
    }
    // Restart: the state comes back from the snapshot and the log after it.
    let mut again = QuorumNode::open(&config, disk.reopen()).unwrap();
    again.process().unwrap();
    assert_eq!(again.state().topics.len(), 5);
}

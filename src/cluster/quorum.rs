//! One voter of the controller quorum as a pure state machine: the Raft node (`raft` crate)
//! over the metadata log, and the `ClusterState` its committed entries build. Time comes in as
//! `tick`, messages from peers as `step`, changes as `propose`; `process` persists what must be
//! durable (through a `Disk`, synced before any message that depends on it is handed out),
//! applies what is committed and returns the messages to send. No clock, socket or file here:
//! the driver (`driver.rs`) and the simulator (`sim.rs`) are the two callers.
//!
//! Raft ids are node ids plus one (Raft reserves 0; Kafka's node ids start at 0).

use std::sync::Arc;

use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::state::{decode_records, encode_records, Applied, ClusterState, MetadataRecord};
use super::store::{Disk, LogStore};

pub fn raft_id(node: i32) -> u64 {
    node as u64 + 1
}

pub fn node_id(raft: u64) -> i32 {
    raft as i32 - 1
}

#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node: i32,
    pub voters: Vec<i32>,
    /// Ticks without a leader before a follower campaigns (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries after which the state is snapshotted and the log cut.
    pub snapshot_every: u64,
}

/// An entry that was committed and applied: the proposer's context and what each record
/// answered.
#[derive(Debug, Clone)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub context: Vec<u8>,
    pub answers: Vec<Applied>,
}

#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<Message>,
    pub committed: Vec<Committed>,
    /// The state changed (entries applied or a snapshot installed).
    pub changed: bool,
}

pub struct QuorumNode<D: Disk> {
    raw: RawNode<LogStore>,
    store: LogStore,
    disk: D,
    state: Arc<ClusterState>,
    snapshot_every: u64,
}

impl<D: Disk> QuorumNode<D> {
    /// Opens the node over what `disk` holds (a fresh disk: an empty log with `voters`).
    pub fn open(config: &QuorumConfig, mut disk: D) -> Result<QuorumNode<D>, String> {
        let stored = disk
            .load()
            .map_err(|e| format!("cannot read the metadata log: {e}"))?;
        let state = ClusterState::decode(stored.snapshot.get_data())?;
        let voters: Vec<u64> = config.voters.iter().map(|&v| raft_id(v)).collect();
        let store = LogStore::new(stored, &voters);
        let raft_config = raft::Config {
            id: raft_id(config.node),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: store.snapshot_index(),
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(|e| format!("invalid quorum settings: {e}"))?;
        let logger = slog::Logger::root(super::TracingDrain, slog::o!());
        let mut raw = RawNode::new(&raft_config, store.clone(), &logger)
            .map_err(|e| format!("cannot start the quorum node: {e}"))?;
        if voters == [raft_id(config.node)] {
            // Alone: no one to wait for.
            let _ = raw.campaign();
        }
        Ok(QuorumNode {
            raw,
            store,
            disk,
            state: Arc::new(state),
            snapshot_every: config.snapshot_every.max(1),
        })
    }

    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// A message from a peer. Messages from strangers or stale ones are dropped by Raft.
    pub fn step(&mut self, message: Message) {
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(error = %e, "quorum message dropped");
        }
    }

    /// Proposes `records` as one entry; `context` comes back with it when it commits.
    pub fn propose(&mut self, context: Vec<u8>, records: &[MetadataRecord]) -> Result<(), String> {
        if !self.is_leader() {
            return Err("not the active controller".into());
        }
        self.raw
            .propose(context, encode_records(records))
            .map_err(|e| e.to_string())
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The current leader's node id, if one is known.
    pub fn leader(&self) -> Option<i32> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(node_id(id)),
        }
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn state(&self) -> &Arc<ClusterState> {
        &self.state
    }

    /// How far each voter's log matches the leader's (leader only): node id, matched index.
    pub fn progress(&self) -> Vec<(i32, u64)> {
        if !self.is_leader() {
            return Vec::new();
        }
        let mut all: Vec<(i32, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, progress)| (node_id(*id), progress.matched))
            .collect();
        all.sort_unstable();
        all
    }

    /// Tells Raft a peer could not be reached, so it stops pipelining to it.
    pub fn unreachable(&mut self, node: i32) {
        self.raw.report_unreachable(raft_id(node));
    }

    /// Handles everything Raft has ready: persists, applies, and returns what to send.
    pub fn process(&mut self) -> std::io::Result<Output> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut ready = self.raw.ready();
        out.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let state = ClusterState::decode(snapshot.get_data())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.store.apply_snapshot(snapshot.clone());
            self.disk
                .compact(&snapshot, &[], &self.store.hard_state())?;
            self.state = Arc::new(state);
            out.changed = true;
        }
        self.apply(ready.take_committed_entries(), &mut out);
        let mut written = false;
        if !ready.entries().is_empty() {
            self.store.append(ready.entries());
            self.disk.append(ready.entries())?;
            written = true;
        }
        if let Some(hard_state) = ready.hs() {
            self.store.set_hard_state(hard_state.clone());
            self.disk.set_hard_state(hard_state)?;
            written = true;
        }
        if written || ready.must_sync() {
            self.disk.sync()?;
        }
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.store.set_commit(commit);
            // Not synced on its own: a commit index is learned again from the quorum.
            self.disk.set_hard_state(&self.store.hard_state())?;
        }
        out.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out);
        self.raw.advance_apply();
        self.maybe_snapshot()?;
        // A snapshot is taken as delivered once handed out: if it is lost, the leader probes
        // the follower again and sends another, instead of waiting for a report for ever.
        for message in &out.messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.raw.report_snapshot(message.to, SnapshotStatus::Finish);
            }
        }
        Ok(out)
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) {
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal {
                continue;
            }
            let state = Arc::make_mut(&mut self.state);
            state.applied_index = state.applied_index.max(entry.index);
            out.changed = true;
            if entry.data.is_empty() {
                // A new leader's first entry.
                continue;
            }
            let answers = match decode_records(&entry.data) {
                Ok(records) => records
                    .into_iter()
                    .map(|record| state.apply(entry.index, record))
                    .collect(),
                Err(e) => {
                    // Written by a newer version, or damaged in a way the CRC did not catch:
                    // skipping it on every node alike keeps the nodes in agreement.
                    tracing::error!(index = entry.index, error = %e, "metadata entry skipped");
                    vec![Applied::Refused(e)]
                }
            };
            out.committed.push(Committed {
                index: entry.index,
                term: entry.term,
                context: entry.context.to_vec(),
                answers,
            });
        }
    }

    fn maybe_snapshot(&mut self) -> std::io::Result<()> {
        let applied = self.state.applied_index;
        if applied < self.store.snapshot_index() + self.snapshot_every {
            return Ok(());
        }
        if let Some((snapshot, kept)) = self.store.compact(applied, self.state.encode()) {
            self.disk
                .compact(&snapshot, &kept, &self.store.hard_state())?;
        }
        Ok(())
    }
}

//! The cluster on one broker, run by shard 0: the quorum voter (ticks, messages, persistence),
//! the active controller's duties when this node leads (leases, answering brokers' calls,
//! proposing), this broker's own registration and heartbeats, and the publisher that turns
//! each applied state into the `Image` every shard reads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use raft::eraftpb::Message;

use super::controller::{Leases, RegisterDecision, Registration};
use super::quorum::{node_id, Committed, QuorumConfig, QuorumNode};
use super::state::{Applied, ClusterState, MetadataRecord};
use super::store::FileDisk;
use super::transport::{self, Peer, PeerEvents};
use super::wire::{ControllerAnswer, ControllerCall, QuorumHeader};
use crate::broker::metadata::{self, Image};
use crate::broker::shard::Shard;
use crate::config::{BrokerConfig, QuorumVoter};

use crate::runtime;

/// How long a proposal may wait for its commit.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker's call on the controller waits for an answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a broker that cannot reach the quorum says so.
const UNREACHABLE_LOG_EVERY: Duration = Duration::from_secs(3);
/// Applied entries between snapshots of the metadata.
const SNAPSHOT_EVERY: u64 = 4096;
/// Producer ids a broker takes from the controller at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// How long controlled shutdown waits for the controller to move leadership away.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

pub struct Node {
    pub me: i32,
    config: Arc<BrokerConfig>,
    voters: Vec<QuorumVoter>,
    voter_ids: Vec<i32>,
    quorum: RefCell<QuorumNode<FileDisk>>,
    leases: RefCell<Leases>,
    was_leader: Cell<bool>,
    known_leader: Cell<Option<i32>>,
    peers: HashMap<i32, Rc<Peer>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Committed>>>,
    next_tag: Cell<u64>,
    started: Instant,
    changed: mpsc::UnboundedSender<()>,
    changed_rx: RefCell<Option<mpsc::UnboundedReceiver<()>>>,
    published_index: Cell<u64>,
    publish_waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    pub incarnation: [u8; 16],
    /// This broker's registration epoch, once registered.
    pub epoch: Cell<Option<u64>>,
    ready: Cell<bool>,
    ready_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Controlled shutdown: heartbeats ask the controller to move leadership away.
    want_shutdown: Cell<bool>,
    /// Set once the node takes part in the quorum (after `check_id`): until then peers'
    /// messages are dropped, so a node that turns out to be a duplicate never votes.
    joined: Cell<bool>,
    /// This broker's producer-id block: next, end.
    producer_ids: Cell<(i64, i64)>,
    producer_lock: runtime::LocalLock,
    /// Where controller-side calls are serialised (topic changes validate against the state).
    pub control_lock: runtime::LocalLock,
}

impl Node {
    pub fn open(config: Arc<BrokerConfig>) -> anyhow::Result<Rc<Node>> {
        let voters = config.quorum_voters();
        let voter_ids: Vec<i32> = voters.iter().map(|v| v.id).collect();
        let me = config.broker_id;
        let tick_ms = config.controller_quorum_heartbeat_interval_ms.max(1);
        let quorum_config = QuorumConfig {
            node: me,
            voters: voter_ids.clone(),
            election_ticks: (config.controller_quorum_election_timeout_ms / tick_ms).max(2)
                as usize,
            heartbeat_ticks: 1,
            snapshot_every: SNAPSHOT_EVERY,
        };
        let dir = config
            .data_dir()
            .join(metadata::CLUSTER_DIR)
            .join("metadata");
        let quorum = QuorumNode::open(&quorum_config, FileDisk::new(&dir))
            .map_err(|e| anyhow::anyhow!("{e} ({})", dir.display()))?;
        let peers = voters
            .iter()
            .filter(|v| v.id != me)
            .map(|v| (v.id, Peer::new(v.id, v.address())))
            .collect();
        let (changed, changed_rx) = mpsc::unbounded();
        Ok(Rc::new(Node {
            me,
            voters,
            voter_ids,
            quorum: RefCell::new(quorum),
            leases: RefCell::new(Leases::new(config.broker_session_timeout_ms)),
            was_leader: Cell::new(false),
            known_leader: Cell::new(None),
            peers,
            pending: RefCell::new(HashMap::new()),
            next_tag: Cell::new(1),
            started: Instant::now(),
            changed,
            changed_rx: RefCell::new(Some(changed_rx)),
            published_index: Cell::new(0),
            publish_waiters: RefCell::new(Vec::new()),
            incarnation: *uuid::Uuid::new_v4().as_bytes(),
            epoch: Cell::new(None),
            ready: Cell::new(false),
            ready_waiters: RefCell::new(Vec::new()),
            want_shutdown: Cell::new(false),
            joined: Cell::new(false),
            producer_ids: Cell::new((0, 0)),
            producer_lock: runtime::LocalLock::new(1),
            control_lock: runtime::LocalLock::new(1),
            config,
        }))
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Starts the node's tasks on shard 0.
    /// Before taking part in the quorum: asks the voters whether another live broker, at
    /// another address, already has this node's id, and stops the process (exit 2) if so. A
    /// Raft voter with a live twin could vote twice in a term. With no voter reachable or no
    /// leader yet (the whole cluster is starting), there is no live twin to find.
    pub async fn check_id(&self, shard: &Shard) {
        let call = ControllerCall::CheckId {
            registration: self.registration(shard),
        };
        let mut asked: Vec<i32> = Vec::new();
        let mut next: Vec<i32> = self
            .voter_ids
            .iter()
            .copied()
            .filter(|&v| v != self.me)
            .collect();
        while let Some(id) = next.pop() {
            if asked.contains(&id) || id == self.me {
                continue;
            }
            asked.push(id);
            let Some(voter) = self.voters.iter().find(|v| v.id == id) else {
                continue;
            };
            match transport::call(&voter.address(), &call, Duration::from_millis(500)).await {
                Ok(ControllerAnswer::DuplicateId { host, port }) => fatal_config(&format!(
                    "node.id (broker.id) {} is already used by the live broker at {host}:{port}; \
                     give every broker its own id",
                    self.me
                )),
                Ok(ControllerAnswer::Mismatch(why)) => fatal_config(&why),
                Ok(ControllerAnswer::NotController {
                    leader: Some(leader),
                }) => next.push(leader),
                // The leader said the id is free, or nobody could tell.
                _ => {}
            }
        }
    }

    pub fn start(self: &Rc<Self>, shard: &Rc<Shard>) {
        self.joined.set(true);
        let header = QuorumHeader {
            from: self.me,
            cluster_id: self.config.cluster_id.clone(),
            voters: self.voter_ids.clone(),
        };
        for peer in self.peers.values() {
            let events: Rc<dyn PeerEvents> = self.clone();
            runtime::spawn(peer.clone().run(header.clone(), events));
        }
        runtime::spawn(self.clone().run_ticks());
        runtime::spawn(self.clone().run_publisher(shard.clone()));
        runtime::spawn(self.clone().run_broker(shard.clone()));
        self.process();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    /// Resolves once this broker is registered, unfenced and has applied the metadata.
    pub fn wait_ready(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.ready.get() {
            let _ = tx.send(());
        } else {
            self.ready_waiters.borrow_mut().push(tx);
        }
        rx
    }

    pub fn leader(&self) -> Option<i32> {
        self.quorum.borrow().leader()
    }

    pub fn is_leader(&self) -> bool {
        self.quorum.borrow().is_leader()
    }

    pub fn state(&self) -> Arc<ClusterState> {
        self.quorum.borrow().state().clone()
    }

    /// The quorum as this node sees it: voters, leader, term, commit index, and (on the
    /// leader) each voter's matched index.
    pub fn quorum_status(&self) -> QuorumStatus {
        let quorum = self.quorum.borrow();
        QuorumStatus {
            voters: self.voters.iter().map(|v| (v.id, v.address())).collect(),
            leader: quorum.leader(),
            term: quorum.term(),
            commit_index: quorum.commit_index(),
            progress: quorum.progress(),
        }
    }

    /// Runs everything Raft has ready and hands its results out.
    fn process(&self) {
        let output = match self.quorum.borrow_mut().process() {
            Ok(output) => output,
            Err(e) => {
                // The metadata log cannot be written: going on would risk acknowledging what
                // is not durable.
                tracing::error!(error = %e, "metadata log write failed; stopping");
                eprintln!("shardlog: metadata log write failed: {e}");
                std::process::exit(74);
            }
        };
        for message in output.messages {
            match self.peers.get(&node_id(message.to)) {
                Some(peer) => peer.push(message),
                None => tracing::debug!(to = message.to, "message for an unknown voter"),
            }
        }
        for committed in output.committed {
            if let Some(tag) = tag_of(&committed.context) {
                if let Some(tx) = self.pending.borrow_mut().remove(&tag) {
                    let _ = tx.send(committed);
                }
            }
        }
        let leader = self.quorum.borrow().leader();
        let is_leader = self.quorum.borrow().is_leader();
        let leader_changed = leader != self.known_leader.get();
        if leader_changed {
            self.known_leader.set(leader);
            let term = self.quorum.borrow().term();
            match leader {
                Some(id) if id == self.me => {
                    tracing::info!(term, "this node is the active controller")
                }
                Some(id) => tracing::info!(term, controller = id, "controller elected"),
                None => tracing::info!(term, "no active controller"),
            }
        }
        if is_leader && !self.was_leader.get() {
            let state = self.state();
            self.leases.borrow_mut().take_over(&state, self.now_ms());
            if let Some(record) = self.legacy_import(&state) {
                self.propose_detached(vec![record]);
            }
        }
        if !is_leader && self.was_leader.get() {
            // Proposals of this term may never commit here: their callers time out.
            self.pending.borrow_mut().clear();
        }
        self.was_leader.set(is_leader);
        if output.changed || leader_changed {
            let _ = self.changed.unbounded_send(());
        }
    }

    /// A single-node data directory from before the metadata log: its tables become the
    /// first entry, once, when this node alone is the quorum.
    fn legacy_import(&self, state: &ClusterState) -> Option<MetadataRecord> {
        if self.voter_ids != [self.me] || state.applied_index > 1 || !state.topics.is_empty() {
            return None;
        }
        let data_dir = self.config.data_dir();
        let table = metadata::load_table(data_dir).ok()?;
        let configs = metadata::load_configs(data_dir).unwrap_or_default();
        let producer_ids_end = metadata::read_legacy_producer_ids(data_dir);
        if table.topics.is_empty() && configs == Default::default() && producer_ids_end == 0 {
            return None;
        }
        tracing::info!(
            topics = table.topics.len(),
            "importing the topic table of a single-node data directory into the metadata log"
        );
        Some(MetadataRecord::ImportLegacy {
            broker: self.me,
            table,
            configs,
            producer_ids_end,
        })
    }

    pub fn step(&self, messages: Vec<Message>) {
        if !self.joined.get() {
            return;
        }
        {
            let mut quorum = self.quorum.borrow_mut();
            for message in messages {
                quorum.step(message);
            }
        }
        self.process();
    }

    /// Whether a peer's quorum header matches this node's configuration; the reason if not.
    pub fn check_peer(&self, header: &QuorumHeader) -> Result<(), String> {
        if header.cluster_id != self.config.cluster_id {
            return Err(format!(
                "cluster.id differs: node {} has {:?}, node {} has {:?}",
                header.from, header.cluster_id, self.me, self.config.cluster_id
            ));
        }
        if header.voters != self.voter_ids {
            return Err(format!(
                "controller.quorum.voters differs between brokers: node {} names voters {:?}, node {} names {:?}",
                header.from, header.voters, self.me, self.voter_ids
            ));
        }
        if !self.voter_ids.contains(&header.from) {
            return Err(format!(
                "node {} is not among controller.quorum.voters {:?}",
                header.from, self.voter_ids
            ));
        }
        Ok(())
    }

    /// Proposes `records` as one entry and waits for it to commit (leader only).
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<Committed, String> {
        let tag = self.next_tag.get();
        self.next_tag.set(tag + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(tag, tx);
        let proposed = self
            .quorum
            .borrow_mut()
            .propose(tag.to_be_bytes().to_vec(), &records);
        if let Err(e) = proposed {
            self.pending.borrow_mut().remove(&tag);
            return Err(e);
        }
        self.process();
        match runtime::timeout(PROPOSAL_TIMEOUT, rx).await {
            Some(Ok(committed)) => Ok(committed),
            Some(Err(_)) => {
                Err("the controller lost its leadership before the change committed".into())
            }
            None => {
                self.pending.borrow_mut().remove(&tag);
                Err("the change did not commit in time".into())
            }
        }
    }

    /// Proposes and waits until the result is applied and published on this broker's shards.
    pub async fn propose_and_publish(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Committed, String> {
        let committed = self.propose(records).await?;
        self.wait_published(committed.index).await;
        Ok(committed)
    }

    /// Proposes without waiting; the caller or the next tick processes it.
    fn propose_detached(&self, records: Vec<MetadataRecord>) {
        if let Err(e) = self.quorum.borrow_mut().propose(Vec::new(), &records) {
            tracing::debug!(error = %e, "proposal dropped");
        }
    }

    pub async fn wait_published(&self, index: u64) {
        if self.published_index.get() >= index {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.publish_waiters.borrow_mut().push((index, tx));
        let _ = rx.await;
    }

    /// Ticks the quorum until the process ends (through shutdown too: the other voters may
    /// need this one for their majority while its connections drain).
    async fn run_ticks(self: Rc<Self>) {
        let interval =
            Duration::from_millis(self.config.controller_quorum_heartbeat_interval_ms.max(1));
        let mut last_tick = Instant::now();
        loop {
            runtime::sleep(interval).await;
            let stalled = last_tick.elapsed();
            last_tick = Instant::now();
            self.quorum.borrow_mut().tick();
            if self.is_leader() && stalled > interval * 5 {
                // This process was not running (paused, or starved of CPU): the brokers may
                // have heartbeated all along, unheard. Give them a whole session again rather
                // than fence them all for this node's own stall.
                tracing::warn!(
                    stalled_ms = stalled.as_millis() as u64,
                    "the controller was stalled; broker leases restart"
                );
                self.leases
                    .borrow_mut()
                    .take_over(&self.state(), self.now_ms());
            }
            if self.is_leader() {
                let state = self.state();
                // Never this node's own broker: its heartbeats come from this very process, so
                // a late one means this controller was stalled too, not that the broker is gone.
                let expired = self.leases.borrow().expired(&state, self.now_ms());
                let me = self.me;
                for record in expired
                    .into_iter()
                    .filter(|r| !matches!(r, MetadataRecord::FenceBroker { id, .. } if *id == me))
                {
                    if let MetadataRecord::FenceBroker { id, .. } = &record {
                        tracing::warn!(broker = id, "broker lease ran out; fencing it");
                    }
                    self.propose_detached(vec![record]);
                }
            }
            self.process();
        }
    }

    async fn run_publisher(self: Rc<Self>, shard: Rc<Shard>) {
        let Some(mut changed) = self.changed_rx.borrow_mut().take() else {
            return;
        };
        while changed.next().await.is_some() {
            while changed.try_recv().is_ok() {}
            let state = self.state();
            let controller = self.leader();
            let image = Arc::new(Image::build(&state, &self.config, controller));
            if let Err(e) = shard.publish_image(image).await {
                tracing::error!(error = %e, "cannot apply the cluster metadata");
                continue;
            }
            self.published_index.set(state.applied_index);
            let mut waiters = self.publish_waiters.borrow_mut();
            let mut kept = Vec::new();
            for (index, tx) in waiters.drain(..) {
                if index <= state.applied_index {
                    let _ = tx.send(());
                } else {
                    kept.push((index, tx));
                }
            }
            *waiters = kept;
            drop(waiters);
            self.check_ready(&state);
        }
    }

    fn check_ready(&self, state: &ClusterState) {
        if self.ready.get() {
            return;
        }
        let Some(epoch) = self.epoch.get() else {
            return;
        };
        let registered = state
            .brokers
            .get(&self.me)
            .is_some_and(|b| b.epoch == epoch && !b.fenced);
        if registered {
            self.ready.set(true);
            tracing::info!(epoch, "broker registered and unfenced");
            for tx in self.ready_waiters.borrow_mut().drain(..) {
                let _ = tx.send(());
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // This broker's side: registration and heartbeats.

    fn registration(&self, shard: &Shard) -> Registration {
        let (host, port) = advertised(&self.config, shard.port.get());
        Registration {
            id: self.me,
            incarnation: self.incarnation,
            host,
            port,
            shards: self.config.num_shards as u32,
            rack: self.config.broker_rack.clone(),
        }
    }

    async fn run_broker(self: Rc<Self>, shard: Rc<Shard>) {
        let interval = Duration::from_millis(self.config.broker_heartbeat_interval_ms.max(1));
        let mut last_complaint = Instant::now();
        'register: loop {
            let call = ControllerCall::Register {
                registration: self.registration(&shard),
                cluster_id: self.config.cluster_id.clone(),
                voters: self.voter_ids.clone(),
            };
            match self.call_controller(call).await {
                ControllerAnswer::Registered { epoch } => {
                    self.epoch.set(Some(epoch));
                    tracing::info!(epoch, "registered with the controller");
                    let _ = self.changed.unbounded_send(());
                }
                ControllerAnswer::DuplicateId { host, port } => fatal_config(&format!(
                    "node.id (broker.id) {} is already used by the live broker at {host}:{port}; \
                     give every broker its own id",
                    self.me
                )),
                ControllerAnswer::Mismatch(why) => fatal_config(&why),
                other => {
                    if last_complaint.elapsed() >= UNREACHABLE_LOG_EVERY {
                        last_complaint = Instant::now();
                        self.complain_unreachable(&other);
                    }
                    if self.want_shutdown.get() {
                        return;
                    }
                    runtime::sleep(Duration::from_millis(100)).await;
                    continue 'register;
                }
            }
            loop {
                let Some(epoch) = self.epoch.get() else {
                    continue 'register;
                };
                let want_shutdown = self.want_shutdown.get();
                let call = ControllerCall::Heartbeat {
                    id: self.me,
                    epoch,
                    want_shutdown,
                };
                match self.call_controller(call).await {
                    ControllerAnswer::Heartbeat(answer) if answer.stale => {
                        tracing::warn!(
                            "the controller no longer knows this registration; registering again"
                        );
                        self.epoch.set(None);
                        self.ready.set(false);
                        continue 'register;
                    }
                    ControllerAnswer::Heartbeat(answer) => {
                        if want_shutdown && answer.shutting_down {
                            // `shut_down` saw it too; nothing more to say to the controller.
                            return;
                        }
                    }
                    other => {
                        if last_complaint.elapsed() >= UNREACHABLE_LOG_EVERY {
                            last_complaint = Instant::now();
                            self.complain_unreachable(&other);
                        }
                    }
                }
                runtime::sleep(if want_shutdown {
                    Duration::from_millis(20)
                } else {
                    interval
                })
                .await;
            }
        }
    }

    fn complain_unreachable(&self, answer: &ControllerAnswer) {
        let unreachable: Vec<String> = self
            .peers
            .values()
            .filter_map(|peer| {
                peer.last_error
                    .borrow()
                    .as_ref()
                    .map(|e| format!("voter {} at {}: {e}", peer.id, peer.address))
            })
            .collect();
        tracing::warn!(
            answer = ?answer,
            unreachable = %unreachable.join("; "),
            "waiting for the controller quorum (controller.quorum.voters)"
        );
    }

    /// Controlled shutdown: asks the controller to move this broker's leadership away and
    /// waits for it (bounded), so clients are sent elsewhere before the port closes.
    pub async fn shut_down(&self) {
        let Some(epoch) = self.epoch.get() else {
            return;
        };
        if self.voter_ids == [self.me] {
            // Alone: there is no one to hand leadership to.
            return;
        }
        self.want_shutdown.set(true);
        let started = Instant::now();
        while started.elapsed() < SHUTDOWN_WAIT {
            let call = ControllerCall::Heartbeat {
                id: self.me,
                epoch,
                want_shutdown: true,
            };
            if let ControllerAnswer::Heartbeat(answer) = self.call_controller(call).await {
                if answer.shutting_down || answer.stale {
                    tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        "controlled shutdown: leadership moved away"
                    );
                    return;
                }
            }
            runtime::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!("the controller did not confirm the controlled shutdown in time");
    }

    /// Calls the active controller: this node if it leads, else the leader it knows of,
    /// following NOT_CONTROLLER hints, for up to `CALL_TIMEOUT`.
    pub async fn call_controller(&self, call: ControllerCall) -> ControllerAnswer {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut hint: Option<i32> = None;
        loop {
            let leader = hint.take().or_else(|| self.leader());
            let answer = match leader {
                Some(id) if id == self.me => self.handle_call(call.clone()).await,
                Some(id) => match self.voters.iter().find(|v| v.id == id) {
                    Some(voter) => transport::call(&voter.address(), &call, CALL_TIMEOUT)
                        .await
                        .unwrap_or_else(ControllerAnswer::Failed),
                    None => ControllerAnswer::Failed(format!("leader {id} is not a voter")),
                },
                None => ControllerAnswer::NotController { leader: None },
            };
            match answer {
                ControllerAnswer::NotController { leader } if Instant::now() < deadline => {
                    hint = leader.filter(|&l| Some(l) != self.leader() || l == self.me);
                    runtime::sleep(Duration::from_millis(50)).await;
                }
                ControllerAnswer::Failed(_) if Instant::now() < deadline => {
                    runtime::sleep(Duration::from_millis(100)).await;
                }
                answer => return answer,
            }
        }
    }

    /// Serves a call on the active controller.
    pub async fn handle_call(&self, call: ControllerCall) -> ControllerAnswer {
        if let ControllerCall::CheckId { registration } = &call {
            if !self.is_leader() {
                // Any voter can tell from the applied state: a registration of this id at
                // another address that is not fenced is a live broker (the leader also knows
                // its lease).
                let state = self.state();
                return match state.brokers.get(&registration.id) {
                    Some(b)
                        if !b.fenced
                            && b.incarnation != registration.incarnation
                            && (b.host != registration.host || b.port != registration.port) =>
                    {
                        ControllerAnswer::DuplicateId {
                            host: b.host.clone(),
                            port: b.port,
                        }
                    }
                    _ => ControllerAnswer::IdFree,
                };
            }
        }
        if !self.is_leader() {
            return ControllerAnswer::NotController {
                leader: self.leader(),
            };
        }
        match call {
            ControllerCall::Register {
                registration,
                cluster_id,
                voters,
            } => {
                if cluster_id != self.config.cluster_id || voters != self.voter_ids {
                    return ControllerAnswer::Mismatch(format!(
                        "broker {} names cluster.id {cluster_id:?} and controller.quorum.voters {voters:?}; \
                         the controller has {:?} and {:?}",
                        registration.id, self.config.cluster_id, self.voter_ids
                    ));
                }
                let decision =
                    self.leases
                        .borrow()
                        .register(&self.state(), &registration, self.now_ms());
                match decision {
                    RegisterDecision::Known(epoch) => ControllerAnswer::Registered { epoch },
                    RegisterDecision::Duplicate { host, port } => {
                        ControllerAnswer::DuplicateId { host, port }
                    }
                    RegisterDecision::Propose(record) => match self.propose(vec![record]).await {
                        Ok(committed) => match committed.answers.first() {
                            Some(Applied::BrokerEpoch(epoch)) => {
                                self.leases.borrow_mut().heartbeat(
                                    &self.state(),
                                    registration.id,
                                    *epoch,
                                    false,
                                    self.now_ms(),
                                );
                                ControllerAnswer::Registered { epoch: *epoch }
                            }
                            other => ControllerAnswer::Failed(format!("{other:?}")),
                        },
                        Err(e) => ControllerAnswer::Failed(e),
                    },
                }
            }
            ControllerCall::Heartbeat {
                id,
                epoch,
                want_shutdown,
            } => {
                let (answer, record) = self.leases.borrow_mut().heartbeat(
                    &self.state(),
                    id,
                    epoch,
                    want_shutdown,
                    self.now_ms(),
                );
                if let Some(record) = record {
                    self.propose_detached(vec![record]);
                    self.process();
                }
                ControllerAnswer::Heartbeat(answer)
            }
            ControllerCall::DescribeQuorum => ControllerAnswer::Quorum(self.quorum_status()),
            ControllerCall::CheckId { registration } => {
                match self
                    .leases
                    .borrow()
                    .register(&self.state(), &registration, self.now_ms())
                {
                    RegisterDecision::Duplicate { host, port } => {
                        ControllerAnswer::DuplicateId { host, port }
                    }
                    _ => ControllerAnswer::IdFree,
                }
            }
            ControllerCall::Control(_) => {
                ControllerAnswer::Failed("control requests are served by the broker".into())
            }
            ControllerCall::AllocateProducerIds { broker, count } => {
                match self
                    .propose(vec![MetadataRecord::AllocateProducerIds { broker, count }])
                    .await
                {
                    Ok(committed) => match committed.answers.first() {
                        Some(Applied::ProducerIds(start)) => {
                            ControllerAnswer::ProducerIds { start: *start }
                        }
                        other => ControllerAnswer::Failed(format!("{other:?}")),
                    },
                    Err(e) => ControllerAnswer::Failed(e),
                }
            }
        }
    }

    /// A producer id never handed out before, from this broker's block (a new block from the
    /// controller when it is used up).
    pub async fn allocate_producer_id(&self) -> Result<i64, String> {
        let _permit = self.producer_lock.acquire_permit(1).await;
        let (next, end) = self.producer_ids.get();
        if next < end {
            self.producer_ids.set((next + 1, end));
            return Ok(next);
        }
        let call = ControllerCall::AllocateProducerIds {
            broker: self.me,
            count: PRODUCER_ID_BLOCK,
        };
        match self.call_controller(call).await {
            ControllerAnswer::ProducerIds { start } => {
                self.producer_ids
                    .set((start + 1, start + PRODUCER_ID_BLOCK));
                Ok(start)
            }
            other => Err(format!("no producer ids from the controller: {other:?}")),
        }
    }
}

impl PeerEvents for Node {
    fn unreachable(&self, peer: i32) {
        self.quorum.borrow_mut().unreachable(peer);
    }

    fn refused(&self, peer: i32, why: String) {
        if !self.ready.get() {
            fatal_config(&format!("voter {peer} refused this node: {why}"));
        }
        tracing::error!(peer, %why, "a voter refuses this node's messages");
    }
}

/// The quorum as one node sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QuorumStatus {
    pub voters: Vec<(i32, String)>,
    pub leader: Option<i32>,
    pub term: u64,
    pub commit_index: u64,
    /// On the leader: how far each voter's log is known to match (node id, index).
    pub progress: Vec<(i32, u64)>,
}

fn tag_of(context: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(context.try_into().ok()?))
}

/// A configuration error found at run time (another broker's answer): exit 2, as a bad
/// config file does.
fn fatal_config(message: &str) -> ! {
    tracing::error!("{message}");
    eprintln!("shardlog: configuration error: {message}");
    std::process::exit(2);
}

/// The address clients are sent to for this broker: the advertised client listener, with
/// the bound port when the configured one was 0.
pub fn advertised(config: &BrokerConfig, bound_port: u16) -> (String, u16) {
    let client = config.client_listener();
    let listener = config
        .advertised_listeners
        .iter()
        .find(|l| l.name == client.name)
        .or(config.advertised_listeners.first())
        .unwrap_or(client);
    let port = if listener.port == 0 {
        bound_port
    } else {
        listener.port
    };
    (listener.host.clone(), port)
}

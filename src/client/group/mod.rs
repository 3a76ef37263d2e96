//! Consumer groups for our consumer, with the classic protocol, as Kafka's Java client runs
//! them. The member offers its assignors (`range`, `cooperative-sticky`) in JoinGroup with the
//! member-id handshake; the broker picks the one every member supports; the leader computes the
//! assignment from the members' subscriptions (`assignor.rs`), everyone gets theirs through
//! SyncGroup, and newly assigned partitions start from the group's committed offsets.
//!
//! Everything happens from `poll` and `close`: heartbeats, auto commits, and rebalances. A
//! JoinGroup or SyncGroup in flight runs as its own task while `poll` goes on returning records
//! of the partitions the member keeps, so a cooperative rebalance never stops consumption.
//!
//! Rebalance protocols, decided by the configured assignors as in the Java client: eager unless
//! every assignor is cooperative. Eager: commit, revoke everything, then join. Cooperative
//! (KIP-429): commit, join while keeping the owned partitions (they travel in the subscription),
//! revoke only those missing from the new assignment, and rejoin at once if there were any, so
//! the next rebalance can hand them to their new owner. A member fenced outside a rebalance
//! (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION) loses its partitions instead: `on_partitions_lost`,
//! no commit.
//!
//! Invariant: `owned` is what the member last acknowledged as its assignment, and the
//! underlying consumer is assigned exactly `owned`.

pub mod assignor;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::Either;
use kafka_protocol::messages::{self as m, ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub use assignor::{
    cooperative_sticky_assignment, range_assignment, sticky_assignment, Assignor,
    MemberSubscription, TopicPartition,
};

use super::connection::Connection;
use super::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset};
use super::ClientError;

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: find it again.
const COORDINATOR_ERRORS: [i16; 3] = [14, 15, 16];
/// How long a join waits after the coordinator moved or failed before trying again.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// The ConsumerProtocolSubscription version we send: v1 added the owned partitions, v2 the
/// generation (the leader resolves two members claiming one partition by it). v3 adds only a
/// rack, which we do not know.
const SUBSCRIPTION_VERSION: i16 = 2;

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Offered in this order of preference. The default is the Java client's since 3.0,
    /// `[range, cooperative-sticky]`, which runs the eager protocol (range is eager) but lets a
    /// rolling restart move a group to `[cooperative-sticky]` alone, which is cooperative.
    pub assignors: Vec<Assignor>,
    /// Commit the positions of what `poll` returned every `auto_commit_interval`, before
    /// partitions are revoked, and on `close` (Java: `enable.auto.commit`, default true).
    pub enable_auto_commit: bool,
    /// Java: `auto.commit.interval.ms`, default 5 s.
    pub auto_commit_interval: Duration,
}

impl GroupConfig {
    pub fn new(group_id: &str) -> Self {
        GroupConfig {
            group_id: group_id.to_owned(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
        }
    }

    fn validate(&self) -> Result<(), ClientError> {
        if self.assignors.is_empty() {
            return Err(ClientError::Config(
                "a group member needs an assignor".into(),
            ));
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(ClientError::Config(format!(
                "heartbeat interval {:?} must be below the session timeout {:?}",
                self.heartbeat_interval, self.session_timeout
            )));
        }
        Ok(())
    }

    /// Cooperative only when every assignor offered can be: the member must know before
    /// joining whether to give everything up, and the broker may pick any of them.
    pub fn is_cooperative(&self) -> bool {
        self.assignors.iter().all(|a| a.supports_cooperative())
    }
}

/// Called from `poll` and `close` at the points where Kafka's Java client calls its
/// `ConsumerRebalanceListener`. Commits asked for through the context are sent when the
/// callback returns, before the rebalance goes on (so a commit on revoke lands before the next
/// owner reads the committed offset); seeks apply to the member's consumer.
pub trait RebalanceListener {
    /// Eager: everything the member owns, before it rejoins. Cooperative: only the partitions
    /// the new assignment takes away. Also on `close`, for everything still owned.
    fn on_partitions_revoked(
        &mut self,
        _partitions: &BTreeSet<TopicPartition>,
        _context: &mut RebalanceContext<'_>,
    ) {
    }

    /// After every completed rebalance, with the partitions new to the member (all of its
    /// assignment when eager); possibly empty, as in the Java client.
    fn on_partitions_assigned(
        &mut self,
        _partitions: &BTreeSet<TopicPartition>,
        _context: &mut RebalanceContext<'_>,
    ) {
    }

    /// The member was fenced: its partitions may already belong to others, so commits are not
    /// possible (the context drops them). By default treated like a revocation, as in Java.
    fn on_partitions_lost(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        context: &mut RebalanceContext<'_>,
    ) {
        self.on_partitions_revoked(partitions, context);
    }
}

/// What a rebalance callback may do: read positions, ask for commits, seek.
pub struct RebalanceContext<'a> {
    consumer: &'a Consumer,
    owned: &'a BTreeSet<TopicPartition>,
    commits: BTreeMap<TopicPartition, i64>,
    seeks: Vec<(TopicPartition, Offset)>,
    can_commit: bool,
}

impl RebalanceContext<'_> {
    /// The next offset the member would read from `partition`, once known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.consumer.position(topic, partition)
    }

    /// Commits the positions of every partition the member owns at this point (in a revoke,
    /// those include the ones going away).
    pub fn commit(&mut self) {
        for (topic, partition) in self.owned {
            if let Some(offset) = self.consumer.position(topic, *partition) {
                self.commits.insert((topic.clone(), *partition), offset);
            }
        }
    }

    /// Commits these offsets (the next offset to read, per partition).
    pub fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, i64>) {
        self.commits
            .extend(offsets.iter().map(|(slot, offset)| (slot.clone(), *offset)));
    }

    /// Where to start an assigned partition instead of its committed offset.
    pub fn seek(&mut self, topic: &str, partition: i32, to: Offset) {
        self.seeks.push(((topic.to_owned(), partition), to));
    }

    /// False in `on_partitions_lost`: the member is no longer in the generation.
    pub fn can_commit(&self) -> bool {
        self.can_commit
    }
}

#[derive(Clone, Copy)]
enum Callback {
    Revoked,
    Assigned,
    Lost,
}

/// The answer of the group request in flight.
enum GroupReply {
    Joined(Result<m::JoinGroupResponse, ClientError>),
    Synced(Result<m::SyncGroupResponse, ClientError>),
}

type GroupRequest = Pin<Box<dyn Future<Output = GroupReply>>>;

enum Phase {
    /// In a generation, heartbeating.
    Stable,
    /// Must (re)join: the next `poll` prepares (commit, revoke) and sends JoinGroup.
    NeedsJoin { not_before: Instant },
    /// JoinGroup or SyncGroup in flight.
    Waiting(GroupRequest),
}

pub struct GroupConsumer {
    consumer: Consumer,
    config: GroupConfig,
    consumer_config: ConsumerConfig,
    topics: Vec<String>,
    coordinator: Option<Rc<Connection>>,
    member_id: String,
    generation: i32,
    owned: BTreeSet<TopicPartition>,
    phase: Phase,
    /// Fenced outside a rebalance: the next join reports the partitions lost.
    generation_lost: bool,
    last_heartbeat: Instant,
    last_auto_commit: Instant,
    /// What we last committed per partition, so an auto commit skips partitions that did not
    /// move.
    committed: BTreeMap<TopicPartition, i64>,
    listener: Option<Box<dyn RebalanceListener>>,
    /// A failed commit asked for by a callback: `poll` reports it once the rebalance step that
    /// ran the callback is done.
    deferred_error: Option<ClientError>,
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// An embedded consumer-protocol message: a version, then the message in that version.
fn embed<M: Encodable>(message: &M, version: i16) -> Result<Bytes, ClientError> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| ClientError::Config(format!("cannot encode a group message: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes an embedded message. A version newer than we know is read as the newest we know:
/// the consumer protocol only appends fields, so older readers ignore the tail.
fn unembed<M: Decodable>(mut bytes: Bytes) -> Option<(i16, M)> {
    if bytes.len() < 2 {
        return None;
    }
    let version = bytes.get_i16().clamp(0, 3);
    M::decode(&mut bytes, version).ok().map(|m| (version, m))
}

fn by_topic(partitions: &BTreeSet<TopicPartition>) -> BTreeMap<String, Vec<i32>> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        out.entry(topic.clone()).or_default().push(*partition);
    }
    out
}

/// A member's JoinGroup metadata as the leader needs it; unreadable metadata subscribes to
/// nothing (that member then gets nothing rather than failing the whole group).
fn decode_subscription(metadata: Bytes) -> MemberSubscription {
    let Some((version, sub)) = unembed::<m::ConsumerProtocolSubscription>(metadata) else {
        return MemberSubscription::default();
    };
    MemberSubscription {
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .flat_map(|tp| {
                let topic = tp.topic.0.to_string();
                tp.partitions.iter().map(move |p| (topic.clone(), *p))
            })
            .collect(),
        generation: if version >= 2 { sub.generation_id } else { -1 },
    }
}

fn encode_assignment(assigned: &BTreeSet<TopicPartition>) -> Result<Bytes, ClientError> {
    let mut assignment = m::ConsumerProtocolAssignment::default();
    assignment.assigned_partitions = by_topic(assigned)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut tp = m::consumer_protocol_assignment::TopicPartition::default();
            tp.topic = TopicName(s(&topic));
            tp.partitions = partitions;
            tp
        })
        .collect();
    embed(&assignment, 0)
}

fn decode_assignment(bytes: Bytes) -> BTreeSet<TopicPartition> {
    unembed::<m::ConsumerProtocolAssignment>(bytes)
        .map(|(_, a)| {
            a.assigned_partitions
                .iter()
                .flat_map(|tp| {
                    let topic = tp.topic.0.to_string();
                    tp.partitions.iter().map(move |p| (topic.clone(), *p))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An error code that no branch expected, as an error.
fn unexpected(code: i16) -> ClientError {
    ClientError::from_code(code, None)
        .unwrap_or_else(|| ClientError::Config(format!("error code {code} handled as an error")))
}

impl GroupConsumer {
    pub async fn connect(
        consumer_config: ConsumerConfig,
        config: GroupConfig,
        topics: &[&str],
    ) -> Result<GroupConsumer, ClientError> {
        config.validate()?;
        let consumer = Consumer::connect(consumer_config.clone()).await?;
        let now = Instant::now();
        Ok(GroupConsumer {
            consumer,
            config,
            consumer_config,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            owned: BTreeSet::new(),
            phase: Phase::NeedsJoin { not_before: now },
            generation_lost: false,
            last_heartbeat: now,
            last_auto_commit: now,
            committed: BTreeMap::new(),
            listener: None,
            deferred_error: None,
        })
    }

    /// The callbacks run at rebalances (replacing any earlier listener).
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// The partitions the member owns now.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Whether this member rebalances cooperatively (every configured assignor can).
    pub fn is_cooperative(&self) -> bool {
        self.config.is_cooperative()
    }

    /// The next offset `poll` returns from an owned partition, once known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.consumer.position(topic, partition)
    }

    /// Moves an owned partition (see `Consumer::seek`).
    pub fn seek(&mut self, topic: &str, partition: i32, to: Offset) {
        if self.owned.contains(&(topic.to_owned(), partition)) {
            self.consumer.seek(topic, partition, to);
        }
    }

    pub fn pause(&mut self, topic: &str, partition: i32) {
        self.consumer.pause(topic, partition);
    }

    pub fn resume(&mut self, topic: &str, partition: i32) {
        self.consumer.resume(topic, partition);
    }

    /// Records from the member's partitions. Joins or rejoins the group when needed,
    /// heartbeats and auto-commits when due, and runs the rebalance callbacks.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        if let Some(error) = self.deferred_error.take() {
            return Err(error);
        }
        self.step().await?;
        if let Some(error) = self.deferred_error.take() {
            return Err(error);
        }
        let raced = if let Phase::Waiting(request) = &mut self.phase {
            // The partitions kept through a rebalance go on being read while the group
            // request waits; whichever finishes first wins, and the consumer's poll is safe to
            // drop at any await point (in-flight fetches stay in the consumer).
            let records = self.consumer.poll();
            futures::pin_mut!(records);
            match futures::future::select(request.as_mut(), records).await {
                Either::Left((reply, _)) => Either::Left(reply),
                Either::Right((records, _)) => Either::Right(records),
            }
        } else {
            Either::Right(self.consumer.poll().await)
        };
        match raced {
            Either::Right(records) => records,
            Either::Left(reply) => {
                self.phase = Phase::NeedsJoin {
                    not_before: Instant::now(),
                };
                self.on_reply(reply).await?;
                match self.deferred_error.take() {
                    Some(error) => Err(error),
                    None => Ok(Vec::new()),
                }
            }
        }
    }

    /// Commits the member's current positions (of what `poll` returned) for the current
    /// generation.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let offsets = self.positions(&self.owned.clone());
        self.commit_offsets(&offsets).await
    }

    /// Commits these offsets (the next offset to read, per partition).
    pub async fn commit_offsets(
        &mut self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::OffsetCommit, (2, 8))?;
        let mut request = m::OffsetCommitRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.generation_id_or_member_epoch = self.generation;
        request.member_id = s(&self.member_id);
        let mut topics: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            let mut p = m::offset_commit_request::OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            topics.entry(topic.as_str()).or_default().push(p);
        }
        request.topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = m::offset_commit_request::OffsetCommitRequestTopic::default();
                t.name = TopicName(s(name));
                t.partitions = partitions;
                t
            })
            .collect();
        // With a JoinGroup or SyncGroup in flight the generation may move on while the
        // commit travels: a refusal for the old generation is that rebalance, not fencing
        // (the join's own answer tells if the member is out), as the Java client decides.
        let rebalancing = matches!(self.phase, Phase::Waiting(_));
        let response: m::OffsetCommitResponse = coordinator
            .send(ApiKey::OffsetCommit, version, &request)
            .await?;
        let mut failure = None;
        for t in &response.topics {
            for p in &t.partitions {
                let slot = (t.name.0.to_string(), p.partition_index);
                match p.error_code {
                    0 => {
                        if let Some(offset) = offsets.get(&slot) {
                            self.committed.insert(slot, *offset);
                        }
                    }
                    ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID if rebalancing => {
                        failure.get_or_insert(REBALANCE_IN_PROGRESS);
                    }
                    code => {
                        self.note_group_error(code);
                        failure.get_or_insert(code);
                    }
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(code) => Err(unexpected(code)),
        }
    }

    /// The group's committed offsets of `partitions` (those that have one).
    pub async fn committed(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::OffsetFetch, (1, 7))?;
        let mut request = m::OffsetFetchRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.require_stable = true;
        request.topics = Some(
            by_topic(partitions)
                .into_iter()
                .map(|(name, partitions)| {
                    let mut t = m::offset_fetch_request::OffsetFetchRequestTopic::default();
                    t.name = TopicName(s(&name));
                    t.partition_indexes = partitions;
                    t
                })
                .collect(),
        );
        let response: m::OffsetFetchResponse = coordinator
            .send(ApiKey::OffsetFetch, version, &request)
            .await?;
        if let Some(error) = ClientError::from_code(response.error_code, None) {
            if COORDINATOR_ERRORS.contains(&response.error_code) {
                self.coordinator = None;
            }
            return Err(error);
        }
        let mut out = BTreeMap::new();
        for t in &response.topics {
            for p in &t.partitions {
                if let Some(error) = ClientError::from_code(p.error_code, None) {
                    return Err(error);
                }
                if p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Leaves the group (its partitions go to the others at once): auto-commits, runs the
    /// revoke (or lost) callback, then LeaveGroup. The member leaves even when the commit
    /// fails; the first error is returned.
    pub async fn close(mut self) -> Result<(), ClientError> {
        // A JoinGroup or SyncGroup in flight is abandoned; LeaveGroup ends the membership.
        self.phase = Phase::Stable;
        let mut first_error = self.deferred_error.take();
        if self.generation_lost {
            self.give_up(Callback::Lost).await;
        } else {
            if self.config.enable_auto_commit {
                if let Err(e) = self.commit().await {
                    first_error.get_or_insert(e);
                }
            }
            self.give_up(Callback::Revoked).await;
        }
        if let Some(e) = self.deferred_error.take() {
            first_error.get_or_insert(e);
        }
        if !self.member_id.is_empty() {
            if let Err(e) = self.leave().await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn leave(&mut self) -> Result<(), ClientError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::LeaveGroup, (0, 4))?;
        let mut request = m::LeaveGroupRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        if version >= 3 {
            let mut identity = m::leave_group_request::MemberIdentity::default();
            identity.member_id = s(&self.member_id);
            request.members.push(identity);
        } else {
            request.member_id = s(&self.member_id);
        }
        let response: m::LeaveGroupResponse = coordinator
            .send(ApiKey::LeaveGroup, version, &request)
            .await?;
        match response.error_code {
            // Already gone (session expired): nothing left to leave.
            0 | UNKNOWN_MEMBER_ID => Ok(()),
            code => Err(unexpected(code)),
        }
    }

    /// The group's housekeeping before records are fetched: a finished group request, then
    /// (when in a generation) the auto commit and heartbeat that are due, then a join that is
    /// needed.
    async fn step(&mut self) -> Result<(), ClientError> {
        if let Phase::Waiting(request) = &mut self.phase {
            if let Poll::Ready(reply) = futures::poll!(request.as_mut()) {
                self.phase = Phase::NeedsJoin {
                    not_before: Instant::now(),
                };
                self.on_reply(reply).await?;
            }
        }
        if matches!(self.phase, Phase::Stable) {
            if self.config.enable_auto_commit
                && self.last_auto_commit.elapsed() >= self.config.auto_commit_interval
            {
                self.auto_commit().await?;
            }
            if self.last_heartbeat.elapsed() >= self.config.heartbeat_interval {
                self.heartbeat().await?;
            }
        }
        if let Phase::NeedsJoin { not_before } = self.phase {
            if Instant::now() >= not_before {
                self.start_join().await?;
            }
        }
        Ok(())
    }

    /// Positions (the next offset to return) of those of `partitions` that have one.
    fn positions(&self, partitions: &BTreeSet<TopicPartition>) -> BTreeMap<TopicPartition, i64> {
        partitions
            .iter()
            .filter_map(|(t, p)| {
                self.consumer
                    .position(t, *p)
                    .map(|offset| ((t.clone(), *p), offset))
            })
            .collect()
    }

    /// Commits what moved since the last commit. Failures that a rebalance explains (or that
    /// a retry fixes) are logged, not returned: the next auto commit or the revoke covers it.
    async fn auto_commit_of(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<(), ClientError> {
        self.last_auto_commit = Instant::now();
        let mut offsets = self.positions(partitions);
        offsets.retain(|slot, offset| self.committed.get(slot) != Some(offset));
        match self.commit_offsets(&offsets).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.is_retriable()
                    || matches!(
                        e.code(),
                        Some(ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | REBALANCE_IN_PROGRESS)
                    ) =>
            {
                tracing::warn!(group = %self.config.group_id, "auto commit failed: {e}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn auto_commit(&mut self) -> Result<(), ClientError> {
        let owned = self.owned.clone();
        self.auto_commit_of(&owned).await
    }

    /// What a group error code means for the membership, wherever it came from.
    fn note_group_error(&mut self, code: i16) {
        match code {
            REBALANCE_IN_PROGRESS => self.rejoin(),
            ILLEGAL_GENERATION => {
                self.generation_lost = true;
                self.rejoin();
            }
            UNKNOWN_MEMBER_ID => {
                self.generation_lost = true;
                self.member_id.clear();
                self.rejoin();
            }
            code if COORDINATOR_ERRORS.contains(&code) => self.coordinator = None,
            _ => {}
        }
    }

    /// Asks for a rejoin, unless one is already under way (its outcome decides).
    fn rejoin(&mut self) {
        if matches!(self.phase, Phase::Stable) {
            self.phase = Phase::NeedsJoin {
                not_before: Instant::now(),
            };
        }
    }

    async fn coordinator(&mut self) -> Result<Rc<Connection>, ClientError> {
        if let Some(c) = self.coordinator.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let bootstrap = Connection::connect(
            &self.consumer_config.bootstrap,
            &self.consumer_config.client_id,
        )
        .await?;
        let version = bootstrap.version(ApiKey::FindCoordinator, (1, 3))?;
        let mut request = m::FindCoordinatorRequest::default();
        request.key = s(&self.config.group_id);
        let response: m::FindCoordinatorResponse = bootstrap
            .send(ApiKey::FindCoordinator, version, &request)
            .await?;
        if let Some(error) = ClientError::from_code(response.error_code, None) {
            return Err(error);
        }
        let address = format!("{}:{}", response.host, response.port);
        let coordinator = Connection::connect(&address, &self.consumer_config.client_id).await?;
        self.coordinator = Some(coordinator.clone());
        Ok(coordinator)
    }

    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::Heartbeat, (0, 3))?;
        let mut request = m::HeartbeatRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.generation_id = self.generation;
        request.member_id = s(&self.member_id);
        let response: m::HeartbeatResponse = coordinator
            .send(ApiKey::Heartbeat, version, &request)
            .await?;
        self.last_heartbeat = Instant::now();
        match response.error_code {
            0 => Ok(()),
            code if matches!(
                code,
                REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID
            ) || COORDINATOR_ERRORS.contains(&code) =>
            {
                self.note_group_error(code);
                Ok(())
            }
            code => Err(unexpected(code)),
        }
    }

    /// Runs a callback over `partitions` and carries out what it asked for: seeks at once,
    /// commits before returning (a failure is kept for `poll` to report).
    async fn run_callback(&mut self, kind: Callback, partitions: &BTreeSet<TopicPartition>) {
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
        let mut context = RebalanceContext {
            consumer: &self.consumer,
            owned: &self.owned,
            commits: BTreeMap::new(),
            seeks: Vec::new(),
            can_commit: !matches!(kind, Callback::Lost),
        };
        match kind {
            Callback::Revoked => listener.on_partitions_revoked(partitions, &mut context),
            Callback::Assigned => listener.on_partitions_assigned(partitions, &mut context),
            Callback::Lost => listener.on_partitions_lost(partitions, &mut context),
        }
        let RebalanceContext {
            commits,
            seeks,
            can_commit,
            ..
        } = context;
        for ((topic, partition), to) in seeks {
            self.seek(&topic, partition, to);
        }
        if !can_commit {
            if !commits.is_empty() {
                tracing::warn!(
                    group = %self.config.group_id,
                    "commits asked for in on_partitions_lost are dropped: the member was fenced"
                );
            }
            return;
        }
        if let Err(e) = self.commit_offsets(&commits).await {
            self.deferred_error.get_or_insert(e);
        }
    }

    /// Gives up every owned partition (before an eager join, on close, or when fenced).
    async fn give_up(&mut self, kind: Callback) {
        if self.owned.is_empty() {
            return;
        }
        let all = self.owned.clone();
        self.run_callback(kind, &all).await;
        self.owned.clear();
        self.consumer.assign(&[]);
    }

    /// Java's `onJoinPrepare`, then JoinGroup in the background.
    async fn start_join(&mut self) -> Result<(), ClientError> {
        if self.generation_lost {
            self.give_up(Callback::Lost).await;
            self.generation_lost = false;
            self.generation = -1;
        } else {
            if self.config.enable_auto_commit {
                self.auto_commit().await?;
            }
            // The commit may have found the member fenced.
            if self.generation_lost {
                return Box::pin(self.start_join()).await;
            }
            if !self.config.is_cooperative() {
                self.give_up(Callback::Revoked).await;
            }
        }
        let coordinator = match self.coordinator().await {
            Ok(c) => c,
            Err(e) if e.is_retriable() => {
                self.retry_later();
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let version = coordinator.version(ApiKey::JoinGroup, (4, 5))?;
        let mut subscription = m::ConsumerProtocolSubscription::default();
        subscription.topics = self.topics.iter().map(|t| s(t)).collect();
        // Empty rather than null, as librdkafka sends it: old readers choke on null.
        subscription.user_data = Some(Bytes::new());
        subscription.owned_partitions = by_topic(&self.owned)
            .into_iter()
            .map(|(topic, partitions)| {
                let mut tp = m::consumer_protocol_subscription::TopicPartition::default();
                tp.topic = TopicName(s(&topic));
                tp.partitions = partitions;
                tp
            })
            .collect();
        subscription.generation_id = self.generation;
        let metadata = embed(&subscription, SUBSCRIPTION_VERSION)?;
        let mut request = m::JoinGroupRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.session_timeout_ms = self.config.session_timeout.as_millis() as i32;
        request.rebalance_timeout_ms = self.config.rebalance_timeout.as_millis() as i32;
        request.member_id = s(&self.member_id);
        request.protocol_type = s("consumer");
        for assignor in &self.config.assignors {
            let mut protocol = m::join_group_request::JoinGroupRequestProtocol::default();
            protocol.name = s(assignor.name());
            protocol.metadata = metadata.clone();
            request.protocols.push(protocol);
        }
        let task = crate::runtime::spawn_task(async move {
            GroupReply::Joined(coordinator.send(ApiKey::JoinGroup, version, &request).await)
        });
        self.phase = Phase::Waiting(Box::pin(task));
        Ok(())
    }

    fn retry_later(&mut self) {
        self.coordinator = None;
        self.phase = Phase::NeedsJoin {
            not_before: Instant::now() + RETRY_BACKOFF,
        };
    }

    /// A JoinGroup or SyncGroup answer. On entry the phase is `NeedsJoin`; this moves it on.
    async fn on_reply(&mut self, reply: GroupReply) -> Result<(), ClientError> {
        match reply {
            GroupReply::Joined(Err(e)) | GroupReply::Synced(Err(e)) if e.is_retriable() => {
                self.retry_later();
                Ok(())
            }
            GroupReply::Joined(Err(e)) | GroupReply::Synced(Err(e)) => Err(e),
            GroupReply::Joined(Ok(joined)) => self.on_joined(joined).await,
            GroupReply::Synced(Ok(synced)) => self.on_synced(synced).await,
        }
    }

    async fn on_joined(&mut self, joined: m::JoinGroupResponse) -> Result<(), ClientError> {
        match joined.error_code {
            0 => {}
            MEMBER_ID_REQUIRED => {
                // The handshake: the same join again, with the id the broker gave us.
                self.member_id = joined.member_id.to_string();
                return self.start_join().await;
            }
            UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                self.generation_lost = true;
                return self.start_join().await;
            }
            REBALANCE_IN_PROGRESS => return self.start_join().await,
            code if COORDINATOR_ERRORS.contains(&code) => {
                self.retry_later();
                return Ok(());
            }
            code => return Err(unexpected(code)),
        }
        self.member_id = joined.member_id.to_string();
        self.generation = joined.generation_id;
        let protocol = joined
            .protocol_name
            .as_ref()
            .and_then(|name| Assignor::from_name(name))
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "the group chose protocol {:?}, which this member did not offer",
                    joined.protocol_name
                ))
            })?;
        let mut assignments = Vec::new();
        if joined.leader == joined.member_id {
            let members: BTreeMap<String, MemberSubscription> = joined
                .members
                .iter()
                .map(|member| {
                    (
                        member.member_id.to_string(),
                        decode_subscription(member.metadata.clone()),
                    )
                })
                .collect();
            let all: BTreeSet<String> = members.values().flat_map(|m| m.topics.clone()).collect();
            let partitions = self.consumer.partition_counts(&all).await?;
            let assignment: BTreeMap<String, BTreeSet<TopicPartition>> = match protocol {
                Assignor::Range => {
                    let subscriptions = members
                        .iter()
                        .map(|(id, m)| (id.clone(), m.topics.iter().cloned().collect()))
                        .collect();
                    range_assignment(&subscriptions, &partitions)
                        .into_iter()
                        .map(|(id, topics)| {
                            let set = topics
                                .into_iter()
                                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                                .collect();
                            (id, set)
                        })
                        .collect()
                }
                Assignor::CooperativeSticky => cooperative_sticky_assignment(&members, &partitions),
            };
            for (member, assigned) in assignment {
                let mut a = m::sync_group_request::SyncGroupRequestAssignment::default();
                a.member_id = s(&member);
                a.assignment = encode_assignment(&assigned)?;
                assignments.push(a);
            }
        }
        let coordinator = match self.coordinator().await {
            Ok(c) => c,
            Err(e) if e.is_retriable() => {
                self.retry_later();
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let version = coordinator.version(ApiKey::SyncGroup, (0, 5))?;
        let mut request = m::SyncGroupRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.generation_id = self.generation;
        request.member_id = s(&self.member_id);
        request.protocol_type = Some(s("consumer"));
        request.protocol_name = Some(s(protocol.name()));
        request.assignments = assignments;
        let task = crate::runtime::spawn_task(async move {
            GroupReply::Synced(coordinator.send(ApiKey::SyncGroup, version, &request).await)
        });
        self.phase = Phase::Waiting(Box::pin(task));
        Ok(())
    }

    /// Java's `onJoinComplete`.
    async fn on_synced(&mut self, synced: m::SyncGroupResponse) -> Result<(), ClientError> {
        match synced.error_code {
            0 => {}
            // Another rebalance started meanwhile: join it.
            REBALANCE_IN_PROGRESS => return self.start_join().await,
            ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => {
                self.note_group_error(synced.error_code);
                return self.start_join().await;
            }
            code if COORDINATOR_ERRORS.contains(&code) => {
                self.retry_later();
                return Ok(());
            }
            code => return Err(unexpected(code)),
        }
        let assigned = decode_assignment(synced.assignment);
        // Eager members own nothing here: they gave everything up before joining.
        let revoked: BTreeSet<TopicPartition> = self.owned.difference(&assigned).cloned().collect();
        if !revoked.is_empty() {
            if self.config.enable_auto_commit {
                self.auto_commit_of(&revoked).await?;
            }
            self.run_callback(Callback::Revoked, &revoked).await;
        }
        let added: BTreeSet<TopicPartition> = assigned.difference(&self.owned).cloned().collect();
        self.owned = assigned;
        let slots: Vec<(&str, i32)> = self.owned.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        self.consumer.assign(&slots);
        // Retained partitions keep their positions; new ones start from the group's commits.
        match self.committed(&added).await {
            Ok(commits) => {
                for ((topic, partition), offset) in commits {
                    self.consumer.seek(&topic, partition, Offset::At(offset));
                }
            }
            Err(e) => {
                // Without the commits the new partitions would start at the reset policy and
                // re-read or skip records: give the assignment back and join again.
                tracing::warn!(group = %self.config.group_id, "cannot fetch commits: {e}");
                self.owned.retain(|slot| !added.contains(slot));
                let slots: Vec<(&str, i32)> =
                    self.owned.iter().map(|(t, p)| (t.as_str(), *p)).collect();
                self.consumer.assign(&slots);
                self.retry_later();
                return Ok(());
            }
        }
        self.run_callback(Callback::Assigned, &added).await;
        self.last_heartbeat = Instant::now();
        self.phase = if revoked.is_empty() {
            Phase::Stable
        } else {
            // KIP-429: rejoin at once so the revoked partitions reach their new owner.
            Phase::NeedsJoin {
                not_before: Instant::now(),
            }
        };
        Ok(())
    }
}

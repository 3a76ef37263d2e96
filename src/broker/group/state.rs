//! One consumer group under the classic protocol: members, generations and the rebalance state
//! machine (Empty → PreparingRebalance → CompletingRebalance → Stable). Pure logic: time comes
//! in as arguments, waiting callers get a receiver, and writes to `__consumer_offsets` are left
//! to the coordinator (`needs_persist`, `SyncStep::Persist`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;

use super::records::{CommittedOffset, StoredGroup, StoredMember};
use crate::protocol::error_code as code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The clock an operation runs at.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub wall_ms: i64,
}

/// What a JoinGroup caller receives.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, metadata for the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// JoinGroup v9+: a static leader that rejoined a Stable group is told it leads, but must
    /// not compute a new assignment (the group keeps the current one).
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: i16, member_id: &str) -> Self {
        JoinOutcome {
            error,
            generation: -1,
            member_id: member_id.to_owned(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: i16) -> Self {
        SyncOutcome {
            error,
            ..Default::default()
        }
    }
}

/// An answer now, or one that comes when the rebalance gets there.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    deadline: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }
}

pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub client_id: String,
    pub client_host: String,
    /// JoinGroup v4+: a new dynamic member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: the answer may carry `skip_assignment`.
    pub supports_skip_assignment: bool,
}

pub struct SyncParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

pub enum SyncStep {
    Reply(Reply<SyncOutcome>),
    /// The leader's assignment: write `record`, then call `Group::finish_sync`.
    Persist {
        waiter: oneshot::Receiver<SyncOutcome>,
        generation: i32,
        record: StoredGroup,
    },
}

/// What offset retention takes from an idle group.
#[derive(Debug, PartialEq, Eq)]
pub struct Expiry {
    pub expired: Vec<(String, i32)>,
    /// Nothing is left: the group itself goes.
    pub remove_group: bool,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// Wall time of the last state change (offset retention counts from the time a group
    /// became empty).
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used, with their deadline.
    pending: HashMap<String, Instant>,
    /// Static membership: group.instance.id → current member id.
    statics: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// The initial delay of a rebalance that started from an empty group.
    join_not_before: Option<Instant>,
    sync_deadline: Option<Instant>,
    pending_assignment: Option<HashMap<String, Bytes>>,
    pub offsets: HashMap<(String, i32), CommittedOffset>,
    /// The group record must be written (a change not tied to a waiting caller).
    pub needs_persist: bool,
    /// Set for a group of the new consumer protocol (KIP-848); its members live there.
    pub consumer: Option<super::consumer::ConsumerGroup>,
}

impl Group {
    pub fn new(id: &str, now: Now) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            state_since_ms: now.wall_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            join_not_before: None,
            sync_deadline: None,
            pending_assignment: None,
            offsets: HashMap::new(),
            needs_persist: false,
            consumer: None,
        }
    }

    /// Rebuilds a group from its stored record: members come back with fresh session deadlines.
    pub fn restore(id: &str, stored: StoredGroup, now: Now) -> Group {
        let mut group = Group::new(id, now);
        group.generation = stored.generation;
        group.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        group.protocol = stored.protocol;
        group.leader = stored.leader;
        if stored.state_timestamp_ms >= 0 {
            group.state_since_ms = stored.state_timestamp_ms;
        }
        let protocol = group.protocol.clone().unwrap_or_default();
        for m in stored.members {
            if let Some(instance) = &m.instance_id {
                group.statics.insert(instance.clone(), m.member_id.clone());
            }
            let session = Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            group.members.push(Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: session,
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                join_waiter: None,
                sync_waiter: None,
                deadline: now.instant + session,
            });
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    /// The record that describes this group in `__consumer_offsets`.
    pub fn stored(&self, assignments: Option<&HashMap<String, Bytes>>) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_since_ms,
            members: self
                .members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata(&protocol),
                    assignment: assignments
                        .and_then(|a| a.get(&m.id).cloned())
                        .unwrap_or_else(|| m.assignment.clone()),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.pending.is_empty()
            && self.consumer.as_ref().is_none_or(|c| c.is_empty())
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn set_state(&mut self, state: GroupState, now: Now) {
        self.state = state;
        self.state_since_ms = now.wall_ms;
    }

    /// Static membership: a known instance id used with another member id is a zombie.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.statics.get(i))
            .is_some_and(|current| current != member_id)
    }

    /// Checks a member's standing for Heartbeat, SyncGroup and OffsetCommit.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if self.fenced(member_id, instance_id) {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if self.member(member_id).is_none() {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }

    /// Protocols every member (and the candidate) supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn new_member_id(prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    pub fn join(&mut self, p: JoinParams, now: Now, initial_delay: Duration) -> Reply<JoinOutcome> {
        if self.state == GroupState::Dead {
            return Reply::Now(JoinOutcome::error(
                code::COORDINATOR_NOT_AVAILABLE,
                &p.member_id,
            ));
        }
        if !self.supports(&p.protocol_type, &p.protocols) {
            return Reply::Now(JoinOutcome::error(
                code::INCONSISTENT_GROUP_PROTOCOL,
                &p.member_id,
            ));
        }
        if p.member_id.is_empty() {
            return self.join_new(p, now, initial_delay);
        }
        if self.pending.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            self.add_member(id.clone(), p, now);
            return self.park_join(&id, now, initial_delay, true);
        }
        if self.fenced(&p.member_id, p.instance_id.as_deref()) {
            return Reply::Now(JoinOutcome::error(code::FENCED_INSTANCE_ID, &p.member_id));
        }
        let Some(member) = self.member_mut(&p.member_id) else {
            return Reply::Now(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, &p.member_id));
        };
        let changed = member.protocols != p.protocols;
        member.protocols = p.protocols;
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.client_id = p.client_id;
        member.client_host = p.client_host;
        member.deadline = now.instant + member.session_timeout;
        let is_leader = self.leader.as_deref() == Some(p.member_id.as_str());
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance
                if !(changed || is_leader && self.state == GroupState::Stable) =>
            {
                // A rejoin that changes nothing: the current generation stands.
                Reply::Now(self.join_outcome(&p.member_id))
            }
            _ => self.park_join(&p.member_id, now, initial_delay, false),
        }
    }

    fn join_new(&mut self, p: JoinParams, now: Now, initial_delay: Duration) -> Reply<JoinOutcome> {
        if let Some(instance) = p.instance_id.clone() {
            let new_id = Self::new_member_id(&instance);
            if let Some(old_id) = self.statics.get(&instance).cloned() {
                if self.member(&old_id).is_none() {
                    self.statics.remove(&instance);
                    return self.join_new(p, now, initial_delay);
                }
                return self.rejoin_static(&instance, &old_id, new_id, p, now, initial_delay);
            }
            self.statics.insert(instance, new_id.clone());
            self.add_member(new_id.clone(), p, now);
            return self.park_join(&new_id, now, initial_delay, true);
        }
        let new_id = Self::new_member_id(if p.client_id.is_empty() {
            "member"
        } else {
            &p.client_id
        });
        if p.require_known_member_id {
            self.pending
                .insert(new_id.clone(), now.instant + p.session_timeout);
            return Reply::Now(JoinOutcome::error(code::MEMBER_ID_REQUIRED, &new_id));
        }
        self.add_member(new_id.clone(), p, now);
        self.park_join(&new_id, now, initial_delay, true)
    }

    /// A known static member joins with a new member id (it restarted): Kafka's
    /// `updateStaticMemberAndRebalance`. The old id is fenced; in a Stable group whose selected
    /// protocol stays the same, the member gets the current generation and keeps its
    /// assignment, and nobody rebalances. Otherwise the group rebalances.
    fn rejoin_static(
        &mut self,
        instance: &str,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now: Now,
        initial_delay: Duration,
    ) -> Reply<JoinOutcome> {
        let leader_before = self.leader.clone().unwrap_or_default();
        self.replace_static_member(instance, old_id, &new_id);
        let supports_skip_assignment = p.supports_skip_assignment;
        let member = self.member_mut(&new_id).expect("replaced above");
        member.protocols = p.protocols;
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.client_id = p.client_id;
        member.client_host = p.client_host;
        member.deadline = now.instant + member.session_timeout;
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol => {
                // The replacement is stored (in the background) so that a reload knows the
                // new member id.
                self.needs_persist = true;
                let mut outcome = self.join_outcome(&new_id);
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                if supports_skip_assignment {
                    outcome.skip_assignment = is_leader;
                } else {
                    // Before v9 a member that reads itself as leader assigns, and a Stable
                    // group would not pass that assignment on: so the answer names the leader
                    // by the old id and carries no members.
                    outcome.leader = leader_before;
                    outcome.members.clear();
                }
                Reply::Now(outcome)
            }
            // The selected protocol would change, or the leader may already have been sent the
            // old member id for assignment (CompletingRebalance): rebalance. In
            // PreparingRebalance the member simply joins the rebalance under its new id.
            _ => self.park_join(&new_id, now, initial_delay, false),
        }
    }

    /// Kafka's `GroupMetadata.replaceStaticMember`: the member keeps its place, metadata and
    /// assignment under `new_id`; a caller waiting under the old id is fenced; leadership
    /// follows the member.
    fn replace_static_member(&mut self, instance: &str, old_id: &str, new_id: &str) {
        let was_leader = self.leader.as_deref() == Some(old_id);
        if let Some(member) = self.member_mut(old_id) {
            if let Some(w) = member.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(code::FENCED_INSTANCE_ID, old_id));
            }
            if let Some(w) = member.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(code::FENCED_INSTANCE_ID));
            }
            member.id = new_id.to_owned();
        }
        if let Some(assignments) = self.pending_assignment.as_mut() {
            if let Some(assignment) = assignments.remove(old_id) {
                assignments.insert(new_id.to_owned(), assignment);
            }
        }
        self.statics.insert(instance.to_owned(), new_id.to_owned());
        if was_leader {
            self.leader = Some(new_id.to_owned());
        }
    }

    fn add_member(&mut self, id: String, p: JoinParams, now: Now) {
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        self.members.push(Member {
            id,
            instance_id: p.instance_id,
            client_id: p.client_id,
            client_host: p.client_host,
            session_timeout: p.session_timeout,
            rebalance_timeout: p.rebalance_timeout,
            protocol_type: p.protocol_type,
            protocols: p.protocols,
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            deadline: now.instant + p.session_timeout,
        });
    }

    fn park_join(
        &mut self,
        member_id: &str,
        now: Now,
        initial_delay: Duration,
        new_member: bool,
    ) -> Reply<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(member) = self.member_mut(member_id) {
            member.join_waiter = Some(tx);
        }
        match self.state {
            GroupState::PreparingRebalance => {
                if new_member {
                    if let (Some(not_before), Some(deadline)) =
                        (self.join_not_before, self.rebalance_deadline)
                    {
                        // Joins during the initial delay extend it (up to the rebalance timeout).
                        self.join_not_before =
                            Some((now.instant + initial_delay).min(deadline).max(not_before));
                    }
                }
            }
            _ => self.prepare_rebalance(now, initial_delay),
        }
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    fn prepare_rebalance(&mut self, now: Now, initial_delay: Duration) {
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                m.assignment = Bytes::new();
            }
        }
        self.pending_assignment = None;
        for m in &mut self.members {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(code::REBALANCE_IN_PROGRESS));
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.set_state(GroupState::PreparingRebalance, now);
        let deadline = now.instant + self.rebalance_timeout();
        self.rebalance_deadline = Some(deadline);
        self.sync_deadline = None;
        self.join_not_before = (was_empty && !initial_delay.is_zero())
            .then(|| (now.instant + initial_delay).min(deadline));
    }

    /// A rebalance waits as long as its most patient member allows.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn try_complete_join(&mut self, now: Now) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.join_not_before.is_some_and(|t| now.instant < t) {
            return;
        }
        let all_joined = self.pending.is_empty() && self.members.iter().all(Member::awaiting_join);
        let expired = self.rebalance_deadline.is_some_and(|t| now.instant >= t);
        if !all_joined && !expired {
            return;
        }
        if !all_joined {
            // Members that did not rejoin in time are out; so are unused member ids.
            self.pending.clear();
            let gone: Vec<String> = self
                .members
                .iter()
                .filter(|m| !m.awaiting_join())
                .map(|m| m.id.clone())
                .collect();
            for id in gone {
                self.drop_member(&id);
            }
        }
        self.complete_join(now);
    }

    fn complete_join(&mut self, now: Now) {
        self.rebalance_deadline = None;
        self.join_not_before = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            self.needs_persist = true;
            return;
        }
        self.protocol = self.select_protocol();
        let leader_present = self
            .leader
            .as_ref()
            .is_some_and(|l| self.member(l).is_some());
        if !leader_present {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now);
        self.sync_deadline = Some(now.instant + self.rebalance_timeout());
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let outcome = self.join_outcome(&id);
            if let Some(member) = self.member_mut(&id) {
                member.deadline = now.instant + member.session_timeout;
                if let Some(w) = member.join_waiter.take() {
                    let _ = w.send(outcome);
                }
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in &self.members {
            if let Some(choice) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(_, n)| **n == choice.0) {
                    v.0 += 1;
                }
            }
        }
        // Ties go to the earlier candidate in the first member's order.
        let mut best: Option<(usize, &String)> = None;
        for (count, name) in votes {
            if best.is_none_or(|(c, _)| count > c) {
                best = Some((count, name));
            }
        }
        best.map(|(_, n)| n.clone())
    }

    fn join_outcome(&self, member_id: &str) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
            skip_assignment: false,
        }
    }

    /// Removes a member without any rebalance bookkeeping.
    fn drop_member(&mut self, member_id: &str) {
        if let Some(i) = self.members.iter().position(|m| m.id == member_id) {
            let member = self.members.remove(i);
            if let Some(instance) = &member.instance_id {
                if self.statics.get(instance).is_some_and(|id| id == member_id) {
                    self.statics.remove(instance);
                }
            }
            if let Some(w) = member.join_waiter {
                let _ = w.send(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, member_id));
            }
            if let Some(w) = member.sync_waiter {
                let _ = w.send(SyncOutcome::error(code::UNKNOWN_MEMBER_ID));
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// A member leaves (LeaveGroup, session expiry): the others rebalance.
    fn remove_member(&mut self, member_id: &str, now: Now) {
        self.drop_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, Duration::ZERO);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub fn sync(&mut self, p: SyncParams, now: Now) -> SyncStep {
        let reply = |e| SyncStep::Reply(Reply::Now(SyncOutcome::error(e)));
        if let Err(e) = self.check_member(&p.member_id, p.instance_id.as_deref()) {
            return reply(e);
        }
        if p.generation != self.generation {
            return reply(code::ILLEGAL_GENERATION);
        }
        if p.protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || p.protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != self.protocol.as_ref())
        {
            return reply(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => reply(code::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => reply(code::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                let member = self.member_mut(&p.member_id).expect("checked above");
                member.deadline = now.instant + member.session_timeout;
                let assignment = member.assignment.clone();
                SyncStep::Reply(Reply::Now(self.sync_outcome(assignment)))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let member = self.member_mut(&p.member_id).expect("checked above");
                member.deadline = now.instant + member.session_timeout;
                member.sync_waiter = Some(tx);
                if self.leader.as_deref() != Some(p.member_id.as_str())
                    || self.pending_assignment.is_some()
                {
                    return SyncStep::Reply(Reply::Later(rx));
                }
                let assignments: HashMap<String, Bytes> = p.assignments.into_iter().collect();
                let record = self.stored(Some(&assignments));
                self.pending_assignment = Some(assignments);
                SyncStep::Persist {
                    waiter: rx,
                    generation: self.generation,
                    record,
                }
            }
        }
    }

    /// After the leader's assignment was written (or failed to be): answers every member
    /// waiting in SyncGroup, unless the group moved on meanwhile.
    pub fn finish_sync(&mut self, generation: i32, written: bool, now: Now) {
        if self.state != GroupState::CompletingRebalance || self.generation != generation {
            return;
        }
        let Some(mut assignments) = self.pending_assignment.take() else {
            return;
        };
        if !written {
            for m in &mut self.members {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(code::COORDINATOR_NOT_AVAILABLE));
                }
            }
            self.prepare_rebalance(now, Duration::ZERO);
            return;
        }
        self.set_state(GroupState::Stable, now);
        self.sync_deadline = None;
        let outcome = self.sync_outcome(Bytes::new());
        for m in &mut self.members {
            m.assignment = assignments.remove(&m.id).unwrap_or_default();
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome {
                    assignment: m.assignment.clone(),
                    ..outcome.clone()
                });
            }
        }
    }

    fn sync_outcome(&self, assignment: Bytes) -> SyncOutcome {
        SyncOutcome {
            error: code::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Now,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return code::COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        let member = self.member_mut(member_id).expect("checked above");
        member.deadline = now.instant + member.session_timeout;
        match self.state {
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            GroupState::Empty => code::UNKNOWN_MEMBER_ID,
            _ => code::NONE,
        }
    }

    /// LeaveGroup for one member (by member id, instance id or both).
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Now) -> i16 {
        let id = match instance_id {
            Some(instance) => match self.statics.get(instance) {
                None => return code::UNKNOWN_MEMBER_ID,
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return code::FENCED_INSTANCE_ID
                }
                Some(current) => current.clone(),
            },
            None => member_id.to_owned(),
        };
        if self.pending.remove(&id).is_some() {
            self.try_complete_join(now);
            return code::NONE;
        }
        if self.member(&id).is_none() {
            return code::UNKNOWN_MEMBER_ID;
        }
        self.remove_member(&id, now);
        code::NONE
    }

    /// Validates an offset commit's member and generation (Kafka's classic-group rules).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Now,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        if let Some(consumer) = &self.consumer {
            if !(generation < 0 && member_id.is_empty()) {
                return consumer.check_member_epoch(member_id, generation);
            }
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            // Manual commits by a consumer that is not a member: only into an idle group.
            return if self.is_empty() {
                Ok(())
            } else {
                Err(code::UNKNOWN_MEMBER_ID)
            };
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(code::ILLEGAL_GENERATION);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(code::REBALANCE_IN_PROGRESS);
        }
        let member = self.member_mut(member_id).expect("checked above");
        member.deadline = now.instant + member.session_timeout;
        Ok(())
    }

    /// Session and rebalance deadlines. Returns true if anything changed.
    pub fn tick(&mut self, now: Now) -> bool {
        let before = (self.state, self.generation, self.members.len());
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, deadline)| now.instant >= **deadline)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired_pending {
            self.pending.remove(id);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .filter(|m| now.instant >= m.deadline)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id, now);
        }
        if self.state == GroupState::CompletingRebalance
            && self.pending_assignment.is_none()
            && self.sync_deadline.is_some_and(|t| now.instant >= t)
        {
            // The leader never sent its assignment: members that did not sync are dropped.
            let silent: Vec<String> = self
                .members
                .iter()
                .filter(|m| m.sync_waiter.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in silent {
                self.drop_member(&id);
            }
            self.prepare_rebalance(now, Duration::ZERO);
        }
        self.try_complete_join(now);
        !expired_pending.is_empty() || before != (self.state, self.generation, self.members.len())
    }

    /// Offset retention (KIP-211): a group with members keeps its offsets; one that has been
    /// empty for `retention_ms` loses them all; a standalone consumer's offsets (a group with no
    /// protocol) each expire `retention_ms` after their commit. `None`: nothing to do.
    pub fn expiry(&self, now_ms: i64, retention_ms: i64) -> Option<Expiry> {
        if !self.is_empty() || self.state == GroupState::Dead {
            return None;
        }
        let idle_long_enough = now_ms.saturating_sub(self.state_since_ms) >= retention_ms;
        let mut expired: Vec<(String, i32)> = if self.protocol_type.is_some() {
            if idle_long_enough {
                self.offsets.keys().cloned().collect()
            } else {
                Vec::new()
            }
        } else {
            self.offsets
                .iter()
                .filter(|(_, v)| now_ms.saturating_sub(v.commit_timestamp_ms) >= retention_ms)
                .map(|(k, _)| k.clone())
                .collect()
        };
        expired.sort();
        let remove_group =
            expired.len() == self.offsets.len() && (idle_long_enough || !expired.is_empty());
        (!expired.is_empty() || remove_group).then_some(Expiry {
            expired,
            remove_group,
        })
    }

    /// Topics the members subscribe to, when the group uses the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.clone()?;
        let mut topics = Vec::new();
        for m in &self.members {
            let mut metadata = m.metadata(&protocol);
            if metadata.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            use kafka_protocol::protocol::Decodable;
            let _ = bytes::Buf::get_i16(&mut metadata);
            if let Ok(sub) = kafka_protocol::messages::ConsumerProtocolSubscription::decode(
                &mut metadata,
                version,
            ) {
                topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
            }
        }
        Some(topics)
    }

    pub fn describe_members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    pub fn member_metadata(&self, member: &Member) -> Bytes {
        member.metadata(self.protocol.as_deref().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Now {
        Now {
            instant: Instant::now(),
            wall_ms: ms,
        }
    }

    fn params(member: &str, require_id: bool) -> JoinParams {
        JoinParams {
            member_id: member.into(),
            instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            require_known_member_id: require_id,
            supports_skip_assignment: false,
        }
    }

    fn offset(ms: i64) -> CommittedOffset {
        CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: ms,
        }
    }

    #[test]
    fn offsets_of_a_group_expire_only_after_it_has_been_empty_for_the_retention() {
        let mut group = Group::new("g", at(0));
        let Reply::Later(_joined) = group.join(params("", false), at(0), Duration::ZERO) else {
            panic!("a join waits for the rebalance");
        };
        group.offsets.insert(("t".into(), 0), offset(0));
        assert_eq!(
            group.expiry(1_000_000, 100),
            None,
            "a group with members keeps offsets"
        );
        let member = group.members[0].id.clone();
        assert_eq!(group.leave(&member, None, at(5_000)), code::NONE);
        assert_eq!(group.state, GroupState::Empty);
        assert_eq!(group.expiry(5_050, 100), None, "empty for 50 ms only");
        let expiry = group
            .expiry(5_100, 100)
            .expect("empty for the whole retention");
        assert_eq!(expiry.expired, vec![("t".into(), 0)]);
        assert!(expiry.remove_group);
    }

    #[test]
    fn a_standalone_consumers_offsets_expire_one_by_one() {
        let mut group = Group::new("standalone", at(0));
        group.offsets.insert(("t".into(), 0), offset(0));
        group.offsets.insert(("t".into(), 1), offset(500));
        let expiry = group.expiry(200, 100).unwrap();
        assert_eq!(expiry.expired, vec![("t".into(), 0)]);
        assert!(!expiry.remove_group);
        let expiry = group.expiry(700, 100).unwrap();
        assert_eq!(expiry.expired.len(), 2);
        assert!(expiry.remove_group);
    }

    #[test]
    fn a_rebalance_waits_for_pending_members_and_drops_the_silent_ones() {
        let delay = Duration::ZERO;
        let mut group = Group::new("g", at(0));
        // Two new members get their ids first (JoinGroup v4+).
        let Reply::Now(a) = group.join(params("", true), at(0), delay) else {
            panic!()
        };
        let Reply::Now(b) = group.join(params("", true), at(0), delay) else {
            panic!()
        };
        assert_eq!(
            (a.error, b.error),
            (code::MEMBER_ID_REQUIRED, code::MEMBER_ID_REQUIRED)
        );
        // The first rejoins: the rebalance waits for the second, which is pending.
        let Reply::Later(mut first) = group.join(params(&a.member_id, true), at(0), delay) else {
            panic!()
        };
        assert!(first.try_recv().unwrap().is_none());
        let Reply::Later(mut second) = group.join(params(&b.member_id, true), at(1), delay) else {
            panic!()
        };
        let first = first
            .try_recv()
            .unwrap()
            .expect("both joined: generation 1");
        let second = second.try_recv().unwrap().expect("generation 1");
        assert_eq!((first.generation, second.generation), (1, 1));
        assert_eq!(first.leader, a.member_id);
        assert_eq!(first.members.len(), 2, "the leader gets every member");
        assert!(second.members.is_empty());
        // A stale generation is fenced; the group moves on when a member's session runs out.
        assert_eq!(
            group.heartbeat(&a.member_id, None, 0, at(2)),
            code::ILLEGAL_GENERATION
        );
        let later = Now {
            instant: Instant::now() + Duration::from_secs(11),
            wall_ms: 11_000,
        };
        assert!(group.heartbeat(&a.member_id, None, 1, later) == code::NONE);
        assert!(group.tick(later), "b's session expired");
        assert_eq!(group.members.len(), 1);
        assert_eq!(group.state, GroupState::PreparingRebalance);
    }

    /// A static member preferring `protocol`, and also supporting "roundrobin".
    fn static_params(member: &str, instance: &str, protocol: &str) -> JoinParams {
        let mut protocols = vec![(protocol.to_string(), Bytes::from_static(b"m"))];
        if protocol != "roundrobin" {
            protocols.push(("roundrobin".into(), Bytes::from_static(b"m")));
        }
        JoinParams {
            instance_id: Some(instance.into()),
            protocols,
            ..params(member, true)
        }
    }

    fn joined(reply: Reply<JoinOutcome>) -> JoinOutcome {
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(mut rx) => rx.try_recv().unwrap().expect("the join completed at once"),
        }
    }

    /// Two static members, "a" (the leader) and "b", Stable with an assignment each.
    fn stable_static_pair() -> (Group, String, String) {
        let delay = Duration::ZERO;
        let mut group = Group::new("g", at(0));
        let a = joined(group.join(static_params("", "ia", "range"), at(0), delay)).member_id;
        let Reply::Later(mut b_join) = group.join(static_params("", "ib", "range"), at(0), delay)
        else {
            panic!("b waits for a to rejoin");
        };
        let a_join = joined(group.join(static_params(&a, "ia", "range"), at(0), delay));
        let b = b_join.try_recv().unwrap().expect("generation 2").member_id;
        assert_eq!((a_join.generation, a_join.leader.as_str()), (2, a.as_str()));
        let sync = |member: &str, instance: &str, assignments: Vec<(String, Bytes)>| SyncParams {
            member_id: member.into(),
            instance_id: Some(instance.into()),
            generation: 2,
            protocol_type: None,
            protocol_name: None,
            assignments,
        };
        let SyncStep::Reply(Reply::Later(mut b_sync)) = group.sync(sync(&b, "ib", vec![]), at(0))
        else {
            panic!("b waits for the leader's assignment");
        };
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"for-a")),
            (b.clone(), Bytes::from_static(b"for-b")),
        ];
        let SyncStep::Persist { generation, .. } = group.sync(sync(&a, "ia", assignments), at(0))
        else {
            panic!("the leader's assignment is written first");
        };
        group.finish_sync(generation, true, at(0));
        assert_eq!(b_sync.try_recv().unwrap().unwrap().assignment, "for-b");
        assert_eq!(group.state, GroupState::Stable);
        (group, a, b)
    }

    #[test]
    fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
        let (mut group, a, b) = stable_static_pair();
        let rejoin = joined(group.join(static_params("", "ib", "range"), at(1), Duration::ZERO));
        assert_eq!(rejoin.error, code::NONE);
        assert_ne!(rejoin.member_id, b, "a new member id");
        assert_eq!(rejoin.generation, 2, "the current generation");
        assert_eq!(rejoin.leader, a);
        assert!(rejoin.members.is_empty());
        assert_eq!(group.state, GroupState::Stable, "no rebalance");
        assert!(group.needs_persist, "the new member id is stored");
        // The other member goes on undisturbed.
        assert_eq!(group.heartbeat(&a, Some("ia"), 2, at(2)), code::NONE);
        // The rejoined member syncs and gets what it had.
        let step = group.sync(
            SyncParams {
                member_id: rejoin.member_id.clone(),
                instance_id: Some("ib".into()),
                generation: 2,
                protocol_type: None,
                protocol_name: None,
                assignments: vec![],
            },
            at(2),
        );
        let SyncStep::Reply(Reply::Now(synced)) = step else {
            panic!("a Stable group answers at once");
        };
        assert_eq!(
            (synced.error, &synced.assignment[..]),
            (code::NONE, &b"for-b"[..])
        );
        // The old id is fenced.
        assert_eq!(
            group.heartbeat(&b, Some("ib"), 2, at(3)),
            code::FENCED_INSTANCE_ID
        );
        assert_eq!(
            group.check_commit(&b, Some("ib"), 2, at(3)),
            Err(code::FENCED_INSTANCE_ID)
        );
        assert_eq!(group.leave(&b, Some("ib"), at(3)), code::FENCED_INSTANCE_ID);
    }

    #[test]
    fn a_restarted_static_leader_stays_leader_and_skips_the_assignment() {
        let (mut group, a, _) = stable_static_pair();
        // Before JoinGroup v9: the answer names the old leader id, so the client does not
        // assign.
        let old_client =
            joined(group.join(static_params("", "ia", "range"), at(1), Duration::ZERO));
        assert_eq!(old_client.leader, a);
        assert!(old_client.members.is_empty() && !old_client.skip_assignment);
        assert_eq!(group.leader.as_deref(), Some(old_client.member_id.as_str()));
        // v9+: it is told it leads, with the members, and to skip the assignment.
        let new_client = joined(group.join(
            JoinParams {
                supports_skip_assignment: true,
                ..static_params("", "ia", "range")
            },
            at(2),
            Duration::ZERO,
        ));
        assert_eq!(new_client.leader, new_client.member_id);
        assert!(new_client.skip_assignment);
        assert_eq!(new_client.members.len(), 2);
        assert_eq!(new_client.generation, 2);
        assert_eq!(group.state, GroupState::Stable);
    }

    #[test]
    fn a_static_rejoin_that_changes_the_selected_protocol_rebalances() {
        let (mut group, _, b) = stable_static_pair();
        // b now supports only "roundrobin": "range" is no longer common to all, so the
        // selected protocol of the next generation changes.
        let Reply::Later(_rejoin) =
            group.join(static_params("", "ib", "roundrobin"), at(1), Duration::ZERO)
        else {
            panic!("a rebalance is needed");
        };
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(
            group.heartbeat(&b, Some("ib"), 2, at(2)),
            code::FENCED_INSTANCE_ID
        );
    }

    #[test]
    fn a_static_member_that_stays_away_past_its_session_is_removed_and_the_group_rebalances() {
        let (mut group, a, _) = stable_static_pair();
        let later = Now {
            instant: Instant::now() + Duration::from_secs(11),
            wall_ms: 11_000,
        };
        assert_eq!(group.heartbeat(&a, Some("ia"), 2, later), code::NONE);
        assert!(group.tick(later), "b's session expired");
        assert_eq!(group.members.len(), 1);
        assert_eq!(group.state, GroupState::PreparingRebalance);
        // Its instance id is free again: a join under it is a new member.
        let Reply::Later(_) = group.join(static_params("", "ib", "range"), later, Duration::ZERO)
        else {
            panic!("joins the rebalance");
        };
        assert_eq!(group.members.len(), 2);
    }
}

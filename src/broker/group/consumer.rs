//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat): the broker assigns.
//!
//! Every membership or subscription change bumps the group epoch and recomputes the target
//! assignment with the group's assignor (`uniform`, sticky and balanced, or `range`). Each
//! member then converges on its target through its heartbeats: partitions it must give up are
//! taken out of its assignment first, and only once its heartbeat shows it no longer owns them
//! are they handed to their new owner; a member reaches the target epoch when nothing it is due
//! is still owned by someone else. Pure logic: time comes in as arguments.
//!
//! Membership lives in memory only: after a broker restart members are unknown and rejoin (the
//! clients do so on UNKNOWN_MEMBER_ID). Committed offsets are stored like the classic groups'.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::protocol::error_code as code;

/// A partition by topic id.
pub type Partition = ([u8; 16], i32);

pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What the broker knows of the subscribed topics: name → (id, partition count).
pub type Topics = BTreeMap<String, ([u8; 16], i32)>;

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub subscribed: Vec<String>,
    pub rebalance_timeout: Duration,
    /// What the member has been told it owns.
    pub assigned: BTreeSet<Partition>,
    /// Taken away from the member, not yet released by it.
    pub revoking: BTreeSet<Partition>,
    revoking_since: Option<Instant>,
    deadline: Instant,
}

#[derive(Debug, Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignor: String,
    pub members: BTreeMap<String, Member>,
    /// The target assignment and the group epoch it was computed at.
    pub target: BTreeMap<String, BTreeSet<Partition>>,
    pub target_epoch: i32,
    /// The subscribed topics' shape when the target was computed.
    topics: Topics,
}

pub struct HeartbeatParams {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed: Option<Vec<String>>,
    pub assignor: Option<String>,
    /// `None`: unchanged since the last heartbeat.
    pub owned: Option<BTreeSet<Partition>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub error: i16,
    pub member_id: String,
    pub member_epoch: i32,
    /// `None`: the member's assignment did not change.
    pub assignment: Option<BTreeSet<Partition>>,
}

impl HeartbeatOutcome {
    fn error(error: i16, member_id: &str) -> Self {
        HeartbeatOutcome {
            error,
            member_id: member_id.to_owned(),
            member_epoch: -1,
            assignment: None,
        }
    }
}

pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

impl ConsumerGroup {
    pub fn new() -> Self {
        ConsumerGroup {
            assignor: ASSIGNORS[0].to_owned(),
            ..Default::default()
        }
    }

    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.target_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.target_epoch) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// One heartbeat. `topics` is what the broker knows of every topic (name → id, count);
    /// `session` is the session timeout.
    pub fn heartbeat(
        &mut self,
        p: HeartbeatParams,
        topics: &Topics,
        now: Instant,
        session: Duration,
    ) -> HeartbeatOutcome {
        if p.member_epoch == LEAVE_EPOCH || p.member_epoch == STATIC_LEAVE_EPOCH {
            if self.members.remove(&p.member_id).is_none() {
                return HeartbeatOutcome::error(code::UNKNOWN_MEMBER_ID, &p.member_id);
            }
            self.epoch += 1;
            self.recompute(topics);
            return HeartbeatOutcome {
                error: code::NONE,
                member_id: p.member_id,
                member_epoch: p.member_epoch,
                assignment: None,
            };
        }
        if let Some(assignor) = &p.assignor {
            if !ASSIGNORS.contains(&assignor.as_str()) {
                return HeartbeatOutcome::error(code::UNSUPPORTED_ASSIGNOR, &p.member_id);
            }
        }
        if p.member_epoch == 0 {
            if let Some(instance) = &p.instance_id {
                // A static member that comes back replaces its previous incarnation.
                let previous: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.instance_id.as_ref() == Some(instance) && m.id != p.member_id)
                    .map(|m| m.id.clone())
                    .collect();
                for id in previous {
                    self.members.remove(&id);
                }
            }
            let fresh = !self.members.contains_key(&p.member_id);
            let member = self
                .members
                .entry(p.member_id.clone())
                .or_insert_with(|| Member {
                    id: p.member_id.clone(),
                    instance_id: p.instance_id.clone(),
                    rack_id: p.rack_id.clone(),
                    client_id: p.client_id.clone(),
                    client_host: p.client_host.clone(),
                    epoch: 0,
                    subscribed: Vec::new(),
                    rebalance_timeout: Duration::from_millis(p.rebalance_timeout_ms.max(0) as u64),
                    assigned: BTreeSet::new(),
                    revoking: BTreeSet::new(),
                    revoking_since: None,
                    deadline: now + session,
                });
            if !fresh {
                // A member rejoining with epoch 0 lost its partitions.
                member.assigned.clear();
                member.revoking.clear();
                member.epoch = 0;
            }
        }
        let Some(member) = self.members.get_mut(&p.member_id) else {
            return HeartbeatOutcome::error(code::UNKNOWN_MEMBER_ID, &p.member_id);
        };
        if p.member_epoch != 0 && p.member_epoch != member.epoch {
            // Kafka lets a member one epoch behind through if it only lost partitions.
            let behind_ok = p.member_epoch < member.epoch
                && p.owned
                    .as_ref()
                    .is_some_and(|o| o.is_subset(&member.assigned));
            if !behind_ok {
                return HeartbeatOutcome::error(code::FENCED_MEMBER_EPOCH, &p.member_id);
            }
        }
        member.deadline = now + session;
        member.client_id = p.client_id;
        member.client_host = p.client_host;
        if p.rebalance_timeout_ms > 0 {
            member.rebalance_timeout = Duration::from_millis(p.rebalance_timeout_ms as u64);
        }
        let mut changed = false;
        if let Some(mut subscribed) = p.subscribed {
            subscribed.sort();
            subscribed.dedup();
            if subscribed != member.subscribed {
                member.subscribed = subscribed;
                changed = true;
            }
        }
        if let Some(owned) = &p.owned {
            if !member.revoking.is_empty() && member.revoking.is_disjoint(owned) {
                member.revoking.clear();
                member.revoking_since = None;
            }
        }
        if let Some(assignor) = p.assignor {
            self.assignor = assignor;
        }
        if changed || p.member_epoch == 0 && !self.target.contains_key(&p.member_id) {
            self.epoch += 1;
        }
        if self.target_epoch < self.epoch || self.topics_changed(topics) {
            if self.target_epoch == self.epoch {
                self.epoch += 1;
            }
            self.recompute(topics);
        }
        let before = self.members[&p.member_id].assigned.clone();
        self.reconcile(&p.member_id, now);
        let member = &self.members[&p.member_id];
        let assignment =
            (p.member_epoch == 0 || member.assigned != before).then(|| member.assigned.clone());
        HeartbeatOutcome {
            error: code::NONE,
            member_id: member.id.clone(),
            member_epoch: member.epoch,
            assignment,
        }
    }

    fn topics_changed(&self, topics: &Topics) -> bool {
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter())
            .collect();
        subscribed
            .into_iter()
            .any(|t| topics.get(t) != self.topics.get(t))
    }

    /// Moves one member towards its target: revocations first, then whatever is free.
    fn reconcile(&mut self, member_id: &str, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let member = self.members.get_mut(member_id).expect("present");
        let to_revoke: BTreeSet<Partition> = member.assigned.difference(&target).copied().collect();
        if !to_revoke.is_empty() {
            member.assigned.retain(|p| target.contains(p));
            member.revoking.extend(to_revoke);
            member.revoking_since.get_or_insert(now);
            return;
        }
        if !member.revoking.is_empty() {
            return;
        }
        let taken: BTreeSet<Partition> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .flat_map(|m| m.assigned.iter().chain(m.revoking.iter()))
            .copied()
            .collect();
        let member = self.members.get_mut(member_id).expect("present");
        // What others still hold comes on a later heartbeat, once they let it go; the member
        // is at the target epoch meanwhile.
        for partition in target.difference(&taken) {
            member.assigned.insert(*partition);
        }
        member.epoch = self.target_epoch;
    }

    /// Recomputes the target assignment at the current group epoch.
    fn recompute(&mut self, topics: &Topics) {
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter())
            .collect();
        self.topics = subscribed
            .into_iter()
            .filter_map(|t| topics.get(t).map(|v| (t.clone(), *v)))
            .collect();
        self.target = match self.assignor.as_str() {
            "range" => range_assign(&self.members, &self.topics),
            _ => uniform_assign(&self.members, &self.topics, &self.target),
        };
        self.target_epoch = self.epoch;
    }

    /// Session and rebalance timeouts. Returns true if a member was removed.
    pub fn tick(&mut self, now: Instant, topics: &Topics) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now >= m.deadline
                    || m.revoking_since
                        .is_some_and(|since| now >= since + m.rebalance_timeout)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(member = %id, "consumer group member expired");
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.epoch += 1;
            self.recompute(topics);
        }
        !gone.is_empty()
    }

    /// Offset commits and fetches from members carry their epoch.
    pub fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), i16> {
        match self.members.get(member_id) {
            None => Err(code::UNKNOWN_MEMBER_ID),
            Some(m) if epoch > m.epoch => Err(code::FENCED_MEMBER_EPOCH),
            Some(m) if epoch < m.epoch => Err(code::STALE_MEMBER_EPOCH),
            Some(_) => Ok(()),
        }
    }
}

fn all_partitions(topics: &Topics) -> impl Iterator<Item = (&String, Partition)> {
    topics
        .iter()
        .flat_map(|(name, (id, count))| (0..*count).map(move |p| (name, (*id, p))))
}

/// Balanced and sticky: a partition stays with its current owner while that owner is
/// subscribed and under its share; the rest go to the least loaded subscribed member.
fn uniform_assign(
    members: &BTreeMap<String, Member>,
    topics: &Topics,
    previous: &BTreeMap<String, BTreeSet<Partition>>,
) -> BTreeMap<String, BTreeSet<Partition>> {
    let mut out: BTreeMap<String, BTreeSet<Partition>> = members
        .keys()
        .map(|id| (id.clone(), BTreeSet::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let owner_of: BTreeMap<Partition, &String> = previous
        .iter()
        .flat_map(|(id, ps)| ps.iter().map(move |p| (*p, id)))
        .collect();
    let total = all_partitions(topics).count();
    let quota = total.div_ceil(members.len());
    let mut unassigned = Vec::new();
    for (topic, partition) in all_partitions(topics) {
        let keeper = owner_of.get(&partition).and_then(|id| {
            let m = members.get(*id)?;
            (m.subscribed.contains(topic) && out[*id].len() < quota).then_some(*id)
        });
        match keeper {
            Some(id) => {
                out.get_mut(id).expect("member").insert(partition);
            }
            None => unassigned.push((topic, partition)),
        }
    }
    for (topic, partition) in unassigned {
        let least = members
            .values()
            .filter(|m| m.subscribed.contains(topic))
            .min_by_key(|m| (out[&m.id].len(), m.id.clone()));
        if let Some(m) = least {
            out.get_mut(&m.id).expect("member").insert(partition);
        }
    }
    out
}

/// Kafka's range assignment, per topic: subscribed members in id order get contiguous ranges.
fn range_assign(
    members: &BTreeMap<String, Member>,
    topics: &Topics,
) -> BTreeMap<String, BTreeSet<Partition>> {
    let mut out: BTreeMap<String, BTreeSet<Partition>> = members
        .keys()
        .map(|id| (id.clone(), BTreeSet::new()))
        .collect();
    for (name, (id, count)) in topics {
        let subscribers: Vec<&String> = members
            .values()
            .filter(|m| m.subscribed.contains(name))
            .map(|m| &m.id)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.into_iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            let set = out.get_mut(member).expect("member");
            for p in next..next + take {
                set.insert((*id, p));
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: [u8; 16] = [7; 16];

    fn topics(count: i32) -> Topics {
        [("t".to_string(), (T, count))].into_iter().collect()
    }

    fn beat(member: &str, epoch: i32, owned: Option<&BTreeSet<Partition>>) -> HeartbeatParams {
        HeartbeatParams {
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 10_000,
            subscribed: (epoch == 0).then(|| vec!["t".to_string()]),
            assignor: None,
            owned: owned.cloned(),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    #[test]
    fn two_members_converge_without_ever_sharing_a_partition() {
        let (now, session, shape) = (Instant::now(), Duration::from_secs(45), topics(3));
        let mut g = ConsumerGroup::default();
        let a = g.heartbeat(beat("a", 0, None), &shape, now, session);
        assert_eq!(a.error, 0);
        let a_owned = a.assignment.clone().unwrap();
        assert_eq!(a_owned.len(), 3, "the only member gets everything");
        let b = g.heartbeat(beat("b", 0, None), &shape, now, session);
        assert_eq!(
            b.assignment.clone().unwrap().len(),
            0,
            "b waits: a still owns them"
        );
        // a learns it must give some up...
        let a2 = g.heartbeat(
            beat("a", a.member_epoch, Some(&a_owned)),
            &shape,
            now,
            session,
        );
        let a_kept = a2.assignment.clone().unwrap();
        assert!(a_kept.len() < 3);
        assert_eq!(
            a2.member_epoch, a.member_epoch,
            "no new epoch while revoking"
        );
        // ...and releases them; then it moves to the new epoch.
        let a3 = g.heartbeat(
            beat("a", a2.member_epoch, Some(&a_kept)),
            &shape,
            now,
            session,
        );
        assert_eq!(a3.member_epoch, g.epoch);
        // b picks up what a released.
        let b2 = g.heartbeat(
            beat("b", b.member_epoch, Some(&BTreeSet::new())),
            &shape,
            now,
            session,
        );
        let b_owned = b2.assignment.unwrap();
        assert!(a_kept.is_disjoint(&b_owned));
        assert_eq!(a_kept.len() + b_owned.len(), 3);
        assert_eq!(g.state(), "Stable");
        // An epoch the member was never given is fenced; leaving hands the partitions back.
        let stale = g.heartbeat(
            beat("a", a3.member_epoch + 5, Some(&a_kept)),
            &shape,
            now,
            session,
        );
        assert_eq!(stale.error, code::FENCED_MEMBER_EPOCH);
        g.heartbeat(beat("b", LEAVE_EPOCH, None), &shape, now, session);
        let a4 = g.heartbeat(
            beat("a", a3.member_epoch, Some(&a_kept)),
            &shape,
            now,
            session,
        );
        assert_eq!(a4.assignment.unwrap().len(), 3);
    }

    #[test]
    fn a_member_whose_session_ends_is_dropped() {
        let (now, session, shape) = (Instant::now(), Duration::from_secs(1), topics(2));
        let mut g = ConsumerGroup::default();
        g.heartbeat(beat("a", 0, None), &shape, now, session);
        assert!(g.tick(now + Duration::from_secs(2), &shape));
        assert!(g.is_empty());
        assert_eq!(g.state(), "Empty");
    }

    #[test]
    fn range_gives_contiguous_ranges_and_uniform_balances() {
        let mut members = BTreeMap::new();
        for id in ["a", "b"] {
            let mut g = ConsumerGroup::default();
            g.heartbeat(
                beat(id, 0, None),
                &topics(5),
                Instant::now(),
                Duration::from_secs(9),
            );
            members.insert(id.to_string(), g.members.remove(id).unwrap());
        }
        let range = range_assign(&members, &topics(5));
        assert_eq!(range["a"], (0..3).map(|p| (T, p)).collect());
        assert_eq!(range["b"], (3..5).map(|p| (T, p)).collect());
        let uniform = uniform_assign(&members, &topics(5), &BTreeMap::new());
        assert_eq!(uniform["a"].len() + uniform["b"].len(), 5);
        assert!(uniform["a"].len().abs_diff(uniform["b"].len()) <= 1);
    }
}

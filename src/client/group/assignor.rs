//! The assignors a group leader runs, as pure functions of the members' subscriptions and the
//! partition counts: Kafka's `range` (eager) and `cooperative-sticky` (KIP-429), plus the
//! cooperative hold-back that turns a sticky target into the first of two rebalances. No I/O,
//! no clock; every result is a deterministic function of its inputs (members and partitions
//! are walked in sorted order), so every leader computes the same assignment.

use std::collections::{BTreeMap, BTreeSet};

/// A partition of a topic.
pub type TopicPartition = (String, i32);

/// The assignment strategies this client offers in JoinGroup, by their Kafka names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `RangeAssignor`: contiguous ranges per topic. Eager only.
    Range,
    /// Kafka's `CooperativeStickyAssignor`: balanced, keeps owned partitions where balance
    /// allows, and hands a moving partition over in two rebalances.
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup, the same as the Java client's and librdkafka's.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    pub fn supports_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }
}

/// What the leader knows of one member from its JoinGroup metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    pub topics: BTreeSet<String>,
    /// The partitions the member says it owns (ConsumerProtocolSubscription v1+).
    pub owned: BTreeSet<TopicPartition>,
    /// The generation in which it got them (v2+), -1 when unknown.
    pub generation: i32,
}

/// Kafka's range assignor: per topic, members subscribed to it (by member id) get contiguous
/// ranges, the first ones one partition more when it does not divide evenly.
pub fn range_assignment(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (topic, count) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let n = members.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in members.into_iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            out.get_mut(member)
                .expect("every member has an entry")
                .insert(topic.clone(), (next..next + take).collect());
            next += take;
        }
    }
    out
}

/// The sticky target assignment: every partition of a subscribed topic goes to exactly one
/// member subscribed to its topic; a member keeps what it owns unless balance needs it
/// elsewhere; partitions move only from a member with at least two more than the receiver.
///
/// Steps, as Kafka's `AbstractStickyAssignor` does them in spirit:
/// 1. Keep each valid claim: the partition exists, the member is subscribed to its topic, and
///    no member claims it from a later generation (two claims from the same generation are
///    both dropped: which owner is right cannot be told).
/// 2. Give each unclaimed partition to the eligible member with the fewest partitions.
/// 3. While some member could take a partition from one with two or more above it, move one
///    from the most loaded. With identical subscriptions this ends with counts within one of
///    each other, moving only the excess; with different subscriptions it ends when no single
///    move improves the balance.
pub fn sticky_assignment(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> = members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let exists = |(topic, partition): &TopicPartition| {
        partitions
            .get(topic)
            .is_some_and(|count| *partition >= 0 && partition < count)
    };

    // 1. Claims, resolved by generation.
    let mut claims: BTreeMap<&TopicPartition, Vec<(i32, &String)>> = BTreeMap::new();
    for (member, subscription) in members {
        for owned in &subscription.owned {
            if exists(owned) && subscription.topics.contains(&owned.0) {
                claims
                    .entry(owned)
                    .or_default()
                    .push((subscription.generation, member));
            }
        }
    }
    for (partition, mut claimants) in claims {
        claimants.sort_by_key(|c| std::cmp::Reverse(c.0));
        let newest = claimants[0];
        if claimants.get(1).is_some_and(|second| second.0 == newest.0) {
            continue;
        }
        out.get_mut(newest.1)
            .expect("claimant is a member")
            .insert(partition.clone());
    }

    // 2. Unclaimed partitions to the least loaded eligible member.
    let taken: BTreeSet<TopicPartition> = out.values().flatten().cloned().collect();
    for (topic, count) in partitions {
        for partition in 0..*count {
            let slot = (topic.clone(), partition);
            if taken.contains(&slot) {
                continue;
            }
            if let Some(member) = least_loaded(members, &out, topic, None) {
                out.get_mut(&member).expect("member").insert(slot);
            }
        }
    }

    // 3. Balance. Each move lowers the sum of squared counts, so the loop ends; the bound is a
    // guard against a bug, not a limit that is ever reached.
    let moves_max = partitions.values().map(|c| *c as usize).sum::<usize>() * members.len() + 1;
    for _ in 0..moves_max {
        let Some((from, to, slot)) = best_move(members, &out) else {
            break;
        };
        out.get_mut(&from).expect("member").remove(&slot);
        out.get_mut(&to).expect("member").insert(slot);
    }
    out
}

/// The eligible member (subscribed to `topic`, not `except`) with the fewest partitions; ties
/// go to the smallest member id.
fn least_loaded(
    members: &BTreeMap<String, MemberSubscription>,
    assignment: &BTreeMap<String, BTreeSet<TopicPartition>>,
    topic: &str,
    except: Option<&str>,
) -> Option<String> {
    members
        .iter()
        .filter(|(id, s)| s.topics.contains(topic) && except != Some(id.as_str()))
        .min_by_key(|(id, _)| (assignment.get(*id).map_or(0, |a| a.len()), (*id).clone()))
        .map(|(id, _)| id.clone())
}

/// One move that improves the balance: from the most loaded member that has a partition some
/// eligible member holds two fewer than it; that partition's highest index goes first, to the
/// least loaded eligible member.
fn best_move(
    members: &BTreeMap<String, MemberSubscription>,
    assignment: &BTreeMap<String, BTreeSet<TopicPartition>>,
) -> Option<(String, String, TopicPartition)> {
    let mut sources: Vec<(&String, &BTreeSet<TopicPartition>)> = assignment.iter().collect();
    sources.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    for (from, owned) in sources {
        for slot in owned.iter().rev() {
            let Some(to) = least_loaded(members, assignment, &slot.0, Some(from)) else {
                continue;
            };
            if assignment[&to].len() + 1 < owned.len() {
                return Some((from.clone(), to, slot.clone()));
            }
        }
    }
    None
}

/// The cooperative first phase (KIP-429): a partition that the target gives to a member other
/// than one that says it owns it is left out of everyone's assignment this time. Its owner sees
/// it missing, revokes it and rejoins; the next rebalance hands it over, so no partition is ever
/// owned by two members at once.
pub fn hold_back_transfers(
    target: &mut BTreeMap<String, BTreeSet<TopicPartition>>,
    members: &BTreeMap<String, MemberSubscription>,
) {
    for (member, assigned) in target.iter_mut() {
        assigned.retain(|slot| {
            members
                .iter()
                .all(|(other, s)| other == member || !s.owned.contains(slot))
        });
    }
}

/// The `cooperative-sticky` assignment of one rebalance: the sticky target less the
/// partitions still owned by someone else.
pub fn cooperative_sticky_assignment(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut target = sticky_assignment(members, partitions);
    hold_back_transfers(&mut target, members);
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        (topic.to_owned(), partition)
    }

    fn member(topics: &[&str], owned: &[(&str, i32)], generation: i32) -> MemberSubscription {
        MemberSubscription {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            owned: owned.iter().map(|(t, p)| tp(t, *p)).collect(),
            generation,
        }
    }

    fn counts(assignment: &BTreeMap<String, BTreeSet<TopicPartition>>) -> Vec<usize> {
        assignment.values().map(|a| a.len()).collect()
    }

    /// Every partition of `partitions` is assigned exactly once, to a subscribed member.
    fn assert_complete(
        members: &BTreeMap<String, MemberSubscription>,
        partitions: &BTreeMap<String, i32>,
        assignment: &BTreeMap<String, BTreeSet<TopicPartition>>,
    ) {
        let mut seen = BTreeSet::new();
        for (id, assigned) in assignment {
            for slot in assigned {
                assert!(members[id].topics.contains(&slot.0), "{id} got {slot:?}");
                assert!(seen.insert(slot.clone()), "{slot:?} twice");
            }
        }
        let all: usize = partitions
            .iter()
            .filter(|(t, _)| members.values().any(|m| m.topics.contains(*t)))
            .map(|(_, c)| *c as usize)
            .sum();
        assert_eq!(seen.len(), all);
    }

    #[test]
    fn a_fresh_group_gets_a_balanced_assignment() {
        let members: BTreeMap<String, MemberSubscription> = ["a", "b", "c"]
            .iter()
            .map(|id| ((*id).to_owned(), member(&["t", "u"], &[], -1)))
            .collect();
        let partitions = BTreeMap::from([("t".to_owned(), 5), ("u".to_owned(), 3)]);
        let assignment = sticky_assignment(&members, &partitions);
        assert_complete(&members, &partitions, &assignment);
        let c = counts(&assignment);
        assert!(
            c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
            "{c:?}"
        );
    }

    #[test]
    fn a_joining_member_takes_only_the_excess_and_the_rest_stays_put() {
        // Eight partitions over three members (3, 3, 2); a fourth joins.
        let owned_a = [("t", 0), ("t", 1), ("t", 2)];
        let owned_b = [("t", 3), ("t", 4), ("t", 5)];
        let owned_c = [("t", 6), ("t", 7)];
        let members = BTreeMap::from([
            ("a".to_owned(), member(&["t"], &owned_a, 4)),
            ("b".to_owned(), member(&["t"], &owned_b, 4)),
            ("c".to_owned(), member(&["t"], &owned_c, 4)),
            ("d".to_owned(), member(&["t"], &[], -1)),
        ]);
        let partitions = BTreeMap::from([("t".to_owned(), 8)]);
        let target = sticky_assignment(&members, &partitions);
        assert_complete(&members, &partitions, &target);
        assert_eq!(counts(&target), vec![2, 2, 2, 2]);
        // Two moves, the minimum: one from a, one from b; c keeps everything.
        let kept: usize = members
            .iter()
            .map(|(id, m)| m.owned.intersection(&target[id]).count())
            .sum();
        assert_eq!(kept, 6);
        assert_eq!(target["c"], members["c"].owned);

        // The first cooperative phase gives d nothing yet: both moving partitions are still
        // owned by a and b, which drop them from their own assignments.
        let first = cooperative_sticky_assignment(&members, &partitions);
        assert!(first["d"].is_empty());
        assert_eq!(first["a"].len() + first["b"].len(), 4);
        // Second phase: a and b no longer claim them; d gets them and nobody else moves.
        let mut after = members.clone();
        for id in ["a", "b", "c"] {
            after.get_mut(id).unwrap().owned = first[id].clone();
            after.get_mut(id).unwrap().generation = 5;
        }
        let second = cooperative_sticky_assignment(&after, &partitions);
        assert_eq!(second["d"], target["d"]);
        for id in ["a", "b", "c"] {
            assert_eq!(second[id], first[id], "{id} is not disturbed again");
        }
    }

    #[test]
    fn a_leaving_member_hands_its_partitions_out_and_the_others_keep_theirs() {
        let members = BTreeMap::from([
            ("a".to_owned(), member(&["t"], &[("t", 0), ("t", 1)], 2)),
            ("b".to_owned(), member(&["t"], &[("t", 2), ("t", 3)], 2)),
        ]);
        // c (owning 4 and 5) has left.
        let partitions = BTreeMap::from([("t".to_owned(), 6)]);
        let assignment = cooperative_sticky_assignment(&members, &partitions);
        assert_complete(&members, &partitions, &assignment);
        assert!(members["a"].owned.is_subset(&assignment["a"]));
        assert!(members["b"].owned.is_subset(&assignment["b"]));
        assert_eq!(counts(&assignment), vec![3, 3]);
    }

    #[test]
    fn the_same_input_gives_the_same_assignment() {
        let members = BTreeMap::from([
            ("m2".to_owned(), member(&["x", "y"], &[("x", 1)], 1)),
            ("m1".to_owned(), member(&["x"], &[], -1)),
            ("m3".to_owned(), member(&["y"], &[("y", 0), ("y", 1)], 1)),
        ]);
        let partitions = BTreeMap::from([("x".to_owned(), 4), ("y".to_owned(), 3)]);
        let first = sticky_assignment(&members, &partitions);
        for _ in 0..5 {
            assert_eq!(sticky_assignment(&members.clone(), &partitions), first);
        }
    }

    #[test]
    fn members_with_different_subscriptions_get_only_their_topics_and_balance_where_possible() {
        // a reads x only; b reads x and y; c reads y only. x: 4, y: 4.
        let members = BTreeMap::from([
            ("a".to_owned(), member(&["x"], &[], -1)),
            ("b".to_owned(), member(&["x", "y"], &[], -1)),
            ("c".to_owned(), member(&["y"], &[], -1)),
        ]);
        let partitions = BTreeMap::from([("x".to_owned(), 4), ("y".to_owned(), 4)]);
        let assignment = sticky_assignment(&members, &partitions);
        assert_complete(&members, &partitions, &assignment);
        let c = counts(&assignment);
        assert!(
            c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
            "{c:?}"
        );
        assert!(assignment["a"].iter().all(|(t, _)| t == "x"));
        assert!(assignment["c"].iter().all(|(t, _)| t == "y"));

        // A topic only one member reads is all its own, however unbalanced.
        let members = BTreeMap::from([
            ("a".to_owned(), member(&["x", "solo"], &[], -1)),
            ("b".to_owned(), member(&["x"], &[], -1)),
        ]);
        let partitions = BTreeMap::from([("x".to_owned(), 2), ("solo".to_owned(), 4)]);
        let assignment = sticky_assignment(&members, &partitions);
        assert_complete(&members, &partitions, &assignment);
        assert_eq!(
            assignment["b"].len(),
            2,
            "b takes all of x to offset a's solo topic"
        );
    }

    #[test]
    fn invalid_and_conflicting_claims_are_dropped() {
        let members = BTreeMap::from([
            // Claims a partition that no longer exists and one of a topic it left.
            (
                "a".to_owned(),
                member(&["t"], &[("t", 9), ("gone", 0), ("t", 0)], 3),
            ),
            // Claims t-1 from an older generation than c.
            ("b".to_owned(), member(&["t"], &[("t", 1)], 2)),
            ("c".to_owned(), member(&["t"], &[("t", 1)], 3)),
        ]);
        let partitions = BTreeMap::from([("t".to_owned(), 3)]);
        let assignment = sticky_assignment(&members, &partitions);
        assert_complete(&members, &partitions, &assignment);
        assert!(assignment["a"].contains(&tp("t", 0)));
        assert!(assignment["c"].contains(&tp("t", 1)));
        assert!(assignment["b"].contains(&tp("t", 2)));
    }

    #[test]
    fn range_splits_each_topic_into_contiguous_ranges() {
        let subscriptions = BTreeMap::from([
            ("a".to_owned(), vec!["t".to_owned()]),
            ("b".to_owned(), vec!["t".to_owned()]),
        ]);
        let partitions = BTreeMap::from([("t".to_owned(), 5)]);
        let assignment = range_assignment(&subscriptions, &partitions);
        assert_eq!(assignment["a"]["t"], vec![0, 1, 2]);
        assert_eq!(assignment["b"]["t"], vec![3, 4]);
    }
}

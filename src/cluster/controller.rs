//! What the active controller decides, as pure functions of the cluster state and the time
//! (milliseconds passed in): broker leases (registration, heartbeats, fencing when a lease
//! runs out, controlled shutdown) and partition placement. The records it returns are
//! proposed to the quorum; nothing changes until they are committed and applied.

use std::collections::HashMap;

use super::state::{BrokerRegistration, ClusterState, MetadataRecord, PartitionState};

/// What a broker asks when it starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    pub id: i32,
    pub incarnation: [u8; 16],
    pub host: String,
    pub port: u16,
    pub shards: u32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegisterDecision {
    /// The same incarnation is registered already (a retried request): its epoch.
    Known(u64),
    /// Propose this record; the epoch is its log index.
    Propose(MetadataRecord),
    /// Another live broker holds this id.
    Duplicate { host: String, port: u16 },
}

/// A broker's view of itself, as the controller answers a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatAnswer {
    /// The registration is unknown or of another epoch: register again.
    pub stale: bool,
    pub fenced: bool,
    pub shutting_down: bool,
}

/// The controller's leases: when each broker's runs out, in milliseconds of its clock.
#[derive(Debug, Default)]
pub struct Leases {
    session_timeout_ms: u64,
    deadlines: HashMap<i32, u64>,
}

impl Leases {
    pub fn new(session_timeout_ms: u64) -> Leases {
        Leases {
            session_timeout_ms,
            deadlines: HashMap::new(),
        }
    }

    /// A controller that just took over gives every registered broker a whole session to
    /// heartbeat to it, as it cannot know when they last did.
    pub fn take_over(&mut self, state: &ClusterState, now_ms: u64) {
        self.deadlines = state
            .brokers
            .keys()
            .map(|&id| (id, now_ms + self.session_timeout_ms))
            .collect();
    }

    pub fn register(
        &self,
        state: &ClusterState,
        request: &Registration,
        now_ms: u64,
    ) -> RegisterDecision {
        if let Some(existing) = state.brokers.get(&request.id) {
            if existing.incarnation == request.incarnation {
                return RegisterDecision::Known(existing.epoch);
            }
            let alive = !existing.fenced
                && self
                    .deadlines
                    .get(&request.id)
                    .is_some_and(|&deadline| deadline > now_ms);
            let same_address = existing.host == request.host && existing.port == request.port;
            if alive && !same_address {
                return RegisterDecision::Duplicate {
                    host: existing.host.clone(),
                    port: existing.port,
                };
            }
        }
        RegisterDecision::Propose(MetadataRecord::RegisterBroker(BrokerRegistration {
            id: request.id,
            incarnation: request.incarnation,
            epoch: 0,
            host: request.host.clone(),
            port: request.port,
            shards: request.shards,
            rack: request.rack.clone(),
            fenced: true,
            shutting_down: false,
        }))
    }

    /// A heartbeat renews the lease; it may ask for records (unfence, shut down).
    pub fn heartbeat(
        &mut self,
        state: &ClusterState,
        id: i32,
        epoch: u64,
        want_shutdown: bool,
        now_ms: u64,
    ) -> (HeartbeatAnswer, Option<MetadataRecord>) {
        let Some(broker) = state.brokers.get(&id).filter(|b| b.epoch == epoch) else {
            return (
                HeartbeatAnswer {
                    stale: true,
                    fenced: true,
                    shutting_down: false,
                },
                None,
            );
        };
        self.deadlines.insert(id, now_ms + self.session_timeout_ms);
        let record = if want_shutdown && !broker.shutting_down {
            Some(MetadataRecord::ShutDownBroker { id, epoch })
        } else if !want_shutdown && broker.fenced {
            Some(MetadataRecord::UnfenceBroker { id, epoch })
        } else {
            None
        };
        let answer = HeartbeatAnswer {
            stale: false,
            fenced: broker.fenced,
            shutting_down: broker.shutting_down,
        };
        (answer, record)
    }

    /// Fences every unfenced broker whose lease ran out.
    pub fn expired(&self, state: &ClusterState, now_ms: u64) -> Vec<MetadataRecord> {
        state
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| self.deadlines.get(&b.id).is_none_or(|&d| d <= now_ms))
            .map(|b| MetadataRecord::FenceBroker {
                id: b.id,
                epoch: b.epoch,
            })
            .collect()
    }
}

/// Replica lists for partitions `first..first + count` of topic `name`: leaders round-robin
/// over the active brokers from a per-topic starting point (so topics do not all start on the
/// same broker), followers the next brokers in the ring. When brokers have racks, the ring
/// alternates racks, so a partition's replicas land on different racks where it can.
pub fn assign(
    state: &ClusterState,
    name: &str,
    first: u32,
    count: u32,
    replication_factor: i16,
) -> Result<Vec<PartitionState>, String> {
    let ring = rack_alternating(state.active_brokers().collect());
    if ring.is_empty() {
        return Err("no broker is available to place partitions on".into());
    }
    let rf = replication_factor.max(1) as usize;
    if rf > ring.len() {
        return Err(format!(
            "replication factor {rf} is larger than the {} available broker{}",
            ring.len(),
            if ring.len() == 1 { "" } else { "s" }
        ));
    }
    let start = crc32c::crc32c(name.as_bytes()) as usize;
    Ok((first..first + count)
        .map(|p| {
            let replicas = (0..rf)
                .map(|r| ring[(start + p as usize + r) % ring.len()])
                .collect();
            PartitionState::new(replicas)
        })
        .collect())
}

/// Broker ids ordered so that consecutive ones are on different racks where possible
/// (brokers without a rack count as one rack of their own).
fn rack_alternating(brokers: Vec<&BrokerRegistration>) -> Vec<i32> {
    let mut racks: std::collections::BTreeMap<Option<&str>, Vec<i32>> = Default::default();
    for broker in brokers {
        racks
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.id);
    }
    if racks.len() <= 1 {
        return racks.into_values().flatten().collect();
    }
    let mut ring = Vec::new();
    let longest = racks.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for ids in racks.values() {
            if let Some(&id) = ids.get(i) {
                ring.push(id);
            }
        }
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(brokers: &[(i32, Option<&str>)]) -> ClusterState {
        let mut state = ClusterState::default();
        for (i, (id, rack)) in brokers.iter().enumerate() {
            let leases = Leases::new(1000);
            let RegisterDecision::Propose(record) = leases.register(
                &state,
                &Registration {
                    id: *id,
                    incarnation: [*id as u8; 16],
                    host: "localhost".into(),
                    port: 9092 + *id as u16,
                    shards: 1,
                    rack: rack.map(str::to_owned),
                },
                0,
            ) else {
                panic!("registration refused");
            };
            state.apply(i as u64 + 1, record);
            let epoch = i as u64 + 1;
            state.apply(
                100 + epoch,
                MetadataRecord::UnfenceBroker { id: *id, epoch },
            );
        }
        state
    }

    #[test]
    fn leaders_are_spread_evenly_and_replicas_are_distinct() {
        let state = state_with(&[(0, None), (1, None), (2, None)]);
        let partitions = assign(&state, "orders", 0, 6, 1).unwrap();
        let mut leaders = [0; 3];
        for p in &partitions {
            leaders[p.leader as usize] += 1;
        }
        assert_eq!(leaders, [2, 2, 2]);
        let replicated = assign(&state, "orders", 0, 3, 3).unwrap();
        for p in &replicated {
            let mut r = p.replicas.clone();
            r.sort();
            r.dedup();
            assert_eq!(r.len(), 3);
        }
        assert!(assign(&state, "orders", 0, 1, 4)
            .unwrap_err()
            .contains("3 available brokers"));
    }

    #[test]
    fn replicas_alternate_racks() {
        let state = state_with(&[
            (0, Some("a")),
            (1, Some("a")),
            (2, Some("b")),
            (3, Some("b")),
        ]);
        for p in assign(&state, "t", 0, 8, 2).unwrap() {
            let rack = |id: i32| state.brokers[&id].rack.clone();
            assert_ne!(rack(p.replicas[0]), rack(p.replicas[1]), "{p:?}");
        }
    }

    #[test]
    fn leases_fence_the_silent_and_refuse_a_second_broker_with_one_id() {
        let mut state = state_with(&[(0, None), (1, None)]);
        let mut leases = Leases::new(1000);
        leases.take_over(&state, 0);
        assert!(leases.expired(&state, 999).is_empty());
        let (answer, record) = leases.heartbeat(&state, 0, 1, false, 900);
        assert_eq!(record, None);
        assert!(!answer.fenced && !answer.stale);
        assert_eq!(
            leases.expired(&state, 1000),
            vec![MetadataRecord::FenceBroker { id: 1, epoch: 2 }]
        );
        // Another process at another address with id 0, while 0's lease runs.
        let other = Registration {
            id: 0,
            incarnation: [9; 16],
            host: "otherhost".into(),
            port: 9092,
            shards: 1,
            rack: None,
        };
        assert!(matches!(
            leases.register(&state, &other, 1000),
            RegisterDecision::Duplicate { port: 9092, .. }
        ));
        // The same address is a restart: accepted at once.
        let restart = Registration {
            host: "localhost".into(),
            ..other.clone()
        };
        assert!(matches!(
            leases.register(&state, &restart, 1000),
            RegisterDecision::Propose(_)
        ));
        // Once 0's lease has run out, the id is free.
        assert!(matches!(
            leases.register(&state, &other, 1900),
            RegisterDecision::Propose(_)
        ));
        // A fenced broker that heartbeats asks to be unfenced; shutdown is asked for once.
        state.apply(50, MetadataRecord::FenceBroker { id: 1, epoch: 2 });
        let (answer, record) = leases.heartbeat(&state, 1, 2, false, 2000);
        assert!(answer.fenced);
        assert_eq!(
            record,
            Some(MetadataRecord::UnfenceBroker { id: 1, epoch: 2 })
        );
        let (_, record) = leases.heartbeat(&state, 0, 1, true, 2000);
        assert_eq!(
            record,
            Some(MetadataRecord::ShutDownBroker { id: 0, epoch: 1 })
        );
        let (answer, _) = leases.heartbeat(&state, 0, 77, false, 2000);
        assert!(answer.stale);
    }
}

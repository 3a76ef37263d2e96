//! The cluster metadata as the replicated log builds it: brokers, topics, partitions and their
//! leaders, dynamic configs, producer-id blocks. `ClusterState::apply` is the only way it
//! changes, and it is a pure function of the state and the record, so every node that applies
//! the same log holds the same state. Leadership follows from the records: fencing a broker
//! (its lease ran out) or shutting it down moves leadership of its partitions to another ISR
//! member or leaves them offline (-1), unfencing brings offline partitions back to it, always
//! with a new leader epoch.

use std::collections::BTreeMap;

use crate::broker::metadata::{ConfigTable, TopicRecord, TopicTable};

/// No leader: the partition is offline.
pub const NO_LEADER: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PartitionState {
    /// Broker ids holding a replica, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas (with replication factor 1, the one replica).
    pub isr: Vec<i32>,
    pub leader: i32,
    /// Bumped on every leadership change.
    pub leader_epoch: i32,
    /// Bumped on every change of this partition's state.
    pub partition_epoch: i32,
}

impl PartitionState {
    pub fn new(replicas: Vec<i32>) -> PartitionState {
        PartitionState {
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    fn change_leader(&mut self, leader: i32) {
        self.leader = leader;
        self.leader_epoch += 1;
        self.partition_epoch += 1;
    }
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicState {
    pub record: TopicRecord,
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// Random per process start: tells a restarted broker from the one before it.
    pub incarnation: [u8; 16],
    /// The log index of the registration; heartbeats and fencing name it.
    pub epoch: u64,
    /// The address clients are sent to (the advertised listener).
    pub host: String,
    pub port: u16,
    pub shards: u32,
    pub rack: Option<String>,
    /// The controller saw its lease run out (or it has not heartbeated since registering).
    pub fenced: bool,
    /// It asked to shut down: it leads nothing and is not given new partitions.
    pub shutting_down: bool,
}

impl BrokerRegistration {
    /// Alive for placement and leadership.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.shutting_down
    }
}

/// One change to the cluster metadata. An entry of the metadata log holds a batch of these,
/// applied in order.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum MetadataRecord {
    /// A broker (re)starts. It is registered fenced; its `epoch` is set on apply to the log
    /// index of the entry. A new incarnation ends the old one's leadership.
    RegisterBroker(BrokerRegistration),
    FenceBroker {
        id: i32,
        epoch: u64,
    },
    UnfenceBroker {
        id: i32,
        epoch: u64,
    },
    /// Controlled shutdown: leadership moves away; the broker stays registered.
    ShutDownBroker {
        id: i32,
        epoch: u64,
    },
    CreateTopic(TopicState),
    DeleteTopic {
        name: String,
        id: [u8; 16],
    },
    /// New partitions at the end of the topic's list.
    AddPartitions {
        name: String,
        partitions: Vec<PartitionState>,
    },
    SetTopicConfig {
        name: String,
        overrides: Vec<(String, String)>,
    },
    SetConfigs(ConfigTable),
    /// The next `count` producer ids go to `broker`; apply answers the block's first id.
    AllocateProducerIds {
        broker: i32,
        count: i64,
    },
    /// A single-node data directory from before the metadata log: its topic table, dynamic
    /// configs and reserved producer ids become the first entry; every partition goes to `broker`.
    ImportLegacy {
        broker: i32,
        table: TopicTable,
        configs: ConfigTable,
        producer_ids_end: i64,
    },
}

/// What applying a record answered: refusals and assigned values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// A broker's epoch (RegisterBroker).
    BrokerEpoch(u64),
    /// The first id of a producer-id block.
    ProducerIds(i64),
    /// The record did not apply to this state (a stale epoch, an existing topic...).
    Refused(String),
}

#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClusterState {
    /// The log index this state reflects.
    pub applied_index: u64,
    pub topics: BTreeMap<String, TopicState>,
    pub configs: ConfigTable,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub next_producer_id: i64,
}

impl ClusterState {
    pub fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics.get(name)
    }

    pub fn active_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| b.is_active())
    }

    fn is_active(&self, id: i32) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(BrokerRegistration::is_active)
    }

    /// Applies one record of the entry at `index`.
    pub fn apply(&mut self, index: u64, record: MetadataRecord) -> Applied {
        self.applied_index = self.applied_index.max(index);
        match record {
            MetadataRecord::RegisterBroker(mut registration) => {
                registration.epoch = index;
                registration.fenced = true;
                registration.shutting_down = false;
                let id = registration.id;
                self.brokers.insert(id, registration);
                // Whatever the old incarnation led, it leads no more.
                self.move_leadership_from(id);
                Applied::BrokerEpoch(index)
            }
            MetadataRecord::FenceBroker { id, epoch } => match self.broker_mut(id, epoch) {
                Ok(broker) => {
                    broker.fenced = true;
                    self.move_leadership_from(id);
                    Applied::Done
                }
                Err(refused) => refused,
            },
            MetadataRecord::ShutDownBroker { id, epoch } => match self.broker_mut(id, epoch) {
                Ok(broker) => {
                    broker.shutting_down = true;
                    self.move_leadership_from(id);
                    Applied::Done
                }
                Err(refused) => refused,
            },
            MetadataRecord::UnfenceBroker { id, epoch } => match self.broker_mut(id, epoch) {
                Ok(broker) => {
                    broker.fenced = false;
                    broker.shutting_down = false;
                    self.elect_offline_partitions();
                    Applied::Done
                }
                Err(refused) => refused,
            },
            MetadataRecord::CreateTopic(topic) => {
                if self.topics.contains_key(&topic.record.name) {
                    return Applied::Refused(format!(
                        "topic '{}' already exists",
                        topic.record.name
                    ));
                }
                let mut topic = topic;
                for partition in &mut topic.partitions {
                    if partition.leader != NO_LEADER && !self.is_active(partition.leader) {
                        partition.leader = self.first_active(&partition.isr);
                    }
                }
                self.topics.insert(topic.record.name.clone(), topic);
                Applied::Done
            }
            MetadataRecord::DeleteTopic { name, id } => match self.topics.get(&name) {
                Some(topic) if topic.record.id == id => {
                    self.topics.remove(&name);
                    Applied::Done
                }
                _ => Applied::Refused(format!("no topic '{name}' with that id")),
            },
            MetadataRecord::AddPartitions { name, partitions } => {
                let active: Vec<bool> = partitions
                    .iter()
                    .map(|p| self.is_active(p.leader))
                    .collect();
                let fallback: Vec<i32> = partitions
                    .iter()
                    .map(|p| self.first_active(&p.isr))
                    .collect();
                match self.topics.get_mut(&name) {
                    Some(topic) => {
                        for (i, mut partition) in partitions.into_iter().enumerate() {
                            if !active[i] {
                                partition.leader = fallback[i];
                            }
                            topic.partitions.push(partition);
                        }
                        topic.record.partitions = topic.partitions.len() as u32;
                        Applied::Done
                    }
                    None => Applied::Refused(format!("no topic '{name}'")),
                }
            }
            MetadataRecord::SetTopicConfig { name, overrides } => {
                match self.topics.get_mut(&name) {
                    Some(topic) => {
                        topic.record.overrides = overrides;
                        Applied::Done
                    }
                    None => Applied::Refused(format!("no topic '{name}'")),
                }
            }
            MetadataRecord::SetConfigs(configs) => {
                self.configs = configs;
                Applied::Done
            }
            MetadataRecord::AllocateProducerIds { count, .. } => {
                let start = self.next_producer_id;
                self.next_producer_id = start.saturating_add(count.max(1));
                Applied::ProducerIds(start)
            }
            MetadataRecord::ImportLegacy {
                broker,
                table,
                configs,
                producer_ids_end,
            } => {
                for record in table.topics {
                    let partitions = (0..record.partitions)
                        .map(|_| PartitionState::new(vec![broker]))
                        .collect();
                    self.topics
                        .insert(record.name.clone(), TopicState { record, partitions });
                }
                self.configs = configs;
                self.next_producer_id = self.next_producer_id.max(producer_ids_end);
                self.elect_offline_partitions();
                Applied::Done
            }
        }
    }

    fn broker_mut(&mut self, id: i32, epoch: u64) -> Result<&mut BrokerRegistration, Applied> {
        match self.brokers.get_mut(&id) {
            Some(broker) if broker.epoch == epoch => Ok(broker),
            Some(broker) => Err(Applied::Refused(format!(
                "broker {id} has epoch {}, not {epoch}",
                broker.epoch
            ))),
            None => Err(Applied::Refused(format!("broker {id} is not registered"))),
        }
    }

    fn first_active(&self, candidates: &[i32]) -> i32 {
        candidates
            .iter()
            .copied()
            .find(|&id| self.is_active(id))
            .unwrap_or(NO_LEADER)
    }

    /// Every partition `id` leads gets another leader from its ISR, or none; `id` leaves the
    /// ISR unless it is the last member (then it stays, so that it is the one to come back).
    fn move_leadership_from(&mut self, id: i32) {
        let active: Vec<i32> = self.active_brokers().map(|b| b.id).collect();
        for topic in self.topics.values_mut() {
            for partition in &mut topic.partitions {
                if partition.leader != id {
                    continue;
                }
                if partition.isr.len() > 1 {
                    partition.isr.retain(|&r| r != id);
                }
                let next = partition
                    .isr
                    .iter()
                    .copied()
                    .find(|r| *r != id && active.contains(r))
                    .unwrap_or(NO_LEADER);
                partition.change_leader(next);
            }
        }
    }

    /// Offline partitions get the first active member of their ISR as leader.
    fn elect_offline_partitions(&mut self) {
        let active: Vec<i32> = self.active_brokers().map(|b| b.id).collect();
        for topic in self.topics.values_mut() {
            for partition in &mut topic.partitions {
                if partition.leader != NO_LEADER {
                    continue;
                }
                if let Some(next) = partition.isr.iter().copied().find(|r| active.contains(r)) {
                    partition.change_leader(next);
                }
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<ClusterState, String> {
        if bytes.is_empty() {
            return Ok(ClusterState::default());
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<ClusterState, rkyv::rancor::Error>(&aligned)
            .map_err(|e| format!("unreadable cluster state: {e}"))
    }
}

pub fn encode_records(records: &[MetadataRecord]) -> Vec<u8> {
    rkyv::to_bytes::<rkyv::rancor::Error>(&records.to_vec())
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

pub fn decode_records(bytes: &[u8]) -> Result<Vec<MetadataRecord>, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<Vec<MetadataRecord>, rkyv::rancor::Error>(&aligned)
        .map_err(|e| format!("unreadable metadata record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation: [id as u8; 16],
            epoch: 0,
            host: "localhost".into(),
            port: 9092 + id as u16,
            shards: 2,
            rack: None,
            fenced: true,
            shutting_down: false,
        }
    }

    fn topic(name: &str, leaders: &[i32]) -> TopicState {
        TopicState {
            record: TopicRecord {
                name: name.into(),
                id: [7; 16],
                partitions: leaders.len() as u32,
                replication_factor: 1,
                overrides: Vec::new(),
            },
            partitions: leaders
                .iter()
                .map(|&l| PartitionState::new(vec![l]))
                .collect(),
        }
    }

    #[test]
    fn fencing_takes_leadership_away_and_unfencing_gives_it_back_with_new_epochs() {
        let mut state = ClusterState::default();
        for (i, id) in [0, 1].into_iter().enumerate() {
            let index = i as u64 + 1;
            assert_eq!(
                state.apply(index, MetadataRecord::RegisterBroker(broker(id))),
                Applied::BrokerEpoch(index)
            );
            state.apply(
                10 + index,
                MetadataRecord::UnfenceBroker { id, epoch: index },
            );
        }
        state.apply(20, MetadataRecord::CreateTopic(topic("t", &[0, 1, 0])));
        assert_eq!(state.topics["t"].partitions[1].leader, 1);

        assert_eq!(
            state.apply(21, MetadataRecord::FenceBroker { id: 1, epoch: 99 }),
            Applied::Refused("broker 1 has epoch 2, not 99".into())
        );
        state.apply(22, MetadataRecord::FenceBroker { id: 1, epoch: 2 });
        let p = &state.topics["t"].partitions[1];
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (NO_LEADER, 1, vec![1])
        );
        assert_eq!(state.topics["t"].partitions[0].leader, 0);

        state.apply(23, MetadataRecord::UnfenceBroker { id: 1, epoch: 2 });
        let p = &state.topics["t"].partitions[1];
        assert_eq!((p.leader, p.leader_epoch), (1, 2));

        // A restart (new registration) ends the old incarnation's leadership at once.
        state.apply(24, MetadataRecord::RegisterBroker(broker(1)));
        let p = &state.topics["t"].partitions[1];
        assert_eq!((p.leader, p.leader_epoch), (NO_LEADER, 3));
        assert!(state.brokers[&1].fenced);
        state.apply(25, MetadataRecord::UnfenceBroker { id: 1, epoch: 24 });
        assert_eq!(state.topics["t"].partitions[1].leader_epoch, 4);
    }

    #[test]
    fn records_and_state_round_trip_through_bytes() {
        let mut state = ClusterState::default();
        let records = vec![
            MetadataRecord::RegisterBroker(broker(3)),
            MetadataRecord::CreateTopic(topic("orders", &[3, 3])),
            MetadataRecord::AllocateProducerIds {
                broker: 3,
                count: 1000,
            },
        ];
        let decoded = decode_records(&encode_records(&records)).unwrap();
        assert_eq!(decoded, records);
        let answers: Vec<Applied> = decoded.into_iter().map(|r| state.apply(5, r)).collect();
        assert_eq!(answers[2], Applied::ProducerIds(0));
        assert_eq!(state.next_producer_id, 1000);
        assert_eq!(ClusterState::decode(&state.encode()).unwrap(), state);
        assert!(decode_records(b"garbage").is_err());
    }
}

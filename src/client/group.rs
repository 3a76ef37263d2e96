//! Consumer groups for our consumer, with the classic protocol: the member joins
//! (JoinGroup, with the member-id handshake), the leader computes a range assignment from the
//! members' subscriptions, everyone gets theirs through SyncGroup, and each member starts from
//! the group's committed offsets. Heartbeats are sent from `poll`, and a rebalance announced
//! by the coordinator is joined there, so a member that keeps polling stays in the group.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::connection::Connection;
use super::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset};
use super::ClientError;

const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: find it again.
const COORDINATOR_ERRORS: [i16; 3] = [14, 15, 16];
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
}

impl GroupConfig {
    pub fn new(group_id: &str) -> Self {
        GroupConfig {
            group_id: group_id.to_owned(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
        }
    }
}

pub struct GroupConsumer {
    consumer: Consumer,
    config: GroupConfig,
    consumer_config: ConsumerConfig,
    topics: Vec<String>,
    coordinator: Option<Rc<Connection>>,
    member_id: String,
    generation: i32,
    assignment: BTreeSet<(String, i32)>,
    last_heartbeat: Instant,
    needs_join: bool,
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

fn unembed<M: Decodable>(mut bytes: Bytes) -> Option<M> {
    if bytes.len() < 2 {
        return None;
    }
    let version = bytes.get_i16();
    M::decode(&mut bytes, version.clamp(0, 3)).ok()
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
                .expect("member")
                .insert(topic.clone(), (next..next + take).collect());
            next += take;
        }
    }
    out
}

impl GroupConsumer {
    pub async fn connect(
        consumer_config: ConsumerConfig,
        config: GroupConfig,
        topics: &[&str],
    ) -> Result<GroupConsumer, ClientError> {
        let consumer = Consumer::connect(consumer_config.clone()).await?;
        Ok(GroupConsumer {
            consumer,
            config,
            consumer_config,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            assignment: BTreeSet::new(),
            last_heartbeat: Instant::now(),
            needs_join: true,
        })
    }

    pub fn assignment(&self) -> &BTreeSet<(String, i32)> {
        &self.assignment
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Records from the member's partitions; joins or rejoins the group first when needed, and
    /// heartbeats when due.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.needs_join {
            self.join().await?;
        } else if self.last_heartbeat.elapsed() >= self.config.heartbeat_interval {
            self.heartbeat().await?;
            if self.needs_join {
                self.join().await?;
            }
        }
        self.consumer.poll().await
    }

    /// Commits the member's current positions for the current generation.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::OffsetCommit, (2, 8))?;
        let mut by_topic: BTreeMap<
            String,
            Vec<m::offset_commit_request::OffsetCommitRequestPartition>,
        > = BTreeMap::new();
        for (topic, partition) in &self.assignment {
            if let Some(offset) = self.consumer.position(topic, *partition) {
                let mut p = m::offset_commit_request::OffsetCommitRequestPartition::default();
                p.partition_index = *partition;
                p.committed_offset = offset;
                by_topic.entry(topic.clone()).or_default().push(p);
            }
        }
        let mut request = m::OffsetCommitRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.generation_id_or_member_epoch = self.generation;
        request.member_id = s(&self.member_id);
        request.topics = by_topic
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = m::offset_commit_request::OffsetCommitRequestTopic::default();
                t.name = TopicName(s(&name));
                t.partitions = partitions;
                t
            })
            .collect();
        let response: m::OffsetCommitResponse = coordinator
            .send(ApiKey::OffsetCommit, version, &request)
            .await?;
        for t in &response.topics {
            for p in &t.partitions {
                if let Some(error) = ClientError::from_code(p.error_code, None) {
                    if matches!(
                        p.error_code,
                        REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID
                    ) {
                        self.needs_join = true;
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Leaves the group (its partitions go to the others at once).
    pub async fn close(mut self) -> Result<(), ClientError> {
        if self.member_id.is_empty() {
            return Ok(());
        }
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
        let _: m::LeaveGroupResponse = coordinator
            .send(ApiKey::LeaveGroup, version, &request)
            .await?;
        Ok(())
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
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => {
                self.needs_join = true;
                Ok(())
            }
            UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                self.needs_join = true;
                Ok(())
            }
            code if COORDINATOR_ERRORS.contains(&code) => {
                self.coordinator = None;
                Ok(())
            }
            code => Err(ClientError::from_code(code, None).expect("non-zero")),
        }
    }

    /// JoinGroup (with the member-id handshake), the leader's range assignment, SyncGroup, and
    /// a start at the committed offsets.
    async fn join(&mut self) -> Result<(), ClientError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::JoinGroup, (4, 5))?;
        let mut subscription = m::ConsumerProtocolSubscription::default();
        subscription.topics = self.topics.iter().map(|t| s(t)).collect();
        let metadata = embed(&subscription, 0)?;
        let joined = loop {
            let mut request = m::JoinGroupRequest::default();
            request.group_id = GroupId(s(&self.config.group_id));
            request.session_timeout_ms = self.config.session_timeout.as_millis() as i32;
            request.rebalance_timeout_ms = self.config.rebalance_timeout.as_millis() as i32;
            request.member_id = s(&self.member_id);
            request.protocol_type = s("consumer");
            let mut protocol = m::join_group_request::JoinGroupRequestProtocol::default();
            protocol.name = s("range");
            protocol.metadata = metadata.clone();
            request.protocols.push(protocol);
            let response: m::JoinGroupResponse = coordinator
                .send(ApiKey::JoinGroup, version, &request)
                .await?;
            match response.error_code {
                0 => break response,
                MEMBER_ID_REQUIRED => self.member_id = response.member_id.to_string(),
                UNKNOWN_MEMBER_ID => self.member_id.clear(),
                REBALANCE_IN_PROGRESS => {}
                code if COORDINATOR_ERRORS.contains(&code) => {
                    // The coordinator moved or is loading: find it again and retry.
                    self.coordinator = None;
                    crate::runtime::sleep(RETRY_BACKOFF).await;
                    return Box::pin(self.join()).await;
                }
                code => return Err(ClientError::from_code(code, None).expect("non-zero")),
            }
        };
        self.member_id = joined.member_id.to_string();
        self.generation = joined.generation_id;
        let mut assignments = Vec::new();
        if joined.leader == joined.member_id {
            let mut subscriptions = BTreeMap::new();
            for member in &joined.members {
                let topics = unembed::<m::ConsumerProtocolSubscription>(member.metadata.clone())
                    .map(|sub| sub.topics.iter().map(|t| t.to_string()).collect())
                    .unwrap_or_default();
                subscriptions.insert(member.member_id.to_string(), topics);
            }
            let all: BTreeSet<String> = subscriptions.values().flatten().cloned().collect();
            let partitions = self.consumer.partition_counts(&all).await?;
            for (member, topics) in range_assignment(&subscriptions, &partitions) {
                let mut assignment = m::ConsumerProtocolAssignment::default();
                assignment.assigned_partitions = topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let mut tp = m::consumer_protocol_assignment::TopicPartition::default();
                        tp.topic = TopicName(s(&topic));
                        tp.partitions = partitions;
                        tp
                    })
                    .collect();
                let mut a = m::sync_group_request::SyncGroupRequestAssignment::default();
                a.member_id = s(&member);
                a.assignment = embed(&assignment, 0)?;
                assignments.push(a);
            }
        }
        let version = coordinator.version(ApiKey::SyncGroup, (0, 3))?;
        let mut request = m::SyncGroupRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.generation_id = self.generation;
        request.member_id = s(&self.member_id);
        request.assignments = assignments;
        let synced: m::SyncGroupResponse = coordinator
            .send(ApiKey::SyncGroup, version, &request)
            .await?;
        if COORDINATOR_ERRORS.contains(&synced.error_code) {
            self.coordinator = None;
            self.needs_join = true;
            return Ok(());
        }
        if matches!(
            synced.error_code,
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION
        ) {
            // Another rebalance started meanwhile: the next poll joins it.
            self.needs_join = true;
            return Ok(());
        }
        if let Some(error) = ClientError::from_code(synced.error_code, None) {
            return Err(error);
        }
        let assignment = unembed::<m::ConsumerProtocolAssignment>(synced.assignment)
            .map(|a| {
                a.assigned_partitions
                    .iter()
                    .flat_map(|tp| {
                        let topic = tp.topic.0.to_string();
                        tp.partitions.iter().map(move |p| (topic.clone(), *p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.assignment = assignment;
        let slots: Vec<(&str, i32)> = self
            .assignment
            .iter()
            .map(|(t, p)| (t.as_str(), *p))
            .collect();
        self.consumer.assign(&slots);
        self.start_from_commits(&coordinator).await?;
        self.needs_join = false;
        self.last_heartbeat = Instant::now();
        Ok(())
    }

    async fn start_from_commits(&mut self, coordinator: &Connection) -> Result<(), ClientError> {
        if self.assignment.is_empty() {
            return Ok(());
        }
        let version = coordinator.version(ApiKey::OffsetFetch, (1, 7))?;
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &self.assignment {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        let mut request = m::OffsetFetchRequest::default();
        request.group_id = GroupId(s(&self.config.group_id));
        request.topics = Some(
            by_topic
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
        for t in &response.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    self.consumer.seek(
                        &t.name.0,
                        p.partition_index,
                        Offset::At(p.committed_offset),
                    );
                }
            }
        }
        Ok(())
    }
}

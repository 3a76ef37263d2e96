//! The group coordinator: consumer groups (classic protocol) and their committed offsets.
//!
//! A group lives on the shard that owns its partition of `__consumer_offsets`
//! (`records::partition_for`); requests reach that shard as `GroupCall`s. Every change that must
//! survive a restart (a commit, a generation's assignment, a deletion) is a record appended to
//! that partition and made durable before the caller is answered. When a shard opens one of
//! those partitions it replays it (`load`); until then the groups in it answer
//! COORDINATOR_LOAD_IN_PROGRESS.

pub mod consumer;
pub mod records;
pub mod state;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::ops::now_ms;
use super::shard::Shard;
use crate::protocol::batch;
use crate::protocol::error_code as code;
use crate::runtime;
use crate::storage::PartitionLog;
use records::{CommittedOffset, RecordKey};
use state::{Expiry, Group, GroupState, JoinParams, Now, Reply, SyncParams, SyncStep};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often deadlines (sessions, rebalances) are checked.
const TICK_MS: u64 = 50;
/// Bytes read per step while loading a partition of the offsets topic.
const LOAD_READ_BYTES: usize = 1 << 20;

/// A group request on its way to the owning shard. Everything in it is `Send`.
pub enum GroupCall {
    Join {
        request: m::JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    },
    Sync(m::SyncGroupRequest),
    Heartbeat(m::HeartbeatRequest),
    Leave {
        request: m::LeaveGroupRequest,
        version: i16,
    },
    Commit(m::OffsetCommitRequest),
    FetchOffsets {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe(Vec<String>),
    List,
    Delete(Vec<String>),
    OffsetDelete(m::OffsetDeleteRequest),
    ConsumerHeartbeat {
        request: m::ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: String,
        client_host: String,
    },
    ConsumerDescribe(Vec<String>),
}

pub enum GroupAnswer {
    Join(m::JoinGroupResponse),
    Sync(m::SyncGroupResponse),
    Heartbeat(m::HeartbeatResponse),
    Leave(m::LeaveGroupResponse),
    Commit(m::OffsetCommitResponse),
    FetchOffsets(FetchedOffsets),
    Describe(Vec<m::describe_groups_response::DescribedGroup>),
    List(Vec<ListedGroup>),
    Delete(Vec<(String, i16)>),
    OffsetDelete(m::OffsetDeleteResponse),
    ConsumerHeartbeat(m::ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(Vec<m::consumer_group_describe_response::DescribedGroup>),
}

/// A topic's partitions, each with its committed offset if it has one.
pub type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

pub struct FetchedOffsets {
    pub error: i16,
    pub topics: Vec<TopicOffsets>,
}

pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

/// The coordinator's state on one shard.
#[derive(Default)]
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    partitions: RefCell<HashMap<i32, Load>>,
}

fn now() -> Now {
    Now {
        instant: Instant::now(),
        wall_ms: now_ms(),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Partitions of the offsets topic: the topic's if it exists, else the configured count.
pub fn offsets_partitions(shard: &Shard) -> i32 {
    shard
        .image()
        .topic(OFFSETS_TOPIC)
        .map(|t| t.record.partitions as i32)
        .unwrap_or(shard.config.offsets_topic_num_partitions)
}

/// The shard that coordinates `group`.
pub fn owner_of(shard: &Shard, group: &str) -> usize {
    let partition = records::partition_for(group, offsets_partitions(shard));
    shard.owner(OFFSETS_TOPIC, partition)
}

impl Coordinator {
    /// Is this shard ready to answer for `group`? Its partition of the offsets topic must be
    /// open here and loaded.
    fn ready(&self, shard: &Shard, group: &str) -> Result<i32, i16> {
        let partition = records::partition_for(group, offsets_partitions(shard));
        let image = shard.image();
        if image.topic(OFFSETS_TOPIC).is_some() && !image.leads(OFFSETS_TOPIC, partition) {
            // The partition's leadership is elsewhere (or nowhere): so is the group.
            return Err(code::NOT_COORDINATOR);
        }
        match self.partitions.borrow().get(&partition) {
            Some(Load::Loaded) => Ok(partition),
            Some(Load::Loading) => Err(code::COORDINATOR_LOAD_IN_PROGRESS),
            None if shard.image().topic(OFFSETS_TOPIC).is_none() => {
                Err(code::COORDINATOR_NOT_AVAILABLE)
            }
            // The topic was just created and this shard is still opening its partition.
            None if shard.owner(OFFSETS_TOPIC, partition) == shard.id => {
                Err(code::COORDINATOR_LOAD_IN_PROGRESS)
            }
            None => Err(code::NOT_COORDINATOR),
        }
    }

    fn with_group<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        self.groups.borrow_mut().get_mut(id).map(f)
    }
}

/// Serves one group call on the owning shard.
pub async fn serve(shard: &Rc<Shard>, call: GroupCall) -> GroupAnswer {
    match call {
        GroupCall::Join {
            request,
            version,
            client_id,
            client_host,
        } => GroupAnswer::Join(join(shard, request, version, client_id, client_host).await),
        GroupCall::Sync(request) => GroupAnswer::Sync(sync(shard, request).await),
        GroupCall::Heartbeat(request) => GroupAnswer::Heartbeat(heartbeat(shard, request)),
        GroupCall::Leave { request, version } => {
            GroupAnswer::Leave(leave(shard, request, version).await)
        }
        GroupCall::Commit(request) => GroupAnswer::Commit(commit(shard, request).await),
        GroupCall::FetchOffsets { group, topics } => {
            GroupAnswer::FetchOffsets(fetch_offsets(shard, &group, topics))
        }
        GroupCall::Describe(groups) => GroupAnswer::Describe(describe(shard, groups)),
        GroupCall::List => GroupAnswer::List(list(shard)),
        GroupCall::Delete(groups) => GroupAnswer::Delete(delete_groups(shard, groups).await),
        GroupCall::OffsetDelete(request) => {
            GroupAnswer::OffsetDelete(offset_delete(shard, request).await)
        }
        GroupCall::ConsumerHeartbeat {
            request,
            version,
            client_id,
            client_host,
        } => GroupAnswer::ConsumerHeartbeat(consumer_heartbeat(
            shard,
            request,
            version,
            client_id,
            client_host,
        )),
        GroupCall::ConsumerDescribe(groups) => {
            GroupAnswer::ConsumerDescribe(consumer_describe(shard, groups))
        }
    }
}

/// Every topic the broker has, as the consumer-group assignors see them.
fn topic_shapes(shard: &Shard) -> consumer::Topics {
    shard
        .image()
        .topics
        .iter()
        .filter(|(name, _)| name.as_str() != OFFSETS_TOPIC)
        .map(|(name, t)| (name.clone(), (t.record.id, t.record.partitions as i32)))
        .collect()
}

fn consumer_heartbeat(
    shard: &Rc<Shard>,
    request: m::ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> m::ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let mut response = m::ConsumerGroupHeartbeatResponse::default();
    // The group's own configs (IncrementalAlterConfigs on the GROUP resource), else the broker's.
    let group_config = shard.image().group_config(&group_id);
    response.heartbeat_interval_ms = group_config.heartbeat_interval_ms;
    let fail = |mut response: m::ConsumerGroupHeartbeatResponse, error: i16, message: &str| {
        response.error_code = error;
        response.error_message = Some(str_bytes(message));
        response
    };
    if let Err(e) = shard.coordinator.ready(shard, &group_id) {
        return fail(response, e, "the coordinator is not ready for this group");
    }
    if group_id.is_empty() {
        return fail(response, code::INVALID_REQUEST, "the group id is empty");
    }
    let mut member_id = request.member_id.to_string();
    if member_id.is_empty() {
        if version >= 1 || request.member_epoch != 0 {
            return fail(response, code::INVALID_REQUEST, "the member id is empty");
        }
        member_id = uuid::Uuid::new_v4().to_string();
    }
    if request
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        return fail(
            response,
            code::INVALID_REQUEST,
            "regular-expression subscriptions are not supported by this broker",
        );
    }
    if request.member_epoch == 0
        && (request.rebalance_timeout_ms < 0 || request.subscribed_topic_names.is_none())
    {
        return fail(
            response,
            code::INVALID_REQUEST,
            "a joining member must give its rebalance timeout and subscription",
        );
    }
    let topics = topic_shapes(shard);
    let names_by_id: HashMap<[u8; 16], &String> =
        topics.iter().map(|(name, (id, _))| (*id, name)).collect();
    let owned = request.topic_partitions.as_ref().map(|list| {
        list.iter()
            .flat_map(|t| {
                let id = *t.topic_id.as_bytes();
                t.partitions.iter().map(move |p| (id, *p))
            })
            .collect()
    });
    let params = consumer::HeartbeatParams {
        member_id: member_id.clone(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        assignor: request.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id,
        client_host,
    };
    let at = now();
    let session = Duration::from_millis(group_config.session_timeout_ms.max(0) as u64);
    let outcome = {
        let mut groups = shard.coordinator.groups.borrow_mut();
        if !groups.contains_key(&group_id) {
            if request.member_epoch != 0 {
                return fail(response, code::UNKNOWN_MEMBER_ID, "no such group");
            }
            groups.insert(group_id.clone(), Group::new(&group_id, at));
        }
        let group = groups.get_mut(&group_id).expect("inserted above");
        if !group.members.is_empty() {
            return fail(
                response,
                code::GROUP_ID_NOT_FOUND,
                "the group uses the classic protocol",
            );
        }
        let consumer = group
            .consumer
            .get_or_insert_with(consumer::ConsumerGroup::new);
        let was_empty = consumer.is_empty();
        let outcome = consumer.heartbeat(params, &topics, at.instant, session);
        if consumer.is_empty() != was_empty {
            group.state_since_ms = at.wall_ms;
        }
        outcome
    };
    response.error_code = outcome.error;
    if outcome.error != code::NONE {
        response.error_message = Some(str_bytes("the member is not known at this epoch"));
        return response;
    }
    response.member_id = Some(str_bytes(&outcome.member_id));
    response.member_epoch = outcome.member_epoch;
    response.assignment = outcome.assignment.map(|partitions| {
        let mut assignment = m::consumer_group_heartbeat_response::Assignment::default();
        assignment.topic_partitions = by_topic(&partitions)
            .into_iter()
            .filter(|(id, _)| names_by_id.contains_key(id))
            .map(|(id, partitions)| {
                let mut t = m::consumer_group_heartbeat_response::TopicPartitions::default();
                t.topic_id = uuid::Uuid::from_bytes(id);
                t.partitions = partitions;
                t
            })
            .collect();
        assignment
    });
    response
}

fn by_topic(
    partitions: &std::collections::BTreeSet<consumer::Partition>,
) -> Vec<([u8; 16], Vec<i32>)> {
    let mut out: Vec<([u8; 16], Vec<i32>)> = Vec::new();
    for (id, p) in partitions {
        match out.last_mut() {
            Some((last, list)) if last == id => list.push(*p),
            _ => out.push((*id, vec![*p])),
        }
    }
    out
}

fn consumer_describe(
    shard: &Rc<Shard>,
    groups: Vec<String>,
) -> Vec<m::consumer_group_describe_response::DescribedGroup> {
    use m::consumer_group_describe_response as d;
    let topics = topic_shapes(shard);
    let names_by_id: HashMap<[u8; 16], &String> =
        topics.iter().map(|(name, (id, _))| (*id, name)).collect();
    let described = |partitions: &std::collections::BTreeSet<consumer::Partition>| {
        let mut assignment = d::Assignment::default();
        assignment.topic_partitions = by_topic(partitions)
            .into_iter()
            .map(|(id, partitions)| {
                let mut t = d::TopicPartitions::default();
                t.topic_id = uuid::Uuid::from_bytes(id);
                t.topic_name =
                    TopicName(str_bytes(names_by_id.get(&id).map_or("", |n| n.as_str())));
                t.partitions = partitions;
                t
            })
            .collect();
        assignment
    };
    groups
        .into_iter()
        .map(|id| {
            let mut out = d::DescribedGroup::default();
            out.group_id = GroupId(str_bytes(&id));
            if let Err(e) = shard.coordinator.ready(shard, &id) {
                out.error_code = e;
                return out;
            }
            let all = shard.coordinator.groups.borrow();
            let Some(consumer) = all.get(&id).and_then(|g| g.consumer.as_ref()) else {
                out.error_code = code::GROUP_ID_NOT_FOUND;
                out.error_message = Some(str_bytes("no consumer group by that id"));
                return out;
            };
            out.group_state = str_bytes(consumer.state());
            out.group_epoch = consumer.epoch;
            out.assignment_epoch = consumer.target_epoch;
            out.assignor_name = str_bytes(&consumer.assignor);
            out.members = consumer
                .members
                .values()
                .map(|member| {
                    let mut m = d::Member::default();
                    m.member_id = str_bytes(&member.id);
                    m.instance_id = member.instance_id.as_deref().map(str_bytes);
                    m.rack_id = member.rack_id.as_deref().map(str_bytes);
                    m.member_epoch = member.epoch;
                    m.client_id = str_bytes(&member.client_id);
                    m.client_host = str_bytes(&member.client_host);
                    m.subscribed_topic_names = member
                        .subscribed
                        .iter()
                        .map(|t| TopicName(str_bytes(t)))
                        .collect();
                    m.assignment = described(&member.assigned);
                    m.target_assignment =
                        described(&consumer.target.get(&member.id).cloned().unwrap_or_default());
                    m
                })
                .collect();
            out
        })
        .collect()
}

async fn join(
    shard: &Rc<Shard>,
    request: m::JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> m::JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let outcome = 'outcome: {
        if group_id.is_empty() {
            break 'outcome state::JoinOutcome::error(code::INVALID_GROUP_ID, &member_id);
        }
        if let Err(e) = shard.coordinator.ready(shard, &group_id) {
            break 'outcome state::JoinOutcome::error(e, &member_id);
        }
        let config = &shard.config;
        let session = request.session_timeout_ms;
        if session < config.group_min_session_timeout_ms
            || session > config.group_max_session_timeout_ms
        {
            break 'outcome state::JoinOutcome::error(code::INVALID_SESSION_TIMEOUT, &member_id);
        }
        let rebalance = if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            session
        };
        let params = JoinParams {
            member_id: member_id.clone(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            session_timeout: Duration::from_millis(session.max(0) as u64),
            rebalance_timeout: Duration::from_millis(rebalance.max(0) as u64),
            client_id,
            client_host,
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
        };
        let delay = Duration::from_millis(config.group_initial_rebalance_delay_ms);
        let at = now();
        let reply = {
            let mut groups = shard.coordinator.groups.borrow_mut();
            if !member_id.is_empty() && !groups.contains_key(&group_id) {
                break 'outcome state::JoinOutcome::error(code::UNKNOWN_MEMBER_ID, &member_id);
            }
            let group = groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, at));
            if group.consumer.as_ref().is_some_and(|c| !c.is_empty()) {
                break 'outcome state::JoinOutcome::error(
                    code::INCONSISTENT_GROUP_PROTOCOL,
                    &member_id,
                );
            }
            if params.member_id.is_empty()
                && group.members.len() >= config.group_max_size as usize
                && params.instance_id.is_none()
            {
                break 'outcome state::JoinOutcome::error(code::GROUP_MAX_SIZE_REACHED, "");
            }
            group.join(params, at, delay)
        };
        persist_if_needed(shard, &group_id);
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| state::JoinOutcome::error(code::UNKNOWN_MEMBER_ID, &member_id)),
        }
    };
    let mut response = m::JoinGroupResponse::default();
    response.error_code = outcome.error;
    response.generation_id = outcome.generation;
    if version >= 7 {
        response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
    }
    response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    if version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(StrBytes::default());
    }
    response.leader = str_bytes(&outcome.leader);
    if version >= 9 {
        response.skip_assignment = outcome.skip_assignment;
    }
    response.member_id = str_bytes(&outcome.member_id);
    response.members = outcome
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut member = m::join_group_response::JoinGroupResponseMember::default();
            member.member_id = str_bytes(&id);
            if version >= 5 {
                member.group_instance_id = instance.as_deref().map(str_bytes);
            }
            member.metadata = metadata;
            member
        })
        .collect();
    response
}

async fn sync(shard: &Rc<Shard>, request: m::SyncGroupRequest) -> m::SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let outcome = 'outcome: {
        if let Err(e) = shard.coordinator.ready(shard, &group_id) {
            break 'outcome state::SyncOutcome::error(e);
        }
        let params = SyncParams {
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: request.generation_id,
            protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
            protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
            assignments: request
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        };
        let step = shard
            .coordinator
            .with_group(&group_id, |g| g.sync(params, now()));
        let rx = match step {
            None => break 'outcome state::SyncOutcome::error(code::UNKNOWN_MEMBER_ID),
            Some(SyncStep::Reply(Reply::Now(outcome))) => break 'outcome outcome,
            Some(SyncStep::Reply(Reply::Later(rx))) => rx,
            Some(SyncStep::Persist {
                waiter,
                generation,
                record,
            }) => {
                let key = records::encode_key(&RecordKey::Group(group_id.clone()));
                let value = records::encode_group(&record);
                let written = write(shard, &group_id, vec![(key, Some(value))]).await;
                if let Err(e) = &written {
                    tracing::warn!(group = %group_id, code = e, "cannot store a group assignment");
                }
                shard.coordinator.with_group(&group_id, |g| {
                    g.finish_sync(generation, written.is_ok(), now())
                });
                waiter
            }
        };
        rx.await
            .unwrap_or_else(|_| state::SyncOutcome::error(code::UNKNOWN_MEMBER_ID))
    };
    let mut response = m::SyncGroupResponse::default();
    response.error_code = outcome.error;
    response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
    response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    response.assignment = outcome.assignment;
    response
}

fn heartbeat(shard: &Rc<Shard>, request: m::HeartbeatRequest) -> m::HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let mut response = m::HeartbeatResponse::default();
    response.error_code = match shard.coordinator.ready(shard, &group_id) {
        Err(e) => e,
        Ok(_) => shard
            .coordinator
            .with_group(&group_id, |g| {
                g.heartbeat(
                    &request.member_id,
                    request.group_instance_id.as_deref(),
                    request.generation_id,
                    now(),
                )
            })
            .unwrap_or(code::UNKNOWN_MEMBER_ID),
    };
    response
}

async fn leave(
    shard: &Rc<Shard>,
    request: m::LeaveGroupRequest,
    version: i16,
) -> m::LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let mut response = m::LeaveGroupResponse::default();
    let identities: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    if let Err(e) = shard.coordinator.ready(shard, &group_id) {
        response.error_code = e;
        return response;
    }
    let at = now();
    let results: Option<Vec<i16>> = shard.coordinator.with_group(&group_id, |g| {
        identities
            .iter()
            .map(|(member, instance)| g.leave(member, instance.as_deref(), at))
            .collect()
    });
    persist_if_needed(shard, &group_id);
    let results = results.unwrap_or_else(|| vec![code::UNKNOWN_MEMBER_ID; identities.len()]);
    if version >= 3 {
        response.members = identities
            .into_iter()
            .zip(results)
            .map(|((member, instance), error)| {
                let mut r = m::leave_group_response::MemberResponse::default();
                r.member_id = str_bytes(&member);
                r.group_instance_id = instance.as_deref().map(str_bytes);
                r.error_code = error;
                r
            })
            .collect();
    } else {
        response.error_code = results[0];
    }
    response
}

async fn commit(shard: &Rc<Shard>, request: m::OffsetCommitRequest) -> m::OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let respond = |errors: &dyn Fn(&str, i32) -> i16| commit_response(&request, errors);
    if let Err(e) = shard.coordinator.ready(shard, &group_id) {
        return respond(&|_, _| e);
    }
    if group_id.is_empty() {
        return respond(&|_, _| code::INVALID_GROUP_ID);
    }
    let at = now();
    let member_id = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let generation = request.generation_id_or_member_epoch;
    let checked = {
        let mut groups = shard.coordinator.groups.borrow_mut();
        match groups.get_mut(&group_id) {
            Some(group) => group.check_commit(&member_id, instance.as_deref(), generation, at),
            None if generation < 0 => {
                groups.insert(group_id.clone(), Group::new(&group_id, at));
                Ok(())
            }
            None => Err(code::ILLEGAL_GENERATION),
        }
    };
    if let Err(e) = checked {
        return respond(&|_, _| e);
    }
    let image = shard.image();
    let metadata_max = shard.config.offset_metadata_max_bytes;
    let mut errors: HashMap<(String, i32), i16> = HashMap::new();
    let mut commits: Vec<(String, i32, CommittedOffset)> = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let name = topic.name.0.to_string();
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let error = if !image.partition_exists(&name, p.partition_index) {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else if metadata.len() > metadata_max {
                code::OFFSET_METADATA_TOO_LARGE
            } else {
                commits.push((
                    name.clone(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp_ms: at.wall_ms,
                    },
                ));
                code::NONE
            };
            errors.insert((name, p.partition_index), error);
        }
    }
    if !commits.is_empty() {
        let batch = commits
            .iter()
            .map(|(topic, partition, value)| {
                let key = RecordKey::Offset {
                    group: group_id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (
                    records::encode_key(&key),
                    Some(records::encode_offset(value)),
                )
            })
            .collect();
        if let Err(e) = write(shard, &group_id, batch).await {
            for (topic, partition, _) in &commits {
                errors.insert((topic.clone(), *partition), e);
            }
        } else {
            shard.coordinator.with_group(&group_id, |g| {
                for (topic, partition, value) in commits {
                    g.offsets.insert((topic, partition), value);
                }
            });
        }
    }
    respond(&|topic, partition| {
        errors
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(code::NONE)
    })
}

/// An OffsetCommit response listing every partition of `request` with its error.
pub fn commit_response(
    request: &m::OffsetCommitRequest,
    errors: &dyn Fn(&str, i32) -> i16,
) -> m::OffsetCommitResponse {
    let mut response = m::OffsetCommitResponse::default();
    response.topics = request
        .topics
        .iter()
        .map(|t| {
            let mut topic = m::offset_commit_response::OffsetCommitResponseTopic::default();
            topic.name = t.name.clone();
            topic.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut out =
                        m::offset_commit_response::OffsetCommitResponsePartition::default();
                    out.partition_index = p.partition_index;
                    out.error_code = errors(&t.name, p.partition_index);
                    out
                })
                .collect();
            topic
        })
        .collect();
    response
}

fn fetch_offsets(
    shard: &Rc<Shard>,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> FetchedOffsets {
    if let Err(e) = shard.coordinator.ready(shard, group_id) {
        return FetchedOffsets {
            error: e,
            topics: Vec::new(),
        };
    }
    let groups = shard.coordinator.groups.borrow();
    let offsets = groups.get(group_id).map(|g| &g.offsets);
    let topics = match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| {
                        let committed = offsets.and_then(|o| o.get(&(topic.clone(), p)).cloned());
                        (p, committed)
                    })
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut by_topic: HashMap<String, Vec<(i32, Option<CommittedOffset>)>> = HashMap::new();
            for ((topic, partition), value) in offsets.into_iter().flatten() {
                by_topic
                    .entry(topic.clone())
                    .or_default()
                    .push((*partition, Some(value.clone())));
            }
            let mut topics: Vec<_> = by_topic.into_iter().collect();
            topics.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, partitions) in &mut topics {
                partitions.sort_by_key(|(p, _)| *p);
            }
            topics
        }
    };
    FetchedOffsets {
        error: code::NONE,
        topics,
    }
}

fn describe(
    shard: &Rc<Shard>,
    groups: Vec<String>,
) -> Vec<m::describe_groups_response::DescribedGroup> {
    groups
        .into_iter()
        .map(|id| {
            let mut out = m::describe_groups_response::DescribedGroup::default();
            out.group_id = GroupId(str_bytes(&id));
            if let Err(e) = shard.coordinator.ready(shard, &id) {
                out.error_code = e;
                return out;
            }
            let groups = shard.coordinator.groups.borrow();
            let Some(group) = groups.get(&id) else {
                out.group_state = str_bytes(GroupState::Dead.name());
                return out;
            };
            out.group_state = str_bytes(group.state.name());
            out.protocol_type = str_bytes(group.protocol_type.as_deref().unwrap_or_default());
            out.protocol_data = str_bytes(group.protocol.as_deref().unwrap_or_default());
            let stable = group.state == GroupState::Stable;
            out.members = group
                .describe_members()
                .map(|member| {
                    let mut d = m::describe_groups_response::DescribedGroupMember::default();
                    d.member_id = str_bytes(&member.id);
                    d.group_instance_id = member.instance_id.as_deref().map(str_bytes);
                    d.client_id = str_bytes(&member.client_id);
                    d.client_host = str_bytes(&member.client_host);
                    if stable {
                        d.member_metadata = group.member_metadata(member);
                        d.member_assignment = member.assignment.clone();
                    }
                    d
                })
                .collect();
            out
        })
        .collect()
}

fn list(shard: &Rc<Shard>) -> Vec<ListedGroup> {
    let loaded: Vec<i32> = shard
        .coordinator
        .partitions
        .borrow()
        .iter()
        .filter(|(_, l)| **l == Load::Loaded)
        .map(|(p, _)| *p)
        .collect();
    let partitions = offsets_partitions(shard);
    let mut out: Vec<ListedGroup> = shard
        .coordinator
        .groups
        .borrow()
        .values()
        .filter(|g| g.state != GroupState::Dead)
        .filter(|g| loaded.contains(&records::partition_for(&g.id, partitions)))
        .map(|g| match &g.consumer {
            Some(consumer) => ListedGroup {
                group_id: g.id.clone(),
                protocol_type: "consumer".to_owned(),
                state: consumer.state(),
                group_type: "consumer",
            },
            None => ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
                group_type: "classic",
            },
        })
        .collect();
    out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    out
}

async fn delete_groups(shard: &Rc<Shard>, groups: Vec<String>) -> Vec<(String, i16)> {
    let mut results = Vec::with_capacity(groups.len());
    for id in groups {
        if let Err(e) = shard.coordinator.ready(shard, &id) {
            results.push((id, e));
            continue;
        }
        let tombstones = {
            let mut all = shard.coordinator.groups.borrow_mut();
            match all.get_mut(&id) {
                None => Err(code::GROUP_ID_NOT_FOUND),
                Some(g) if g.state == GroupState::Dead => Err(code::GROUP_ID_NOT_FOUND),
                Some(g) if !g.is_empty() => Err(code::NON_EMPTY_GROUP),
                Some(g) => {
                    g.state = GroupState::Dead;
                    Ok(tombstones_for(&id, g.offsets.keys(), true))
                }
            }
        };
        let error = match tombstones {
            Err(e) => e,
            Ok(batch) => match write(shard, &id, batch).await {
                Ok(()) => {
                    shard.coordinator.groups.borrow_mut().remove(&id);
                    code::NONE
                }
                Err(e) => {
                    shard
                        .coordinator
                        .with_group(&id, |g| g.state = GroupState::Empty);
                    e
                }
            },
        };
        results.push((id, error));
    }
    results
}

fn tombstones_for<'a>(
    group: &str,
    offsets: impl Iterator<Item = &'a (String, i32)>,
    with_group: bool,
) -> Vec<(Bytes, Option<Bytes>)> {
    let mut batch: Vec<(Bytes, Option<Bytes>)> = offsets
        .map(|(topic, partition)| {
            let key = RecordKey::Offset {
                group: group.to_owned(),
                topic: topic.clone(),
                partition: *partition,
            };
            (records::encode_key(&key), None)
        })
        .collect();
    if with_group {
        batch.push((
            records::encode_key(&RecordKey::Group(group.to_owned())),
            None,
        ));
    }
    batch
}

async fn offset_delete(
    shard: &Rc<Shard>,
    request: m::OffsetDeleteRequest,
) -> m::OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    let mut response = m::OffsetDeleteResponse::default();
    if let Err(e) = shard.coordinator.ready(shard, &group_id) {
        response.error_code = e;
        return response;
    }
    let plan = shard.coordinator.with_group(&group_id, |g| {
        let active = !g.is_empty();
        let subscribed = g.subscribed_topics();
        if active && subscribed.is_none() {
            return Err(code::NON_EMPTY_GROUP);
        }
        let subscribed = if active {
            subscribed.unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut doomed = Vec::new();
        let mut errors = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            for p in &topic.partitions {
                let error = if subscribed.contains(&name) {
                    code::GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    if g.offsets.contains_key(&(name.clone(), p.partition_index)) {
                        doomed.push((name.clone(), p.partition_index));
                    }
                    code::NONE
                };
                errors.push((name.clone(), p.partition_index, error));
            }
        }
        Ok((doomed, errors))
    });
    let (doomed, mut errors) = match plan {
        None => {
            response.error_code = code::GROUP_ID_NOT_FOUND;
            return response;
        }
        Some(Err(e)) => {
            response.error_code = e;
            return response;
        }
        Some(Ok(plan)) => plan,
    };
    if !doomed.is_empty() {
        let batch = tombstones_for(&group_id, doomed.iter(), false);
        match write(shard, &group_id, batch).await {
            Ok(()) => {
                shard.coordinator.with_group(&group_id, |g| {
                    for key in &doomed {
                        g.offsets.remove(key);
                    }
                });
            }
            Err(e) => {
                for entry in &mut errors {
                    entry.2 = e;
                }
            }
        }
    }
    let mut topics: Vec<m::offset_delete_response::OffsetDeleteResponseTopic> = Vec::new();
    for (name, partition, error) in errors {
        if topics.last().is_none_or(|t| t.name.0.as_str() != name) {
            let mut t = m::offset_delete_response::OffsetDeleteResponseTopic::default();
            t.name = TopicName(str_bytes(&name));
            topics.push(t);
        }
        let mut p = m::offset_delete_response::OffsetDeleteResponsePartition::default();
        p.partition_index = partition;
        p.error_code = error;
        topics.last_mut().expect("pushed above").partitions.push(p);
    }
    response.topics = topics;
    response
}

/// Appends records to the group's partition of the offsets topic and waits until they are
/// durable. Errors are the codes a group API answers with.
async fn write(
    shard: &Rc<Shard>,
    group: &str,
    batch: Vec<(Bytes, Option<Bytes>)>,
) -> Result<(), i16> {
    let partition = records::partition_for(group, offsets_partitions(shard));
    let log = shard
        .log(OFFSETS_TOPIC, partition)
        .ok_or(code::NOT_COORDINATOR)?;
    append(&log, batch).await
}

pub async fn append(log: &Rc<PartitionLog>, batch: Vec<(Bytes, Option<Bytes>)>) -> Result<(), i16> {
    let timestamp = now_ms();
    let records = batch
        .into_iter()
        .map(|(key, value)| (Some(key), value, timestamp));
    let buf = batch::encode_records(records, (-1, -1, -1), Compression::None)
        .map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
    let headers =
        batch::validate_record_set(&buf, usize::MAX).map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
    let info = log
        .append(buf, &headers, timestamp)
        .map_err(|_| code::COORDINATOR_NOT_AVAILABLE)?;
    log.wait_durable(info.last_offset + 1)
        .await
        .map_err(|_| code::COORDINATOR_NOT_AVAILABLE)
}

/// Writes a group's record if a change asked for it (a group that emptied, a static member
/// that came back). Runs in the background: no caller waits on it.
fn persist_if_needed(shard: &Rc<Shard>, group_id: &str) {
    let record = shard.coordinator.with_group(group_id, |g| {
        std::mem::take(&mut g.needs_persist).then(|| g.stored(None))
    });
    if let Some(Some(record)) = record {
        let shard = shard.clone();
        let group_id = group_id.to_owned();
        runtime::spawn(async move {
            let key = records::encode_key(&RecordKey::Group(group_id.clone()));
            let value = records::encode_group(&record);
            if let Err(e) = write(&shard, &group_id, vec![(key, Some(value))]).await {
                tracing::warn!(group = %group_id, code = e, "cannot store group state");
            }
        });
    }
}

/// Replays one partition of the offsets topic into this shard's groups.
pub fn start_load(shard: &Rc<Shard>, partition: i32, log: Rc<PartitionLog>) {
    shard
        .coordinator
        .partitions
        .borrow_mut()
        .insert(partition, Load::Loading);
    let shard = shard.clone();
    runtime::spawn(async move {
        let started = Instant::now();
        match load(&log).await {
            Ok(state) => {
                let at = now();
                let mut groups = shard.coordinator.groups.borrow_mut();
                let count = state.len();
                for (id, (stored, offsets)) in state {
                    let mut group = match stored {
                        Some(stored) => Group::restore(&id, stored, at),
                        None => Group::new(&id, at),
                    };
                    group.offsets = offsets;
                    groups.insert(id, group);
                }
                if count > 0 {
                    tracing::info!(
                        partition,
                        groups = count,
                        records = log.log_end_offset() - log.log_start_offset(),
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "offsets partition loaded"
                    );
                }
            }
            Err(e) => tracing::error!(partition, error = %e, "cannot load offsets partition"),
        }
        shard
            .coordinator
            .partitions
            .borrow_mut()
            .insert(partition, Load::Loaded);
    });
}

type Loaded = HashMap<
    String,
    (
        Option<records::StoredGroup>,
        HashMap<(String, i32), CommittedOffset>,
    ),
>;

async fn load(log: &PartitionLog) -> anyhow::Result<Loaded> {
    let mut state: Loaded = HashMap::new();
    let mut offset = log.log_start_offset();
    let end = log.high_watermark();
    while offset < end {
        let out = log.read(offset, LOAD_READ_BYTES, Some(end)).await?;
        let mut data = BytesMut::with_capacity(out.bytes);
        for chunk in &out.chunks {
            data.extend_from_slice(chunk.as_ref());
        }
        let mut data = data.freeze();
        let before = offset;
        while !data.is_empty() {
            let header = match batch::parse_header(&data) {
                Ok(header) => header,
                // Read again from this batch on.
                Err(batch::BatchError::Truncated(_)) => break,
                Err(e) => return Err(e.into()),
            };
            let mut one = data.split_to(header.size);
            if header.last_offset() < offset {
                continue;
            }
            offset = header.last_offset() + 1;
            if header.is_control() {
                continue;
            }
            let set = RecordBatchDecoder::decode(&mut one)?;
            for record in set.records {
                apply_record(&mut state, record.key.as_deref(), record.value.as_deref());
            }
        }
        if offset == before {
            anyhow::bail!("no progress reading offsets log at {offset}");
        }
        runtime::yield_to_requests().await;
    }
    Ok(state)
}

fn apply_record(state: &mut Loaded, key: Option<&[u8]>, value: Option<&[u8]>) {
    let Some(key) = key.and_then(|k| records::decode_key(k).ok()) else {
        tracing::warn!("skipping an offsets record with an unreadable key");
        return;
    };
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            let entry = state.entry(group).or_default();
            match value.map(records::decode_offset) {
                None => {
                    entry.1.remove(&(topic, partition));
                }
                Some(Ok(v)) => {
                    entry.1.insert((topic, partition), v);
                }
                Some(Err(_)) => tracing::warn!("skipping an unreadable offset record"),
            }
        }
        RecordKey::Group(group) => match value.map(records::decode_group) {
            None => {
                state.remove(&group);
            }
            Some(Ok(v)) => state.entry(group).or_default().0 = Some(v),
            Some(Err(_)) => tracing::warn!("skipping an unreadable group record"),
        },
    }
}

/// Session and rebalance deadlines, and offset retention, for the groups this shard owns.
pub async fn run_ticks(shard: Rc<Shard>) {
    let retention_check = Duration::from_millis(shard.config.offsets_retention_check_interval_ms);
    let mut last_retention = Instant::now();
    loop {
        if runtime::timeout(Duration::from_millis(TICK_MS), shard.shutdown_signal())
            .await
            .is_some()
        {
            return;
        }
        let at = now();
        let has_consumer_groups = shard
            .coordinator
            .groups
            .borrow()
            .values()
            .any(|g| g.consumer.as_ref().is_some_and(|c| !c.is_empty()));
        if has_consumer_groups {
            let topics = topic_shapes(&shard);
            for group in shard.coordinator.groups.borrow_mut().values_mut() {
                if let Some(consumer) = &mut group.consumer {
                    if consumer.tick(at.instant, &topics) && consumer.is_empty() {
                        group.state_since_ms = at.wall_ms;
                    }
                }
            }
        }
        let changed: Vec<String> = shard
            .coordinator
            .groups
            .borrow_mut()
            .values_mut()
            .filter_map(|g| g.tick(at).then(|| g.id.clone()))
            .collect();
        for id in changed {
            persist_if_needed(&shard, &id);
        }
        if last_retention.elapsed() >= retention_check {
            last_retention = Instant::now();
            expire_offsets(&shard, at).await;
        }
    }
}

/// Offset retention (`offsets.retention.minutes`): offsets of a group that has been empty
/// that long go; so do a standalone consumer's offsets that old. A group left with nothing
/// is deleted.
async fn expire_offsets(shard: &Rc<Shard>, at: Now) {
    let retention_ms = shard
        .config
        .offsets_retention_minutes
        .saturating_mul(60_000);
    let plans: Vec<(String, Expiry)> = shard
        .coordinator
        .groups
        .borrow()
        .values()
        .filter_map(|g| {
            g.expiry(at.wall_ms, retention_ms)
                .map(|e| (g.id.clone(), e))
        })
        .collect();
    for (
        id,
        Expiry {
            expired,
            remove_group,
        },
    ) in plans
    {
        let batch = tombstones_for(&id, expired.iter(), remove_group);
        if write(shard, &id, batch).await.is_err() {
            continue;
        }
        tracing::info!(group = %id, offsets = expired.len(), "expired committed offsets");
        let mut groups = shard.coordinator.groups.borrow_mut();
        if remove_group && groups.get(&id).is_some_and(|g| g.is_empty()) {
            groups.remove(&id);
        } else if let Some(g) = groups.get_mut(&id) {
            for key in &expired {
                g.offsets.remove(key);
            }
        }
    }
}

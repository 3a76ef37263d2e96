//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and OffsetDelete. Each request is
//! decoded here, sent to the shard that coordinates its group (`broker::group`), and the
//! answer shaped for the request's version. Requests naming several groups are split by owner.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::{self as m, ApiKey, GroupId, TopicName};

use super::{control, decode, encoded, str_bytes, Response};
use crate::broker::group::{self, GroupAnswer, GroupCall, OFFSETS_TOPIC};
use crate::broker::ops::{ControlRequest, CreateTopicSpec};
use crate::broker::shard::{Shard, ShardReply, ShardRequest};
use crate::protocol::error_code as code;
use crate::protocol::frame::RequestHeader;

pub(super) enum Incoming {
    FindCoordinator(m::FindCoordinatorRequest),
    Join(m::JoinGroupRequest),
    Sync(m::SyncGroupRequest),
    Heartbeat(m::HeartbeatRequest),
    Leave(m::LeaveGroupRequest),
    Commit(m::OffsetCommitRequest),
    Fetch(m::OffsetFetchRequest),
    List(m::ListGroupsRequest),
    Describe(m::DescribeGroupsRequest),
    Delete(m::DeleteGroupsRequest),
    OffsetDelete(m::OffsetDeleteRequest),
    ConsumerHeartbeat(m::ConsumerGroupHeartbeatRequest),
    ConsumerDescribe(m::ConsumerGroupDescribeRequest),
}

pub(super) fn decode_request(
    key: ApiKey,
    body: BytesMut,
    header: &RequestHeader,
) -> Result<Incoming, String> {
    Ok(match key {
        ApiKey::FindCoordinator => Incoming::FindCoordinator(decode(body, header)?),
        ApiKey::JoinGroup => Incoming::Join(decode(body, header)?),
        ApiKey::SyncGroup => Incoming::Sync(decode(body, header)?),
        ApiKey::Heartbeat => Incoming::Heartbeat(decode(body, header)?),
        ApiKey::LeaveGroup => Incoming::Leave(decode(body, header)?),
        ApiKey::OffsetCommit => Incoming::Commit(decode(body, header)?),
        ApiKey::OffsetFetch => Incoming::Fetch(decode(body, header)?),
        ApiKey::ListGroups => Incoming::List(decode(body, header)?),
        ApiKey::DescribeGroups => Incoming::Describe(decode(body, header)?),
        ApiKey::DeleteGroups => Incoming::Delete(decode(body, header)?),
        ApiKey::OffsetDelete => Incoming::OffsetDelete(decode(body, header)?),
        ApiKey::ConsumerGroupHeartbeat => Incoming::ConsumerHeartbeat(decode(body, header)?),
        ApiKey::ConsumerGroupDescribe => Incoming::ConsumerDescribe(decode(body, header)?),
        other => return Err(format!("{other:?} is not a group API")),
    })
}

pub(super) async fn serve(
    shard: &Rc<Shard>,
    request: Incoming,
    header: &RequestHeader,
    client_host: String,
) -> Response {
    let version = header.api_version;
    match request {
        Incoming::FindCoordinator(request) => encoded(
            ApiKey::FindCoordinator,
            header,
            &find_coordinator(shard, request, version).await,
        ),
        Incoming::Join(request) => {
            let group = request.group_id.0.to_string();
            let call = GroupCall::Join {
                request,
                version,
                client_id: header.client_id.clone().unwrap_or_default(),
                client_host,
            };
            match call_owner(shard, &group, call).await {
                Some(GroupAnswer::Join(response)) => encoded(ApiKey::JoinGroup, header, &response),
                _ => {
                    let mut response = m::JoinGroupResponse::default();
                    response.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    response.generation_id = -1;
                    if version < 7 {
                        response.protocol_name = Some(Default::default());
                    }
                    encoded(ApiKey::JoinGroup, header, &response)
                }
            }
        }
        Incoming::Sync(request) => {
            let group = request.group_id.0.to_string();
            let response = match call_owner(shard, &group, GroupCall::Sync(request)).await {
                Some(GroupAnswer::Sync(response)) => response,
                _ => {
                    let mut response = m::SyncGroupResponse::default();
                    response.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    response
                }
            };
            encoded(ApiKey::SyncGroup, header, &response)
        }
        Incoming::Heartbeat(request) => {
            let group = request.group_id.0.to_string();
            let response = match call_owner(shard, &group, GroupCall::Heartbeat(request)).await {
                Some(GroupAnswer::Heartbeat(response)) => response,
                _ => {
                    let mut response = m::HeartbeatResponse::default();
                    response.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    response
                }
            };
            encoded(ApiKey::Heartbeat, header, &response)
        }
        Incoming::Leave(request) => {
            let group = request.group_id.0.to_string();
            let call = GroupCall::Leave { request, version };
            let response = match call_owner(shard, &group, call).await {
                Some(GroupAnswer::Leave(response)) => response,
                _ => {
                    let mut response = m::LeaveGroupResponse::default();
                    response.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    response
                }
            };
            encoded(ApiKey::LeaveGroup, header, &response)
        }
        Incoming::Commit(request) => {
            let group = request.group_id.0.to_string();
            let fallback =
                group::commit_response(&request, &|_, _| code::COORDINATOR_NOT_AVAILABLE);
            let response = match call_owner(shard, &group, GroupCall::Commit(request)).await {
                Some(GroupAnswer::Commit(response)) => response,
                _ => fallback,
            };
            encoded(ApiKey::OffsetCommit, header, &response)
        }
        Incoming::Fetch(request) => encoded(
            ApiKey::OffsetFetch,
            header,
            &offset_fetch(shard, request, version).await,
        ),
        Incoming::List(request) => encoded(
            ApiKey::ListGroups,
            header,
            &list_groups(shard, request, version).await,
        ),
        Incoming::Describe(request) => {
            let groups: Vec<String> = request.groups.iter().map(|g| g.0.to_string()).collect();
            let mut response = m::DescribeGroupsResponse::default();
            response.groups = by_owner(shard, groups, GroupCall::Describe)
                .await
                .into_iter()
                .map(|(id, answer)| match answer {
                    Some(GroupAnswer::Describe(mut described)) if described.len() == 1 => {
                        let mut d = described.pop().expect("one group");
                        if version < 4 {
                            for member in &mut d.members {
                                member.group_instance_id = None;
                            }
                        }
                        d
                    }
                    _ => {
                        let mut d = m::describe_groups_response::DescribedGroup::default();
                        d.group_id = GroupId(str_bytes(&id));
                        d.error_code = code::COORDINATOR_NOT_AVAILABLE;
                        d
                    }
                })
                .collect();
            encoded(ApiKey::DescribeGroups, header, &response)
        }
        Incoming::Delete(request) => {
            let groups: Vec<String> = request
                .groups_names
                .iter()
                .map(|g| g.0.to_string())
                .collect();
            let mut response = m::DeleteGroupsResponse::default();
            response.results = by_owner(shard, groups, GroupCall::Delete)
                .await
                .into_iter()
                .map(|(id, answer)| {
                    let mut r = m::delete_groups_response::DeletableGroupResult::default();
                    r.group_id = GroupId(str_bytes(&id));
                    r.error_code = match answer {
                        Some(GroupAnswer::Delete(results)) => results
                            .into_iter()
                            .next()
                            .map_or(code::COORDINATOR_NOT_AVAILABLE, |(_, e)| e),
                        _ => code::COORDINATOR_NOT_AVAILABLE,
                    };
                    r
                })
                .collect();
            encoded(ApiKey::DeleteGroups, header, &response)
        }
        Incoming::ConsumerHeartbeat(request) => {
            let group = request.group_id.0.to_string();
            let call = GroupCall::ConsumerHeartbeat {
                request,
                version,
                client_id: header.client_id.clone().unwrap_or_default(),
                client_host,
            };
            let response = match call_owner(shard, &group, call).await {
                Some(GroupAnswer::ConsumerHeartbeat(response)) => response,
                _ => {
                    let mut response = m::ConsumerGroupHeartbeatResponse::default();
                    response.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    response
                }
            };
            encoded(ApiKey::ConsumerGroupHeartbeat, header, &response)
        }
        Incoming::ConsumerDescribe(request) => {
            let groups: Vec<String> = request.group_ids.iter().map(|g| g.0.to_string()).collect();
            let mut response = m::ConsumerGroupDescribeResponse::default();
            response.groups = by_owner(shard, groups, GroupCall::ConsumerDescribe)
                .await
                .into_iter()
                .map(|(id, answer)| match answer {
                    Some(GroupAnswer::ConsumerDescribe(mut described)) if described.len() == 1 => {
                        described.pop().expect("one group")
                    }
                    _ => {
                        let mut d = m::consumer_group_describe_response::DescribedGroup::default();
                        d.group_id = GroupId(str_bytes(&id));
                        d.error_code = code::COORDINATOR_NOT_AVAILABLE;
                        d
                    }
                })
                .collect();
            encoded(ApiKey::ConsumerGroupDescribe, header, &response)
        }
        Incoming::OffsetDelete(request) => {
            let group = request.group_id.0.to_string();
            let response = match call_owner(shard, &group, GroupCall::OffsetDelete(request)).await {
                Some(GroupAnswer::OffsetDelete(response)) => response,
                _ => {
                    let mut response = m::OffsetDeleteResponse::default();
                    response.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    response
                }
            };
            encoded(ApiKey::OffsetDelete, header, &response)
        }
    }
}

/// Sends a call to the shard that coordinates `group`.
async fn call_owner(shard: &Rc<Shard>, group: &str, call: GroupCall) -> Option<GroupAnswer> {
    let owner = group::owner_of(shard, group);
    match shard.call(owner, ShardRequest::Group(Box::new(call))).await {
        ShardReply::Group(answer) => Some(answer),
        _ => None,
    }
}

/// Calls the owner of each group, one group per call (they run concurrently), and returns the
/// answers in request order.
async fn by_owner(
    shard: &Rc<Shard>,
    groups: Vec<String>,
    make: impl Fn(Vec<String>) -> GroupCall,
) -> Vec<(String, Option<GroupAnswer>)> {
    let calls = groups
        .iter()
        .map(|g| call_owner(shard, g, make(vec![g.clone()])));
    let answers = futures::future::join_all(calls).await;
    groups.into_iter().zip(answers).collect()
}

/// Creates `__consumer_offsets` the first time a coordinator is looked for, as Kafka does.
async fn ensure_offsets_topic(shard: &Rc<Shard>) -> Result<(), i16> {
    if shard.image().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let spec = CreateTopicSpec {
        name: OFFSETS_TOPIC.to_owned(),
        partitions: shard.config.offsets_topic_num_partitions,
        replication_factor: 1,
        configs: vec![
            ("cleanup.policy".into(), "compact".into()),
            ("segment.bytes".into(), (100u64 << 20).to_string()),
        ],
    };
    let outcomes = control(
        shard,
        ControlRequest::CreateTopics {
            topics: vec![spec],
            validate_only: false,
        },
    )
    .await;
    match outcomes.first().map(|o| o.error_code) {
        Some(code::NONE | code::TOPIC_ALREADY_EXISTS) => Ok(()),
        other => {
            tracing::error!(?other, "cannot create {OFFSETS_TOPIC}");
            Err(code::COORDINATOR_NOT_AVAILABLE)
        }
    }
}

async fn find_coordinator(
    shard: &Rc<Shard>,
    request: m::FindCoordinatorRequest,
    version: i16,
) -> m::FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        request
            .coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![request.key.to_string()]
    };
    let error = match request.key_type {
        0 => ensure_offsets_topic(shard)
            .await
            .err()
            .unwrap_or(code::NONE),
        // Transactions have no coordinator here yet.
        1 => code::COORDINATOR_NOT_AVAILABLE,
        _ => code::INVALID_REQUEST,
    };
    // A group's coordinator is the leader of its partition of the offsets topic.
    let image = shard.image();
    let coordinator = |key: &str| -> Result<(i32, String, u16), i16> {
        if error != code::NONE {
            return Err(error);
        }
        let partition = group::records::partition_for(key, group::offsets_partitions(shard));
        let leader = image
            .partition(OFFSETS_TOPIC, partition)
            .map(|p| p.leader)
            .ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
        if leader == image.me {
            let (host, port) = super::advertised(shard);
            return Ok((leader, host, port));
        }
        image
            .live_broker(leader)
            .map(|b| (b.id, b.host.clone(), b.port))
            .ok_or(code::COORDINATOR_NOT_AVAILABLE)
    };
    let mut response = m::FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .into_iter()
            .map(|key| {
                let mut c = m::find_coordinator_response::Coordinator::default();
                match coordinator(&key) {
                    Ok((node, host, port)) => {
                        c.node_id = m::BrokerId(node);
                        c.host = str_bytes(&host);
                        c.port = i32::from(port);
                    }
                    Err(error) => {
                        c.error_code = error;
                        c.node_id = m::BrokerId(-1);
                        c.port = -1;
                    }
                }
                c.key = str_bytes(&key);
                c
            })
            .collect();
    } else {
        match coordinator(keys.first().map_or("", String::as_str)) {
            Ok((node, host, port)) => {
                response.node_id = m::BrokerId(node);
                response.host = str_bytes(&host);
                response.port = i32::from(port);
            }
            Err(error) => {
                response.error_code = error;
                response.node_id = m::BrokerId(-1);
                response.port = -1;
            }
        }
    }
    response
}

async fn offset_fetch(
    shard: &Rc<Shard>,
    request: m::OffsetFetchRequest,
    version: i16,
) -> m::OffsetFetchResponse {
    type Wanted = Option<Vec<(String, Vec<i32>)>>;
    let groups: Vec<(String, Wanted)> = if version >= 8 {
        request
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                (g.group_id.0.to_string(), topics)
            })
            .collect()
    } else {
        let topics = request.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        vec![(request.group_id.0.to_string(), topics)]
    };
    let calls = groups.iter().map(|(group, topics)| {
        call_owner(
            shard,
            group,
            GroupCall::FetchOffsets {
                group: group.clone(),
                topics: topics.clone(),
            },
        )
    });
    let answers = futures::future::join_all(calls).await;
    let fetched: Vec<group::FetchedOffsets> = answers
        .into_iter()
        .zip(&groups)
        .map(|(answer, (_, wanted))| match answer {
            Some(GroupAnswer::FetchOffsets(f)) => f,
            _ => group::FetchedOffsets {
                error: code::COORDINATOR_NOT_AVAILABLE,
                topics: wanted
                    .iter()
                    .flatten()
                    .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (*p, None)).collect()))
                    .collect(),
            },
        })
        .collect();
    let mut response = m::OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = groups
            .iter()
            .zip(fetched)
            .map(|((id, _), f)| {
                let mut g = m::offset_fetch_response::OffsetFetchResponseGroup::default();
                g.group_id = GroupId(str_bytes(id));
                g.error_code = f.error;
                g.topics = f
                    .topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let mut t = m::offset_fetch_response::OffsetFetchResponseTopics::default();
                        t.name = TopicName(str_bytes(&name));
                        t.partitions = partitions
                            .into_iter()
                            .map(|(p, c)| {
                                let mut out =
                                    m::offset_fetch_response::OffsetFetchResponsePartitions::default();
                                out.partition_index = p;
                                out.committed_offset = c.as_ref().map_or(-1, |c| c.offset);
                                out.committed_leader_epoch =
                                    c.as_ref().map_or(-1, |c| c.leader_epoch);
                                out.metadata = Some(str_bytes(
                                    c.as_ref().map_or("", |c| c.metadata.as_str()),
                                ));
                                out
                            })
                            .collect();
                        t
                    })
                    .collect();
                g
            })
            .collect();
        return response;
    }
    let f = fetched.into_iter().next().expect("one group below v8");
    // v1 has no top-level error: a group error is reported on every partition.
    let partition_error = if version < 2 { f.error } else { code::NONE };
    if version >= 2 {
        response.error_code = f.error;
    }
    response.topics = f
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = m::offset_fetch_response::OffsetFetchResponseTopic::default();
            t.name = TopicName(str_bytes(&name));
            t.partitions = partitions
                .into_iter()
                .map(|(p, c)| {
                    let mut out = m::offset_fetch_response::OffsetFetchResponsePartition::default();
                    out.partition_index = p;
                    out.committed_offset = c.as_ref().map_or(-1, |c| c.offset);
                    if version >= 5 {
                        out.committed_leader_epoch = c.as_ref().map_or(-1, |c| c.leader_epoch);
                    }
                    out.metadata = Some(str_bytes(c.as_ref().map_or("", |c| c.metadata.as_str())));
                    out.error_code = partition_error;
                    out
                })
                .collect();
            t
        })
        .collect();
    response
}

async fn list_groups(
    shard: &Rc<Shard>,
    request: m::ListGroupsRequest,
    version: i16,
) -> m::ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let calls =
        (0..shard.count).map(|to| shard.call(to, ShardRequest::Group(Box::new(GroupCall::List))));
    let mut listed: HashMap<String, group::ListedGroup> = HashMap::new();
    let mut response = m::ListGroupsResponse::default();
    for reply in futures::future::join_all(calls).await {
        match reply {
            ShardReply::Group(GroupAnswer::List(groups)) => {
                for g in groups {
                    listed.insert(g.group_id.clone(), g);
                }
            }
            _ => response.error_code = code::COORDINATOR_NOT_AVAILABLE,
        }
    }
    let mut groups: Vec<group::ListedGroup> = listed
        .into_values()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    response.groups = groups
        .into_iter()
        .map(|g| {
            let mut out = m::list_groups_response::ListedGroup::default();
            out.group_id = GroupId(str_bytes(&g.group_id));
            out.protocol_type = str_bytes(&g.protocol_type);
            if version >= 4 {
                out.group_state = str_bytes(g.state);
            }
            if version >= 5 {
                out.group_type = str_bytes(g.group_type);
            }
            out
        })
        .collect();
    response
}

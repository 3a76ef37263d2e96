//! The group APIs request by request, with the error codes Kafka gives for each misuse: the
//! member-id handshake, generation fencing, unknown members and groups, static membership,
//! multi-group requests, and group state kept over a kill -9.

mod common;

use bytes::Bytes;
use common::raw::{self, Client};
use common::Broker;
use kafka_protocol::messages::{self as m, ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

const MEMBER_ID_REQUIRED: i16 = 79;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const FENCED_INSTANCE_ID: i16 = 82;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn start(dir: &tempfile::TempDir) -> Broker {
    Broker::start(
        &dir.path().join("data"),
        &[
            ("group.initial.rebalance.delay.ms", "0"),
            ("group.min.session.timeout.ms", "500"),
            ("offsets.topic.num.partitions", "3"),
        ],
    )
}

fn find_coordinator(client: &mut Client, group: &str) {
    let mut request = m::FindCoordinatorRequest::default();
    request.key = s(group);
    let response: m::FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 1, &request);
    assert_eq!(response.error_code, 0);
}

fn join(
    client: &mut Client,
    group: &str,
    member: &str,
    instance: Option<&str>,
    protocol_type: &str,
) -> m::JoinGroupResponse {
    let mut request = m::JoinGroupRequest::default();
    request.group_id = GroupId(s(group));
    request.session_timeout_ms = 10_000;
    request.rebalance_timeout_ms = 10_000;
    request.member_id = s(member);
    request.group_instance_id = instance.map(s);
    request.protocol_type = s(protocol_type);
    let mut protocol = m::join_group_request::JoinGroupRequestProtocol::default();
    protocol.name = s("range");
    protocol.metadata = Bytes::from_static(b"subscription");
    request.protocols.push(protocol);
    client.call(ApiKey::JoinGroup, 5, &request)
}

fn sync(client: &mut Client, group: &str, member: &str, generation: i32) -> m::SyncGroupResponse {
    let mut request = m::SyncGroupRequest::default();
    request.group_id = GroupId(s(group));
    request.member_id = s(member);
    request.generation_id = generation;
    let mut assignment = m::sync_group_request::SyncGroupRequestAssignment::default();
    assignment.member_id = s(member);
    assignment.assignment = Bytes::from_static(b"assignment");
    request.assignments.push(assignment);
    client.call(ApiKey::SyncGroup, 3, &request)
}

fn heartbeat(
    client: &mut Client,
    group: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
) -> i16 {
    let mut request = m::HeartbeatRequest::default();
    request.group_id = GroupId(s(group));
    request.member_id = s(member);
    request.group_instance_id = instance.map(s);
    request.generation_id = generation;
    let response: m::HeartbeatResponse = client.call(ApiKey::Heartbeat, 3, &request);
    response.error_code
}

fn commit(
    client: &mut Client,
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offset: i64,
    metadata: &str,
) -> i16 {
    let mut request = m::OffsetCommitRequest::default();
    request.group_id = GroupId(s(group));
    request.member_id = s(member);
    request.generation_id_or_member_epoch = generation;
    let mut t = m::offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(s(topic));
    let mut p = m::offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = offset;
    p.committed_metadata = Some(s(metadata));
    t.partitions.push(p);
    request.topics.push(t);
    let response: m::OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 8, &request);
    response.topics[0].partitions[0].error_code
}

/// Committed offsets of partition 0 of `topic` for each group (OffsetFetch v8, one request).
fn committed(client: &mut Client, groups: &[&str], topic: &str) -> Vec<i64> {
    let mut request = m::OffsetFetchRequest::default();
    for group in groups {
        let mut g = m::offset_fetch_request::OffsetFetchRequestGroup::default();
        g.group_id = GroupId(s(group));
        let mut t = m::offset_fetch_request::OffsetFetchRequestTopics::default();
        t.name = TopicName(s(topic));
        t.partition_indexes = vec![0];
        g.topics = Some(vec![t]);
        request.groups.push(g);
    }
    let response: m::OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 8, &request);
    response
        .groups
        .iter()
        .map(|g| {
            assert_eq!(g.error_code, 0);
            g.topics[0].partitions[0].committed_offset
        })
        .collect()
}

fn describe(client: &mut Client, groups: &[&str]) -> m::DescribeGroupsResponse {
    let mut request = m::DescribeGroupsRequest::default();
    request.groups = groups.iter().map(|g| GroupId(s(g))).collect();
    client.call(ApiKey::DescribeGroups, 5, &request)
}

fn delete(client: &mut Client, group: &str) -> i16 {
    let mut request = m::DeleteGroupsRequest::default();
    request.groups_names = vec![GroupId(s(group))];
    let response: m::DeleteGroupsResponse = client.call(ApiKey::DeleteGroups, 2, &request);
    response.results[0].error_code
}

#[test]
fn handshake_generations_and_every_misuse_get_kafka_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    let mut client = Client::connect(&broker.bootstrap);
    raw::create_topic(&mut client, "orders", &[]);

    // FindCoordinator v4 answers several keys at once, all with this broker.
    let mut request = m::FindCoordinatorRequest::default();
    request.coordinator_keys = vec![s("g1"), s("g2")];
    let response: m::FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 4, &request);
    let port: i32 = broker
        .bootstrap
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(response.coordinators.len(), 2);
    for c in &response.coordinators {
        assert_eq!((c.error_code, c.port), (0, port));
    }

    // The member-id handshake: a new member first gets its id, then joins with it.
    let first = join(&mut client, "g1", "", None, "consumer");
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    let joined = join(&mut client, "g1", &member, None, "consumer");
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata.as_ref(), b"subscription");

    assert_eq!(
        sync(&mut client, "g1", &member, 2).error_code,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        sync(&mut client, "g1", "ghost", 1).error_code,
        UNKNOWN_MEMBER_ID
    );
    let synced = sync(&mut client, "g1", &member, 1);
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment.as_ref(), b"assignment");

    assert_eq!(
        heartbeat(&mut client, "g1", "ghost", None, 1),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut client, "g1", &member, None, 0),
        ILLEGAL_GENERATION
    );
    assert_eq!(heartbeat(&mut client, "g1", &member, None, 1), 0);
    assert_eq!(
        heartbeat(&mut client, "nobody", "ghost", None, 1),
        UNKNOWN_MEMBER_ID
    );

    // Join misuse: a session timeout out of bounds, a protocol the group does not speak.
    let mut bad = m::JoinGroupRequest::default();
    bad.group_id = GroupId(s("g1"));
    bad.session_timeout_ms = 10;
    bad.protocol_type = s("consumer");
    let response: m::JoinGroupResponse = client.call(ApiKey::JoinGroup, 5, &bad);
    assert_eq!(response.error_code, INVALID_SESSION_TIMEOUT);
    let other = join(&mut client, "g1", "", None, "connect");
    assert_eq!(other.error_code, INCONSISTENT_GROUP_PROTOCOL);

    // Commits: unknown group with a generation, stale generation, unknown topic, oversized
    // metadata; then a good one.
    assert_eq!(
        commit(&mut client, "never-seen", "x", 3, "orders", 1, ""),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit(&mut client, "g1", &member, 0, "orders", 1, ""),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit(&mut client, "g1", "ghost", 1, "orders", 1, ""),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        commit(&mut client, "g1", &member, 1, "no-such-topic", 1, ""),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let huge = "m".repeat(5000);
    assert_eq!(
        commit(&mut client, "g1", &member, 1, "orders", 1, &huge),
        OFFSET_METADATA_TOO_LARGE
    );
    assert_eq!(
        commit(&mut client, "g1", &member, 1, "orders", 42, "meta"),
        0
    );
    // A standalone consumer (no generation, no member) may commit into a group of its own.
    assert_eq!(
        commit(&mut client, "standalone", "", -1, "orders", 7, ""),
        0
    );
    assert_eq!(
        committed(&mut client, &["g1", "never-seen", "standalone"], "orders"),
        vec![42, -1, 7]
    );

    // Describe and list.
    let described = describe(&mut client, &["g1", "none"]);
    let g1 = &described.groups[0];
    assert_eq!(g1.group_state.as_str(), "Stable");
    assert_eq!(g1.protocol_data.as_str(), "range");
    assert_eq!(g1.members.len(), 1);
    assert_eq!(g1.members[0].member_assignment.as_ref(), b"assignment");
    assert_eq!(g1.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");
    let mut list = m::ListGroupsRequest::default();
    list.states_filter = vec![s("Stable")];
    let listed: m::ListGroupsResponse = client.call(ApiKey::ListGroups, 4, &list);
    let names: Vec<&str> = listed
        .groups
        .iter()
        .map(|g| g.group_id.0.as_str())
        .collect();
    assert_eq!(names, vec!["g1"]);

    // A group with members cannot be deleted; an unknown one is not found.
    assert_eq!(delete(&mut client, "g1"), NON_EMPTY_GROUP);
    assert_eq!(delete(&mut client, "none"), GROUP_ID_NOT_FOUND);

    // LeaveGroup v3 takes several members; each gets its own answer.
    let mut leave = m::LeaveGroupRequest::default();
    leave.group_id = GroupId(s("g1"));
    for id in [member.as_str(), "ghost"] {
        let mut identity = m::leave_group_request::MemberIdentity::default();
        identity.member_id = s(id);
        leave.members.push(identity);
    }
    let left: m::LeaveGroupResponse = client.call(ApiKey::LeaveGroup, 3, &leave);
    let errors: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(errors, vec![0, UNKNOWN_MEMBER_ID]);
    assert_eq!(
        describe(&mut client, &["g1"]).groups[0]
            .group_state
            .as_str(),
        "Empty"
    );
    assert_eq!(
        heartbeat(&mut client, "g1", &member, None, 1),
        UNKNOWN_MEMBER_ID
    );

    // OffsetDelete on the empty group, then the group itself.
    let mut request = m::OffsetDeleteRequest::default();
    request.group_id = GroupId(s("g1"));
    let mut topic = m::offset_delete_request::OffsetDeleteRequestTopic::default();
    topic.name = TopicName(s("orders"));
    let mut partition = m::offset_delete_request::OffsetDeleteRequestPartition::default();
    partition.partition_index = 0;
    topic.partitions.push(partition);
    request.topics.push(topic);
    let response: m::OffsetDeleteResponse = client.call(ApiKey::OffsetDelete, 0, &request);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert_eq!(committed(&mut client, &["g1"], "orders"), vec![-1]);
    assert_eq!(delete(&mut client, "g1"), 0);
    assert_eq!(
        describe(&mut client, &["g1"]).groups[0]
            .group_state
            .as_str(),
        "Dead"
    );

    // Still serving.
    let versions: m::ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 3, &m::ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
}

#[test]
fn static_members_survive_kill_9_and_a_replaced_instance_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start(&dir);
    let mut client = Client::connect(&broker.bootstrap);
    raw::create_topic(&mut client, "events", &[]);
    find_coordinator(&mut client, "statics");

    // A static member joins without the member-id round trip.
    let joined = join(&mut client, "statics", "", Some("instance-1"), "consumer");
    assert_eq!(joined.error_code, 0);
    let first = joined.member_id.to_string();
    assert_eq!(sync(&mut client, "statics", &first, 1).error_code, 0);
    assert_eq!(
        commit(&mut client, "statics", &first, 1, "events", 7, ""),
        0
    );

    broker.kill9();
    broker.restart();
    let mut client = Client::connect(&broker.bootstrap);
    // The group comes back from __consumer_offsets with its member and generation.
    let error = common::eventually(common::START_TIMEOUT, "the group to load", || {
        let e = heartbeat(&mut client, "statics", &first, Some("instance-1"), 1);
        (e != COORDINATOR_LOAD_IN_PROGRESS).then_some(e)
    });
    assert_eq!(error, 0);
    let described = describe(&mut client, &["statics"]);
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    let member = &described.groups[0].members[0];
    assert_eq!(member.member_id.as_str(), first);
    assert_eq!(member.group_instance_id.as_deref(), Some("instance-1"));
    assert_eq!(committed(&mut client, &["statics"], "events"), vec![7]);

    // The instance restarts: it gets a new member id, and the old one is a zombie.
    let rejoined = join(&mut client, "statics", "", Some("instance-1"), "consumer");
    assert_eq!(rejoined.error_code, 0);
    let second = rejoined.member_id.to_string();
    assert_ne!(second, first);
    assert_eq!(
        heartbeat(&mut client, "statics", &first, Some("instance-1"), 1),
        FENCED_INSTANCE_ID
    );
    let zombie = join(
        &mut client,
        "statics",
        &first,
        Some("instance-1"),
        "consumer",
    );
    assert_eq!(zombie.error_code, FENCED_INSTANCE_ID);
    let generation = rejoined.generation_id;
    assert_eq!(
        sync(&mut client, "statics", &second, generation).error_code,
        0
    );
    assert_eq!(
        heartbeat(
            &mut client,
            "statics",
            &second,
            Some("instance-1"),
            generation
        ),
        0
    );
}

/// Every served version of every group API answers (a response the crate decodes in that
/// version) rather than closing the connection on an encoding error. A member joins, syncs and
/// is described in each JoinGroup/SyncGroup/DescribeGroups version, so the populated fields
/// (member lists, instance ids, protocol names) are encoded in every version too.
#[test]
fn every_version_of_every_group_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    let mut client = Client::connect(&broker.bootstrap);
    raw::create_topic(&mut client, "versions", &[]);
    find_coordinator(&mut client, "any");
    for version in 0..=9i16 {
        let group = format!("v{version}");
        let mut request = m::JoinGroupRequest::default();
        request.group_id = GroupId(s(&group));
        request.session_timeout_ms = 10_000;
        if version >= 1 {
            request.rebalance_timeout_ms = 10_000;
        }
        request.protocol_type = s("consumer");
        let mut protocol = m::join_group_request::JoinGroupRequestProtocol::default();
        protocol.name = s("range");
        protocol.metadata = Bytes::from_static(b"m");
        request.protocols.push(protocol);
        let mut joined: m::JoinGroupResponse = client.call(ApiKey::JoinGroup, version, &request);
        if joined.error_code == MEMBER_ID_REQUIRED {
            request.member_id = joined.member_id.clone();
            joined = client.call(ApiKey::JoinGroup, version, &request);
        }
        assert_eq!(joined.error_code, 0, "JoinGroup v{version}");
        assert_eq!(joined.members.len(), 1, "JoinGroup v{version}");
        let member = joined.member_id.to_string();
        if version <= 5 {
            let synced = {
                let mut request = m::SyncGroupRequest::default();
                request.group_id = GroupId(s(&group));
                request.member_id = s(&member);
                request.generation_id = joined.generation_id;
                let mut a = m::sync_group_request::SyncGroupRequestAssignment::default();
                a.member_id = s(&member);
                a.assignment = Bytes::from_static(b"a");
                request.assignments.push(a);
                let response: m::SyncGroupResponse =
                    client.call(ApiKey::SyncGroup, version, &request);
                response
            };
            assert_eq!(synced.error_code, 0, "SyncGroup v{version}");
            let mut request = m::DescribeGroupsRequest::default();
            request.groups = vec![GroupId(s(&group))];
            let described: m::DescribeGroupsResponse =
                client.call(ApiKey::DescribeGroups, version, &request);
            assert_eq!(
                described.groups[0].members.len(),
                1,
                "DescribeGroups v{version}"
            );
        }
        if version <= 4 {
            let mut request = m::HeartbeatRequest::default();
            request.group_id = GroupId(s(&group));
            request.member_id = s(&member);
            request.generation_id = joined.generation_id;
            let response: m::HeartbeatResponse = client.call(ApiKey::Heartbeat, version, &request);
            assert!(
                matches!(response.error_code, 0 | 27),
                "Heartbeat v{version}: {}",
                response.error_code
            );
        }
        if version <= 5 {
            let mut request = m::LeaveGroupRequest::default();
            request.group_id = GroupId(s(&group));
            if version >= 3 {
                let mut identity = m::leave_group_request::MemberIdentity::default();
                identity.member_id = s(&member);
                request.members.push(identity);
            } else {
                request.member_id = s(&member);
            }
            let _: m::LeaveGroupResponse = client.call(ApiKey::LeaveGroup, version, &request);
        }
    }
    for version in 0..=4 {
        let mut request = m::FindCoordinatorRequest::default();
        if version >= 4 {
            request.coordinator_keys = vec![s("k")];
        } else {
            request.key = s("k");
        }
        let _: m::FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, version, &request);
    }
    for version in 2..=9 {
        let mut request = m::OffsetCommitRequest::default();
        request.group_id = GroupId(s("committer"));
        request.generation_id_or_member_epoch = -1;
        let mut t = m::offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = TopicName(s("versions"));
        let mut p = m::offset_commit_request::OffsetCommitRequestPartition::default();
        p.committed_offset = i64::from(version);
        t.partitions.push(p);
        request.topics.push(t);
        let response: m::OffsetCommitResponse =
            client.call(ApiKey::OffsetCommit, version, &request);
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{version}"
        );
    }
    for version in 1..=9 {
        let mut request = m::OffsetFetchRequest::default();
        if version >= 8 {
            let mut g = m::offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s("committer"));
            g.topics = None;
            request.groups.push(g);
        } else {
            request.group_id = GroupId(s("committer"));
            let mut t = m::offset_fetch_request::OffsetFetchRequestTopic::default();
            t.name = TopicName(s("versions"));
            t.partition_indexes = vec![0];
            request.topics = Some(vec![t]);
        }
        let response: m::OffsetFetchResponse = client.call(ApiKey::OffsetFetch, version, &request);
        let offset = if version >= 8 {
            response.groups[0].topics[0].partitions[0].committed_offset
        } else {
            response.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 9, "OffsetFetch v{version}");
    }
    for version in 0..=5 {
        let _: m::ListGroupsResponse = client.call(
            ApiKey::ListGroups,
            version,
            &m::ListGroupsRequest::default(),
        );
    }
    for version in 0..=2 {
        let mut request = m::DeleteGroupsRequest::default();
        request.groups_names = vec![GroupId(s(&format!("v{version}")))];
        let _: m::DeleteGroupsResponse = client.call(ApiKey::DeleteGroups, version, &request);
    }
    let mut request = m::OffsetDeleteRequest::default();
    request.group_id = GroupId(s("committer"));
    let _: m::OffsetDeleteResponse = client.call(ApiKey::OffsetDelete, 0, &request);
    for version in 0..=1 {
        let mut request = m::ConsumerGroupDescribeRequest::default();
        request.group_ids = vec![GroupId(s("committer"))];
        let _: m::ConsumerGroupDescribeResponse =
            client.call(ApiKey::ConsumerGroupDescribe, version, &request);
        let mut request = m::ConsumerGroupHeartbeatRequest::default();
        request.group_id = GroupId(s("new"));
        request.member_id = s("member-1");
        request.rebalance_timeout_ms = 30_000;
        request.subscribed_topic_names = Some(vec![TopicName(s("versions"))]);
        let response: m::ConsumerGroupHeartbeatResponse =
            client.call(ApiKey::ConsumerGroupHeartbeat, version, &request);
        assert_eq!(response.error_code, 0, "ConsumerGroupHeartbeat v{version}");
    }
}

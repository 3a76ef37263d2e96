//! Admin operations on topics, configs, consumer groups, offsets and the cluster, on top of
//! `Connection`. Each request goes where Kafka's admin client sends it: metadata and configs to
//! the bootstrap broker, ListOffsets to each partition's leader, group requests to the group's
//! coordinator (FindCoordinator), ListGroups to every broker.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use bytes::Buf;
use kafka_protocol::messages::{self as m, ApiKey, BrokerId, GroupId, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::connection::Connection;
use super::ClientError;
use crate::protocol::{
    DESCRIBE_CLUSTER_TAG_SHARDS as TAG_SHARDS,
    DESCRIBE_CLUSTER_TAG_SHUTTING_DOWN as TAG_SHUTTING_DOWN,
};

/// A topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: Vec<PartitionInfo>,
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// -1 when the partition has no live leader.
    pub leader: i32,
    /// -1 when the broker does not report it (Metadata before v7).
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas whose broker is not live.
    pub offline: Vec<i32>,
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Fenced by the controller (its lease ran out); listed only by DescribeCluster v2.
    pub fenced: bool,
    /// In controlled shutdown (shardlog brokers report it; others never do).
    pub shutting_down: bool,
    /// The broker's shard count, when it reports one (shardlog brokers do).
    pub shards: Option<u32>,
}

/// The controller quorum, as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInfo {
    pub leader: i32,
    pub epoch: i32,
    pub high_watermark: i64,
    /// Voter id and its log end offset as the leader knows it (-1: unknown).
    pub voters: Vec<(i32, i64)>,
}

impl BrokerInfo {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller: i32,
    pub brokers: Vec<BrokerInfo>,
}

/// One setting of a topic, as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for a sensitive value or a setting without one.
    pub value: Option<String>,
    /// Kafka's config source: `DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
}

/// A change to one topic setting (IncrementalAlterConfigs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Set(String, String),
    /// Back to the broker's default.
    Delete(String),
}

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first record with a timestamp at or after this (ms since the epoch); the end of the
    /// log when there is none.
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty when the broker does not report states (ListGroups before v4).
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The partitions the group's leader assigned to it (consumer protocol groups).
    pub assignment: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`.
    pub state: String,
    pub protocol_type: String,
    /// The assignor the group chose.
    pub protocol: String,
    pub coordinator: i32,
    pub members: Vec<MemberDescription>,
}

pub type TopicPartition = (String, i32);

pub struct Admin {
    connection: Rc<Connection>,
    /// Connections to other brokers (leaders, coordinators), by address.
    connections: RefCell<HashMap<String, Rc<Connection>>>,
}

const CLIENT_ID: &str = "shardlog-admin";
const REQUEST_TIMEOUT_MS: i32 = 30_000;
/// DescribeConfigs and IncrementalAlterConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;

fn name(value: &str) -> TopicName {
    TopicName(StrBytes::from_string(value.to_owned()))
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn check(code: i16, message: Option<&StrBytes>, context: &str) -> Result<(), ClientError> {
    match ClientError::from_code(
        code,
        Some(match message {
            Some(m) if !m.is_empty() => format!("{context}: {m}"),
            _ => context.to_owned(),
        }),
    ) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn config_source(code: i8) -> &'static str {
    match code {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// The partitions of a consumer-protocol assignment (a version, then the message).
fn decode_assignment(mut bytes: bytes::Bytes) -> Vec<(String, i32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    m::ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3))
        .map(|a| {
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

impl Admin {
    pub async fn connect(bootstrap: &str) -> Result<Admin, ClientError> {
        Ok(Admin {
            connection: Connection::connect(bootstrap, CLIENT_ID).await?,
            connections: RefCell::new(HashMap::new()),
        })
    }

    /// A connection to the broker at `address`, reused while it lives.
    async fn connection_to(&self, address: &str) -> Result<Rc<Connection>, ClientError> {
        if address == self.connection.broker() {
            return Ok(self.connection.clone());
        }
        if let Some(c) = self.connections.borrow().get(address) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let connection = Connection::connect(address, CLIENT_ID).await?;
        self.connections
            .borrow_mut()
            .insert(address.to_owned(), connection.clone());
        Ok(connection)
    }

    /// The brokers and the controller, from DescribeCluster (or Metadata from a broker that
    /// does not serve it).
    pub async fn describe_cluster(&self) -> Result<ClusterInfo, ClientError> {
        if let Ok(version) = self.connection.version(ApiKey::DescribeCluster, (0, 2)) {
            let mut request = m::DescribeClusterRequest::default();
            request.include_fenced_brokers = version >= 2;
            let response: m::DescribeClusterResponse = self
                .connection
                .send(ApiKey::DescribeCluster, version, &request)
                .await?;
            check(
                response.error_code,
                response.error_message.as_ref(),
                "DescribeCluster",
            )?;
            let mut brokers: Vec<BrokerInfo> = response
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                    fenced: b.is_fenced,
                    shutting_down: b
                        .unknown_tagged_fields
                        .get(&TAG_SHUTTING_DOWN)
                        .is_some_and(|v| v.first() == Some(&1)),
                    shards: b
                        .unknown_tagged_fields
                        .get(&TAG_SHARDS)
                        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
                        .map(u32::from_be_bytes),
                })
                .collect();
            brokers.sort_by_key(|b| b.id);
            return Ok(ClusterInfo {
                cluster_id: Some(response.cluster_id.to_string()),
                controller: response.controller_id.0,
                brokers,
            });
        }
        let response = self.metadata(Some(Vec::new()), false).await?;
        let mut brokers = metadata_brokers(&response);
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterInfo {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller: response.controller_id.0,
            brokers,
        })
    }

    /// The controller quorum: its leader, epoch, high watermark and voters.
    pub async fn describe_quorum(&self) -> Result<QuorumInfo, ClientError> {
        let version = self.connection.version(ApiKey::DescribeQuorum, (0, 2))?;
        let mut request = m::DescribeQuorumRequest::default();
        let mut topic = m::describe_quorum_request::TopicData::default();
        topic.topic_name = m::TopicName(StrBytes::from_static_str("__cluster_metadata"));
        let mut partition = m::describe_quorum_request::PartitionData::default();
        partition.partition_index = 0;
        topic.partitions.push(partition);
        request.topics.push(topic);
        let response: m::DescribeQuorumResponse = self
            .connection
            .send(ApiKey::DescribeQuorum, version, &request)
            .await?;
        check(
            response.error_code,
            response.error_message.as_ref(),
            "DescribeQuorum",
        )?;
        let partition = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol {
                broker: String::new(),
                detail: "DescribeQuorum answered no partition".into(),
            })?;
        check(
            partition.error_code,
            partition.error_message.as_ref(),
            "DescribeQuorum",
        )?;
        Ok(QuorumInfo {
            leader: partition.leader_id.0,
            epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: partition
                .current_voters
                .iter()
                .map(|v| (v.replica_id.0, v.log_end_offset))
                .collect(),
        })
    }

    async fn metadata(
        &self,
        topics: Option<Vec<&str>>,
        allow_auto_topic_creation: bool,
    ) -> Result<m::MetadataResponse, ClientError> {
        let version = self.connection.version(ApiKey::Metadata, (4, 12))?;
        let mut request = m::MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    let mut t = m::metadata_request::MetadataRequestTopic::default();
                    t.name = Some(name(n));
                    t
                })
                .collect()
        });
        request.allow_auto_topic_creation = allow_auto_topic_creation;
        self.connection
            .send(ApiKey::Metadata, version, &request)
            .await
    }

    /// Describes `topics` (every topic when `None`), without creating any.
    pub async fn topics(&self, topics: Option<&[&str]>) -> Result<Vec<TopicInfo>, ClientError> {
        let response = self.metadata(topics.map(<[&str]>::to_vec), false).await?;
        let mut out = Vec::new();
        for topic in response.topics {
            let topic_name = topic.name.map(|n| n.0.to_string()).unwrap_or_default();
            if let Some(error) = ClientError::from_code(topic.error_code, Some(topic_name.clone()))
            {
                return Err(error);
            }
            out.push(TopicInfo {
                name: topic_name,
                id: *topic.topic_id.as_bytes(),
                internal: topic.is_internal,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                    })
                    .collect(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a topic; `configs` are topic-level settings (`cleanup.policy`, ...).
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        let version = self.connection.version(ApiKey::CreateTopics, (2, 7))?;
        let mut creatable = m::create_topics_request::CreatableTopic::default();
        creatable.name = name(topic);
        creatable.num_partitions = partitions;
        creatable.replication_factor = replication_factor;
        creatable.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = m::create_topics_request::CreatableTopicConfig::default();
                c.name = StrBytes::from_string((*k).to_owned());
                c.value = Some(StrBytes::from_string((*v).to_owned()));
                c
            })
            .collect();
        let mut request = m::CreateTopicsRequest::default();
        request.topics.push(creatable);
        request.timeout_ms = 30_000;
        let response: m::CreateTopicsResponse = self
            .connection
            .send(ApiKey::CreateTopics, version, &request)
            .await?;
        match response.topics.first() {
            Some(t) => match ClientError::from_code(
                t.error_code,
                t.error_message.as_ref().map(|s| s.to_string()),
            ) {
                Some(error) => Err(error),
                None => Ok(()),
            },
            None => Err(ClientError::Protocol {
                broker: self.connection.broker().to_owned(),
                detail: "CreateTopics answered no topic".into(),
            }),
        }
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        let version = self.connection.version(ApiKey::DeleteTopics, (1, 5))?;
        let mut request = m::DeleteTopicsRequest::default();
        request.topic_names = vec![name(topic)];
        request.timeout_ms = 30_000;
        let response: m::DeleteTopicsResponse = self
            .connection
            .send(ApiKey::DeleteTopics, version, &request)
            .await?;
        match response
            .responses
            .first()
            .and_then(|r| ClientError::from_code(r.error_code, Some(topic.to_owned())))
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Grows `topic` to `total` partitions (partitions are never removed).
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), ClientError> {
        let version = self.connection.version(ApiKey::CreatePartitions, (0, 3))?;
        let mut t = m::create_partitions_request::CreatePartitionsTopic::default();
        t.name = name(topic);
        t.count = total;
        let mut request = m::CreatePartitionsRequest::default();
        request.topics.push(t);
        request.timeout_ms = REQUEST_TIMEOUT_MS;
        let response: m::CreatePartitionsResponse = self
            .connection
            .send(ApiKey::CreatePartitions, version, &request)
            .await?;
        let result = response.results.first().ok_or_else(|| {
            ClientError::missing_partition(self.connection.broker(), "CreatePartitions")
        })?;
        check(result.error_code, result.error_message.as_ref(), topic)
    }

    /// Every setting of `topic` with its value and where the value comes from.
    pub async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>, ClientError> {
        let version = self.connection.version(ApiKey::DescribeConfigs, (1, 4))?;
        let mut resource = m::describe_configs_request::DescribeConfigsResource::default();
        resource.resource_type = RESOURCE_TOPIC;
        resource.resource_name = text(topic);
        resource.configuration_keys = None;
        let mut request = m::DescribeConfigsRequest::default();
        request.resources.push(resource);
        let response: m::DescribeConfigsResponse = self
            .connection
            .send(ApiKey::DescribeConfigs, version, &request)
            .await?;
        let result = response.results.first().ok_or_else(|| {
            ClientError::missing_partition(self.connection.broker(), "DescribeConfigs")
        })?;
        check(result.error_code, result.error_message.as_ref(), topic)?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: config_source(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Applies `changes` to `topic`'s settings, all or none (IncrementalAlterConfigs).
    pub async fn alter_configs(
        &self,
        topic: &str,
        changes: &[ConfigChange],
    ) -> Result<(), ClientError> {
        let version = self
            .connection
            .version(ApiKey::IncrementalAlterConfigs, (0, 1))?;
        let mut resource = m::incremental_alter_configs_request::AlterConfigsResource::default();
        resource.resource_type = RESOURCE_TOPIC;
        resource.resource_name = text(topic);
        resource.configs = changes
            .iter()
            .map(|change| {
                let mut c = m::incremental_alter_configs_request::AlterableConfig::default();
                match change {
                    ConfigChange::Set(key, value) => {
                        c.name = text(key);
                        c.config_operation = OPERATION_SET;
                        c.value = Some(text(value));
                    }
                    ConfigChange::Delete(key) => {
                        c.name = text(key);
                        c.config_operation = OPERATION_DELETE;
                        c.value = None;
                    }
                }
                c
            })
            .collect();
        let mut request = m::IncrementalAlterConfigsRequest::default();
        request.resources.push(resource);
        let response: m::IncrementalAlterConfigsResponse = self
            .connection
            .send(ApiKey::IncrementalAlterConfigs, version, &request)
            .await?;
        let result = response.responses.first().ok_or_else(|| {
            ClientError::missing_partition(self.connection.broker(), "IncrementalAlterConfigs")
        })?;
        check(result.error_code, result.error_message.as_ref(), topic)
    }

    /// The offsets `spec` names for each of `partitions`, asking each partition's leader.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let mut topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        let metadata = self.metadata(Some(topics), false).await?;
        let brokers: HashMap<i32, String> = metadata_brokers(&metadata)
            .into_iter()
            .map(|b| (b.id, b.address()))
            .collect();
        let mut leaders: HashMap<TopicPartition, i32> = HashMap::new();
        for topic in &metadata.topics {
            let topic_name = topic
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .unwrap_or_default();
            check(topic.error_code, None, &topic_name)?;
            for p in &topic.partitions {
                leaders.insert((topic_name.clone(), p.partition_index), p.leader_id.0);
            }
        }
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for (topic, partition) in partitions {
            let leader = leaders
                .get(&(topic.clone(), *partition))
                .copied()
                .ok_or_else(|| {
                    ClientError::from_code(3, Some(format!("{topic}-{partition}")))
                        .expect("non-zero")
                })?;
            by_leader
                .entry(leader)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(*partition);
        }
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        };
        let mut out = BTreeMap::new();
        let mut past_the_end = Vec::new();
        for (leader, topics) in by_leader {
            let address = brokers.get(&leader).ok_or_else(|| {
                ClientError::from_code(5, Some(format!("no address for broker {leader}")))
                    .expect("non-zero")
            })?;
            let connection = self.connection_to(address).await?;
            let version = connection.version(ApiKey::ListOffsets, (1, 7))?;
            let mut request = m::ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            request.topics = topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut t = m::list_offsets_request::ListOffsetsTopic::default();
                    t.name = name(&topic);
                    t.partitions = partitions
                        .into_iter()
                        .map(|partition| {
                            let mut p = m::list_offsets_request::ListOffsetsPartition::default();
                            p.partition_index = partition;
                            p.timestamp = timestamp;
                            p
                        })
                        .collect();
                    t
                })
                .collect();
            let response: m::ListOffsetsResponse = connection
                .send(ApiKey::ListOffsets, version, &request)
                .await?;
            for t in &response.topics {
                for p in &t.partitions {
                    let slot = (t.name.0.to_string(), p.partition_index);
                    check(p.error_code, None, &format!("{}-{}", slot.0, slot.1))?;
                    if p.offset < 0 {
                        past_the_end.push(slot);
                    } else {
                        out.insert(slot, p.offset);
                    }
                }
            }
        }
        if !past_the_end.is_empty() {
            // No record at or after the timestamp: the end of the log, as consumers do.
            out.extend(Box::pin(self.list_offsets(&past_the_end, OffsetSpec::Latest)).await?);
        }
        Ok(out)
    }

    /// The connection to `group`'s coordinator.
    async fn coordinator(&self, group: &str) -> Result<(i32, Rc<Connection>), ClientError> {
        let version = self.connection.version(ApiKey::FindCoordinator, (1, 3))?;
        let mut request = m::FindCoordinatorRequest::default();
        request.key = text(group);
        let response: m::FindCoordinatorResponse = self
            .connection
            .send(ApiKey::FindCoordinator, version, &request)
            .await?;
        check(
            response.error_code,
            response.error_message.as_ref(),
            &format!("coordinator of group {group}"),
        )?;
        let address = format!("{}:{}", response.host, response.port);
        Ok((response.node_id.0, self.connection_to(&address).await?))
    }

    /// Every group of every broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let cluster = self.describe_cluster().await?;
        let mut groups = Vec::new();
        for broker in &cluster.brokers {
            let connection = self.connection_to(&broker.address()).await?;
            let version = connection.version(ApiKey::ListGroups, (0, 4))?;
            let request = m::ListGroupsRequest::default();
            let response: m::ListGroupsResponse = connection
                .send(ApiKey::ListGroups, version, &request)
                .await?;
            check(response.error_code, None, "ListGroups")?;
            groups.extend(response.groups.iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(groups)
    }

    /// A group's state and members, from its coordinator. A group that does not exist is
    /// described as `Dead` with no members, as Kafka does.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let (coordinator, connection) = self.coordinator(group).await?;
        let version = connection.version(ApiKey::DescribeGroups, (0, 5))?;
        let mut request = m::DescribeGroupsRequest::default();
        request.groups.push(GroupId(text(group)));
        let response: m::DescribeGroupsResponse = connection
            .send(ApiKey::DescribeGroups, version, &request)
            .await?;
        let described =
            response.groups.into_iter().next().ok_or_else(|| {
                ClientError::missing_partition(connection.broker(), "DescribeGroups")
            })?;
        check(
            described.error_code,
            described.error_message.as_ref(),
            &format!("group {group}"),
        )?;
        let consumer = described.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: described.group_id.0.to_string(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            coordinator,
            members: described
                .members
                .into_iter()
                .map(|member| MemberDescription {
                    member_id: member.member_id.to_string(),
                    instance_id: member.group_instance_id.map(|i| i.to_string()),
                    client_id: member.client_id.to_string(),
                    client_host: member.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(member.member_assignment)
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    /// Deletes a group and its committed offsets; refused (NON_EMPTY_GROUP) while it has
    /// members.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let (_, connection) = self.coordinator(group).await?;
        let version = connection.version(ApiKey::DeleteGroups, (0, 2))?;
        let mut request = m::DeleteGroupsRequest::default();
        request.groups_names.push(GroupId(text(group)));
        let response: m::DeleteGroupsResponse = connection
            .send(ApiKey::DeleteGroups, version, &request)
            .await?;
        let result = response
            .results
            .first()
            .ok_or_else(|| ClientError::missing_partition(connection.broker(), "DeleteGroups"))?;
        check(result.error_code, None, &format!("group {group}"))
    }

    /// Every offset `group` has committed.
    pub async fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let (_, connection) = self.coordinator(group).await?;
        let version = connection.version(ApiKey::OffsetFetch, (2, 7))?;
        let mut request = m::OffsetFetchRequest::default();
        request.group_id = GroupId(text(group));
        request.topics = None;
        let response: m::OffsetFetchResponse = connection
            .send(ApiKey::OffsetFetch, version, &request)
            .await?;
        check(response.error_code, None, &format!("group {group}"))?;
        let mut out = BTreeMap::new();
        for t in &response.topics {
            for p in &t.partitions {
                check(
                    p.error_code,
                    None,
                    &format!("{}-{}", t.name.0, p.partition_index),
                )?;
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

    /// Commits `offsets` for `group` from outside it (generation -1), as Kafka's offset reset
    /// tool does; the coordinator refuses it while the group has members.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ClientError> {
        let (_, connection) = self.coordinator(group).await?;
        let version = connection.version(ApiKey::OffsetCommit, (2, 8))?;
        let mut by_topic: BTreeMap<
            &str,
            Vec<m::offset_commit_request::OffsetCommitRequestPartition>,
        > = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            let mut p = m::offset_commit_request::OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            by_topic.entry(topic.as_str()).or_default().push(p);
        }
        let mut request = m::OffsetCommitRequest::default();
        request.group_id = GroupId(text(group));
        request.generation_id_or_member_epoch = -1;
        request.member_id = StrBytes::default();
        request.topics = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                let mut t = m::offset_commit_request::OffsetCommitRequestTopic::default();
                t.name = name(topic);
                t.partitions = partitions;
                t
            })
            .collect();
        let response: m::OffsetCommitResponse = connection
            .send(ApiKey::OffsetCommit, version, &request)
            .await?;
        for t in &response.topics {
            for p in &t.partitions {
                check(
                    p.error_code,
                    None,
                    &format!("group {group}, {}-{}", t.name.0, p.partition_index),
                )?;
            }
        }
        Ok(())
    }
}

fn metadata_brokers(response: &m::MetadataResponse) -> Vec<BrokerInfo> {
    response
        .brokers
        .iter()
        .map(|b| BrokerInfo {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
            fenced: false,
            shutting_down: false,
            shards: None,
        })
        .collect()
}

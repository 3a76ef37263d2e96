//! Admin operations on topics and the cluster, on top of `Connection`.

use std::rc::Rc;

use kafka_protocol::messages::{self as m, ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::connection::Connection;
use super::ClientError;

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
    pub leader: i32,
    pub replicas: Vec<i32>,
}

pub struct Admin {
    connection: Rc<Connection>,
}

fn name(value: &str) -> TopicName {
    TopicName(StrBytes::from_string(value.to_owned()))
}

impl Admin {
    pub async fn connect(bootstrap: &str) -> Result<Admin, ClientError> {
        Ok(Admin {
            connection: Connection::connect(bootstrap, "shardlog-admin").await?,
        })
    }

    /// Describes `topics` (every topic when `None`), without creating any.
    pub async fn topics(&self, topics: Option<&[&str]>) -> Result<Vec<TopicInfo>, ClientError> {
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
        request.allow_auto_topic_creation = false;
        let response: m::MetadataResponse = self
            .connection
            .send(ApiKey::Metadata, version, &request)
            .await?;
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
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
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
}

//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs for topics (and the broker's defaults).
//!
//! DescribeConfigs (v1-4) reports every topic key with its value, source, type (v3+),
//! documentation (v3+, when asked) and synonyms (when asked): the topic override, the broker
//! keys that are set, then the default, as Kafka lists them.

use std::rc::Rc;

use kafka_protocol::messages as m;
use kafka_protocol::protocol::StrBytes;

use super::{control, str_bytes};
use crate::broker::ops::{self, ControlRequest};
use crate::broker::shard::Shard;
use crate::protocol::error_code as code;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub(super) fn describe_configs(
    shard: &Rc<Shard>,
    request: m::DescribeConfigsRequest,
) -> m::DescribeConfigsResponse {
    let image = shard.image();
    let mut response = m::DescribeConfigsResponse::default();
    for resource in &request.resources {
        let mut result = m::describe_configs_response::DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        let described = match resource.resource_type {
            RESOURCE_TOPIC => match image.topic(name) {
                Some(topic) => Some(topic.config.describe(&topic.overrides, &shard.config)),
                None => {
                    result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    result.error_message =
                        Some(str_bytes(&format!("topic '{name}' does not exist")));
                    None
                }
            },
            RESOURCE_BROKER => {
                if name.is_empty() || name == shard.config.broker_id.to_string() {
                    Some(
                        shard
                            .config
                            .topic_defaults
                            .describe(&Default::default(), &shard.config),
                    )
                } else {
                    result.error_code = code::INVALID_REQUEST;
                    result.error_message = Some(str_bytes(&format!("unknown broker {name}")));
                    None
                }
            }
            other => {
                result.error_code = code::INVALID_REQUEST;
                result.error_message = Some(str_bytes(&format!(
                    "resource type {other} is not supported"
                )));
                None
            }
        };
        for config in described.unwrap_or_default() {
            // Null or empty: every key.
            if let Some(keys) = resource
                .configuration_keys
                .as_ref()
                .filter(|k| !k.is_empty())
            {
                if !keys.iter().any(|k| k.as_str() == config.name) {
                    continue;
                }
            }
            let mut entry = m::describe_configs_response::DescribeConfigsResourceResult::default();
            entry.name = str_bytes(&config.name);
            entry.value = Some(str_bytes(&config.value));
            entry.read_only = config.read_only;
            entry.config_source = config.source.kafka_code();
            entry.is_sensitive = config.sensitive;
            entry.config_type = config.config_type.kafka_code();
            if request.include_synonyms {
                entry.synonyms = config
                    .synonyms
                    .iter()
                    .map(|synonym| {
                        let mut out =
                            m::describe_configs_response::DescribeConfigsSynonym::default();
                        out.name = str_bytes(&synonym.name);
                        out.value = Some(str_bytes(&synonym.value));
                        out.source = synonym.source.kafka_code();
                        out
                    })
                    .collect();
            }
            if request.include_documentation {
                entry.documentation = Some(str_bytes(config.documentation));
            }
            result.configs.push(entry);
        }
        response.results.push(result);
    }
    response
}

/// Per resource of an (Incremental)AlterConfigs request: type, name, error code, message.
type AlterOutcome = (i8, StrBytes, i16, Option<StrBytes>);

/// What AlterConfigs and IncrementalAlterConfigs share: only topics can change at run time,
/// and the controller applies each topic's change whole or not at all.
pub(super) async fn alter_topic_configs(
    shard: &Rc<Shard>,
    changes: Vec<(i8, StrBytes, ops::ConfigChange)>,
    validate_only: bool,
) -> Vec<AlterOutcome> {
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut topics = Vec::with_capacity(changes.len());
    for (resource_type, name, change) in changes {
        if resource_type == RESOURCE_TOPIC {
            topics.push((name.as_str().to_owned(), change));
        } else {
            let message = str_bytes("only topic configs can be altered at run time");
            outcomes.push((resource_type, name, code::INVALID_REQUEST, Some(message)));
        }
    }
    let request = ControlRequest::AlterConfigs {
        topics,
        validate_only,
    };
    for o in control(shard, request).await {
        let message = o.message.as_deref().map(str_bytes);
        outcomes.push((RESOURCE_TOPIC, str_bytes(&o.name), o.error_code, message));
    }
    outcomes
}

pub(super) async fn alter_configs(
    shard: &Rc<Shard>,
    request: m::AlterConfigsRequest,
) -> m::AlterConfigsResponse {
    let changes = request
        .resources
        .iter()
        .map(|resource| {
            let set = resource
                .configs
                .iter()
                .filter_map(|c| {
                    let value = c.value.as_ref()?;
                    Some((c.name.as_str().to_owned(), value.as_str().to_owned()))
                })
                .collect();
            let change = ops::ConfigChange::Replace(set);
            (
                resource.resource_type,
                resource.resource_name.clone(),
                change,
            )
        })
        .collect();
    let mut response = m::AlterConfigsResponse::default();
    for (resource_type, name, error_code, message) in
        alter_topic_configs(shard, changes, request.validate_only).await
    {
        let mut r = m::alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = resource_type;
        r.resource_name = name;
        r.error_code = error_code;
        r.error_message = message;
        response.responses.push(r);
    }
    response
}

pub(super) async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    request: m::IncrementalAlterConfigsRequest,
) -> m::IncrementalAlterConfigsResponse {
    let changes = request
        .resources
        .iter()
        .map(|resource| {
            let ops = resource
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_ref().map(|v| v.as_str().to_owned());
                    (c.name.as_str().to_owned(), c.config_operation, value)
                })
                .collect();
            let change = ops::ConfigChange::Incremental(ops);
            (
                resource.resource_type,
                resource.resource_name.clone(),
                change,
            )
        })
        .collect();
    let mut response = m::IncrementalAlterConfigsResponse::default();
    for (resource_type, name, error_code, message) in
        alter_topic_configs(shard, changes, request.validate_only).await
    {
        let mut r = m::incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = resource_type;
        r.resource_name = name;
        r.error_code = error_code;
        r.error_message = message;
        response.responses.push(r);
    }
    response
}

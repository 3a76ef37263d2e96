//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs for topics, brokers and groups.
//!
//! DescribeConfigs (v1-4) reports every key with its value, source, type (v3+),
//! documentation (v3+, when asked) and synonyms (when asked), as Kafka lists them: for a
//! topic, the topic override, then the broker keys that are set (per broker, cluster default,
//! static), then the default; for a broker named by its id, every broker key; for the empty
//! broker name, the cluster-wide dynamic defaults; for a group, its KIP-848 configs.
//!
//! Topic changes become topic overrides; broker and group changes become dynamic configs
//! (`config/dynamic.rs` says which keys are applied and which only stored). Both go to the
//! controller, which applies each resource's change whole or not at all. Results come back in
//! request order.

use std::rc::Rc;

use kafka_protocol::messages as m;
use kafka_protocol::protocol::StrBytes;

use super::{control, str_bytes};
use crate::broker::ops::{self, ControlRequest, DynamicResource};
use crate::broker::shard::Shard;
use crate::config::DescribedConfig;
use crate::protocol::error_code as code;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

fn unexpected_broker(expected: i32, name: &str) -> String {
    format!("Unexpected broker id, expected {expected} or empty string, but received {name}")
}

pub(super) fn describe_configs(
    shard: &Rc<Shard>,
    request: m::DescribeConfigsRequest,
) -> m::DescribeConfigsResponse {
    let image = shard.image();
    let broker = &image.broker;
    let mut response = m::DescribeConfigsResponse::default();
    for resource in &request.resources {
        let mut result = m::describe_configs_response::DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        let described: Result<Vec<DescribedConfig>, (i16, String)> = match resource.resource_type {
            RESOURCE_TOPIC => match image.topic(name) {
                Some(topic) => Ok(topic.config.describe(&topic.overrides, broker)),
                None => Err((
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic '{name}' does not exist"),
                )),
            },
            RESOURCE_BROKER if name.is_empty() => Ok(broker.describe_broker_defaults()),
            RESOURCE_BROKER if name == broker.broker_id.to_string() => Ok(broker.describe_broker()),
            RESOURCE_BROKER => Err((
                code::INVALID_REQUEST,
                unexpected_broker(broker.broker_id, name),
            )),
            RESOURCE_GROUP if name.is_empty() => {
                Err((code::INVALID_REQUEST, "the group id is empty".to_owned()))
            }
            // A group need not exist to have (default) configs, as in Kafka.
            RESOURCE_GROUP => Ok(image
                .group_config(name)
                .describe(&image.configs.group(name), broker)),
            other => Err((
                code::INVALID_REQUEST,
                format!("resource type {other} is not supported"),
            )),
        };
        let described = match described {
            Ok(described) => described,
            Err((error_code, message)) => {
                result.error_code = error_code;
                result.error_message = Some(str_bytes(&message));
                Vec::new()
            }
        };
        for config in described {
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
            entry.value = config.value.as_deref().map(str_bytes);
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
                        out.value = synonym.value.as_deref().map(str_bytes);
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

/// What AlterConfigs and IncrementalAlterConfigs share: topic changes and broker or group
/// changes each go to the controller in one request; the outcomes are put back in the order
/// of the resources.
pub(super) async fn alter_resource_configs(
    shard: &Rc<Shard>,
    changes: Vec<(i8, StrBytes, ops::ConfigChange)>,
    validate_only: bool,
) -> Vec<AlterOutcome> {
    let mut outcomes: Vec<Option<AlterOutcome>> = vec![None; changes.len()];
    let mut topics = Vec::new();
    let mut topic_slots = Vec::new();
    let mut dynamic = Vec::new();
    let mut dynamic_slots = Vec::new();
    for (slot, (resource_type, name, change)) in changes.into_iter().enumerate() {
        match resource_type {
            RESOURCE_TOPIC => {
                topics.push((name.as_str().to_owned(), change));
                topic_slots.push((slot, resource_type, name));
            }
            RESOURCE_BROKER | RESOURCE_GROUP => {
                let resource = if resource_type == RESOURCE_BROKER {
                    DynamicResource::Broker(name.as_str().to_owned())
                } else {
                    DynamicResource::Group(name.as_str().to_owned())
                };
                dynamic.push((resource, change));
                dynamic_slots.push((slot, resource_type, name));
            }
            other => {
                let message = str_bytes(&format!("resource type {other} cannot be altered here"));
                outcomes[slot] = Some((other, name, code::INVALID_REQUEST, Some(message)));
            }
        }
    }
    let mut requests = Vec::new();
    if !topics.is_empty() {
        let request = ControlRequest::AlterConfigs {
            topics,
            validate_only,
        };
        requests.push((request, topic_slots));
    }
    if !dynamic.is_empty() {
        let request = ControlRequest::AlterDynamicConfigs {
            resources: dynamic,
            validate_only,
        };
        requests.push((request, dynamic_slots));
    }
    for (request, slots) in requests {
        let mut answers = control(shard, request).await.into_iter();
        for (slot, resource_type, name) in slots {
            let (error_code, message) = match answers.next() {
                Some(o) => (o.error_code, o.message.as_deref().map(str_bytes)),
                None => (
                    code::UNKNOWN_SERVER_ERROR,
                    Some(str_bytes("the controller gave no answer")),
                ),
            };
            outcomes[slot] = Some((resource_type, name, error_code, message));
        }
    }
    outcomes.into_iter().flatten().collect()
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
        alter_resource_configs(shard, changes, request.validate_only).await
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
        alter_resource_configs(shard, changes, request.validate_only).await
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

//! Dynamic broker configs and KIP-848 group configs: what librdkafka's 0081-admin expects of
//! AlterConfigs, IncrementalAlterConfigs and DescribeConfigs on BROKER and GROUP resources
//! (through the `rdkafka` crate's AdminClient), the refusals Kafka answers (raw protocol),
//! the configs kept across a restart, and a dynamic default changing what topics without
//! their own override do.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::raw::{self, Client};
use common::{eventually, Broker};
use futures::executor::block_on;
use kafka_protocol::messages::{self as m, ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, OwnedResourceSpecifier,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const GROUP: i8 = 32;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const MESSAGE_TOO_LARGE: i16 = 10;

const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT: i8 = 3;
const SOURCE_STATIC: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_GROUP: i8 = 8;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn start(dir: &tempfile::TempDir) -> Broker {
    Broker::start(
        &dir.path().join("data"),
        &[("offsets.topic.num.partitions", "3")],
    )
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

type Operation<'a> = (&'a str, i8, Option<&'a str>);

/// One IncrementalAlterConfigs request of several resources; each one's (code, message).
fn incremental_many(
    client: &mut Client,
    resources: &[(i8, &str, &[Operation])],
    validate_only: bool,
) -> Vec<(i8, String, i16, String)> {
    let mut request = m::IncrementalAlterConfigsRequest::default();
    request.validate_only = validate_only;
    for (resource_type, name, operations) in resources {
        let mut resource = m::incremental_alter_configs_request::AlterConfigsResource::default();
        resource.resource_type = *resource_type;
        resource.resource_name = s(name);
        for (key, op, value) in operations.iter() {
            let mut config = m::incremental_alter_configs_request::AlterableConfig::default();
            config.name = s(key);
            config.config_operation = *op;
            config.value = value.map(s);
            resource.configs.push(config);
        }
        request.resources.push(resource);
    }
    let response: m::IncrementalAlterConfigsResponse =
        client.call(ApiKey::IncrementalAlterConfigs, 1, &request);
    response
        .responses
        .iter()
        .map(|r| {
            (
                r.resource_type,
                r.resource_name.to_string(),
                r.error_code,
                r.error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn incremental(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    operations: &[Operation],
) -> (i16, String) {
    let mut outcome = incremental_many(client, &[(resource_type, name, operations)], false);
    let (_, _, code, message) = outcome.remove(0);
    (code, message)
}

/// A resource of an AlterConfigs request: type, name, key=value pairs.
type AlterResource<'a> = (i8, &'a str, &'a [(&'a str, &'a str)]);

/// One AlterConfigs (v1) request of several resources: each one's type, name and code.
fn alter_configs_raw(bootstrap: &str, resources: &[AlterResource]) -> Vec<(i8, String, i16)> {
    let mut client = Client::connect(bootstrap);
    let mut request = m::AlterConfigsRequest::default();
    for (resource_type, name, configs) in resources {
        let mut resource = m::alter_configs_request::AlterConfigsResource::default();
        resource.resource_type = *resource_type;
        resource.resource_name = s(name);
        for (key, value) in configs.iter() {
            let mut config = m::alter_configs_request::AlterableConfig::default();
            config.name = s(key);
            config.value = Some(s(value));
            resource.configs.push(config);
        }
        request.resources.push(resource);
    }
    let response: m::AlterConfigsResponse = client.call(ApiKey::AlterConfigs, 1, &request);
    response
        .responses
        .iter()
        .map(|r| (r.resource_type, r.resource_name.to_string(), r.error_code))
        .collect()
}

/// A described config: value, source, read-only, synonyms as (name, value, source).
#[derive(Debug, Clone)]
struct Described {
    value: Option<String>,
    source: i8,
    read_only: bool,
    synonyms: Vec<(String, Option<String>, i8)>,
}

/// DescribeConfigs v4 with synonyms of one resource: its error code and configs by name.
fn describe(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
) -> (i16, BTreeMap<String, Described>) {
    let mut request = m::DescribeConfigsRequest::default();
    request.include_synonyms = true;
    let mut resource = m::describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = resource_type;
    resource.resource_name = s(name);
    resource.configuration_keys = keys.map(|keys| keys.iter().map(|k| s(k)).collect());
    request.resources.push(resource);
    let response: m::DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &request);
    let result = &response.results[0];
    let configs = result
        .configs
        .iter()
        .map(|c| {
            let described = Described {
                value: c.value.as_ref().map(|v| v.to_string()),
                source: c.config_source,
                read_only: c.read_only,
                synonyms: c
                    .synonyms
                    .iter()
                    .map(|y| {
                        (
                            y.name.to_string(),
                            y.value.as_ref().map(|v| v.to_string()),
                            y.source,
                        )
                    })
                    .collect(),
            };
            (c.name.to_string(), described)
        })
        .collect();
    (result.error_code, configs)
}

fn value_and_source(configs: &BTreeMap<String, Described>, key: &str) -> (String, i8) {
    let config = &configs[key];
    (config.value.clone().unwrap_or_default(), config.source)
}

fn synonyms(configs: &BTreeMap<String, Described>, key: &str) -> Vec<(String, String, i8)> {
    configs[key]
        .synonyms
        .iter()
        .map(|(name, value, source)| (name.clone(), value.clone().unwrap_or_default(), *source))
        .collect()
}

fn synonym(name: &str, value: &str, source: i8) -> (String, String, i8) {
    (name.to_owned(), value.to_owned(), source)
}

/// 0081's do_test_AlterConfigs and do_test_DescribeConfigs with the BROKER and GROUP
/// resources: AlterConfigs of `sasl.kerberos.min.time.before.relogin` on the broker named by
/// its id succeeds beside a topic and a missing topic, DescribeConfigs lists the broker's
/// configs with their sources, and a group's configs are described even before it exists.
#[test]
fn admin_0081_alter_and_describe_broker_and_group_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    let admin = admin(&broker.bootstrap);
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new("t0081-alter", 1, TopicReplication::Fixed(1));
    block_on(admin.create_topics([&topic], &options)).unwrap()[0]
        .as_ref()
        .unwrap();

    let alters = [
        AlterConfig::new(ResourceSpecifier::Topic("t0081-alter"))
            .set("compression.type", "gzip")
            .set("flush.ms", "12345678"),
        AlterConfig::new(ResourceSpecifier::Broker(0))
            .set("sasl.kerberos.min.time.before.relogin", "58000"),
        AlterConfig::new(ResourceSpecifier::Topic("t0081-missing"))
            .set("compression.type", "lz4")
            .set("max.compaction.lag.ms", "3600000"),
    ];
    // The crate reports the resources but not their errors: the codes are read raw below.
    let results = block_on(admin.alter_configs(&alters, &options)).unwrap();
    assert_eq!(
        results,
        vec![
            Ok(OwnedResourceSpecifier::Topic("t0081-alter".into())),
            Ok(OwnedResourceSpecifier::Broker(0)),
            Ok(OwnedResourceSpecifier::Topic("t0081-missing".into())),
        ]
    );
    let codes = alter_configs_raw(
        &broker.bootstrap,
        &[
            (
                TOPIC,
                "t0081-alter",
                &[("compression.type", "gzip"), ("flush.ms", "12345678")],
            ),
            (
                BROKER,
                "0",
                &[("sasl.kerberos.min.time.before.relogin", "58000")],
            ),
            (TOPIC, "t0081-missing", &[("compression.type", "lz4")]),
        ],
    );
    assert_eq!(
        codes,
        [
            (TOPIC, "t0081-alter".to_owned(), 0),
            (BROKER, "0".to_owned(), 0),
            (TOPIC, "t0081-missing".to_owned(), 3),
        ]
    );

    let described = block_on(admin.describe_configs(
        [
            &ResourceSpecifier::Topic("t0081-alter"),
            &ResourceSpecifier::Broker(0),
            &ResourceSpecifier::Topic("t0081-notexist"),
            &ResourceSpecifier::Group("t0081-group"),
        ],
        &options,
    ))
    .unwrap();
    assert_eq!(described.len(), 4);
    let topic = described[0].as_ref().expect("topic described");
    assert_eq!(
        topic.get("compression.type").and_then(|e| e.value.clone()),
        Some("gzip".to_owned())
    );
    let broker_configs = described[1].as_ref().expect("broker described");
    let relogin = broker_configs
        .get("sasl.kerberos.min.time.before.relogin")
        .expect("listed");
    assert_eq!(relogin.value.as_deref(), Some("58000"));
    assert_eq!(relogin.source, ConfigSource::DynamicBroker);
    let log_dirs = broker_configs.get("log.dirs").expect("listed");
    assert!(log_dirs.is_read_only);
    assert_eq!(log_dirs.source, ConfigSource::StaticBroker);
    let threads = broker_configs.get("background.threads").expect("listed");
    assert_eq!(threads.value.as_deref(), Some("10"));
    assert_eq!(threads.source, ConfigSource::Default);
    assert!(broker_configs.entries.len() > 100, "every broker key");
    // The crate leaves out a resource's error; it is read raw below.
    assert!(described[2].as_ref().map_or(true, |r| r.entries.is_empty()));
    let group = described[3].as_ref().expect("a group without configs");
    assert_eq!(
        group
            .get("consumer.session.timeout.ms")
            .and_then(|e| e.value.clone()),
        Some("45000".to_owned())
    );

    // AlterConfigs replaces the broker's dynamic configs: an empty set removes them.
    let alter = AlterConfig::new(ResourceSpecifier::Broker(0));
    block_on(admin.alter_configs([&alter], &options)).unwrap()[0]
        .as_ref()
        .unwrap();
    let mut client = Client::connect(&broker.bootstrap);
    assert_eq!(describe(&mut client, TOPIC, "t0081-notexist", None).0, 3);
    let (_, configs) = describe(
        &mut client,
        BROKER,
        "0",
        Some(&["sasl.kerberos.min.time.before.relogin"]),
    );
    assert_eq!(
        value_and_source(&configs, "sasl.kerberos.min.time.before.relogin"),
        ("60000".to_owned(), SOURCE_DEFAULT)
    );
}

/// 0081's test_IncrementalAlterConfigs_simple on BROKER and GROUP resources, and the
/// refusals Kafka answers: a read-only key, an unknown key, a value out of range, APPEND on a
/// key that is not a list, another broker's id, a per-broker key at the cluster level.
#[test]
fn incremental_alter_configs_on_broker_and_group_resources() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    let mut client = Client::connect(&broker.bootstrap);
    let keys: &[&str] = &["background.threads", "log.cleanup.policy"];

    let set_append: &[Operation] = &[
        ("background.threads", SET, Some("9")),
        ("log.cleanup.policy", APPEND, Some("compact")),
    ];
    assert_eq!(incremental(&mut client, BROKER, "0", set_append).0, 0);
    let (code, configs) = describe(&mut client, BROKER, "0", Some(keys));
    assert_eq!(code, 0);
    assert_eq!(configs.len(), 2);
    assert_eq!(
        value_and_source(&configs, "background.threads"),
        ("9".to_owned(), SOURCE_DYNAMIC_BROKER)
    );
    assert_eq!(
        value_and_source(&configs, "log.cleanup.policy"),
        ("delete,compact".to_owned(), SOURCE_DYNAMIC_BROKER)
    );
    assert_eq!(
        synonyms(&configs, "background.threads"),
        [
            synonym("background.threads", "9", SOURCE_DYNAMIC_BROKER),
            synonym("background.threads", "10", SOURCE_DEFAULT),
        ]
    );

    let delete_subtract: &[Operation] = &[
        ("background.threads", DELETE, Some("")),
        ("log.cleanup.policy", SUBTRACT, Some("compact")),
    ];
    assert_eq!(incremental(&mut client, BROKER, "0", delete_subtract).0, 0);
    let (_, configs) = describe(&mut client, BROKER, "0", Some(keys));
    assert_eq!(
        value_and_source(&configs, "background.threads"),
        ("10".to_owned(), SOURCE_DEFAULT)
    );
    assert_eq!(
        value_and_source(&configs, "log.cleanup.policy"),
        ("delete".to_owned(), SOURCE_DYNAMIC_BROKER)
    );

    // The group of 0081's helper need not exist.
    let group = "t0081-group";
    let (code, _) = incremental(
        &mut client,
        GROUP,
        group,
        &[("consumer.session.timeout.ms", SET, Some("50000"))],
    );
    assert_eq!(code, 0);
    let (code, configs) = describe(&mut client, GROUP, group, None);
    assert_eq!(code, 0);
    assert_eq!(
        configs.keys().collect::<Vec<_>>(),
        [
            "consumer.heartbeat.interval.ms",
            "consumer.session.timeout.ms"
        ]
    );
    assert_eq!(
        value_and_source(&configs, "consumer.session.timeout.ms"),
        ("50000".to_owned(), SOURCE_GROUP)
    );
    assert_eq!(
        value_and_source(&configs, "consumer.heartbeat.interval.ms"),
        ("5000".to_owned(), SOURCE_DEFAULT)
    );
    let (code, _) = incremental(
        &mut client,
        GROUP,
        group,
        &[("consumer.session.timeout.ms", DELETE, Some(""))],
    );
    assert_eq!(code, 0);
    let (_, configs) = describe(&mut client, GROUP, group, None);
    assert_eq!(
        value_and_source(&configs, "consumer.session.timeout.ms"),
        ("45000".to_owned(), SOURCE_DEFAULT)
    );

    // Refusals, each naming what it refuses.
    let refused = |client: &mut Client, resource_type, name, operations: &[Operation]| {
        incremental(client, resource_type, name, operations)
    };
    let (code, message) = refused(&mut client, BROKER, "0", &[("log.dirs", SET, Some("/x"))]);
    assert_eq!(code, INVALID_REQUEST);
    assert_eq!(message, "Cannot update these configs dynamically: log.dirs");
    let (code, message) = refused(&mut client, BROKER, "0", &[("no.such.key", SET, Some("1"))]);
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("no.such.key"), "{message}");
    let (code, message) = refused(
        &mut client,
        BROKER,
        "0",
        &[("background.threads", SET, Some("0"))],
    );
    assert_eq!(code, INVALID_REQUEST, "Kafka wraps a bad value so");
    assert!(message.contains("background.threads"), "{message}");
    let (code, _) = refused(
        &mut client,
        BROKER,
        "0",
        &[("log.retention.ms", SET, Some("-7"))],
    );
    assert_eq!(code, INVALID_REQUEST);
    let (code, message) = refused(
        &mut client,
        BROKER,
        "0",
        &[("background.threads", APPEND, Some("1"))],
    );
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("append is not allowed"), "{message}");
    let (code, message) = refused(
        &mut client,
        BROKER,
        "7",
        &[("background.threads", SET, Some("9"))],
    );
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.contains("Unexpected broker id"), "{message}");
    let (code, message) = refused(
        &mut client,
        BROKER,
        "",
        &[("sasl.kerberos.min.time.before.relogin", SET, Some("1"))],
    );
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.contains("broker id must be specified"), "{message}");
    for (key, value) in [
        ("consumer.session.timeout.ms", "1000"),
        ("consumer.session.timeout.ms", "600000"),
        ("consumer.heartbeat.interval.ms", "20000"),
        ("consumer.unknown.ms", "1"),
    ] {
        let (code, message) = refused(&mut client, GROUP, group, &[(key, SET, Some(value))]);
        assert_eq!(code, INVALID_CONFIG, "{key}={value}");
        assert!(message.contains(key), "{message}");
    }
    let (code, _) = describe(&mut client, BROKER, "7", None);
    assert_eq!(code, INVALID_REQUEST);

    // Nothing refused was stored.
    let (_, configs) = describe(&mut client, BROKER, "0", None);
    assert_eq!(
        value_and_source(&configs, "background.threads"),
        ("10".to_owned(), SOURCE_DEFAULT)
    );
    assert_eq!(configs["log.dirs"].source, SOURCE_STATIC);
    assert!(configs["log.dirs"].read_only);

    // validate_only checks and stores nothing; several resources answer in request order.
    let outcomes = incremental_many(
        &mut client,
        &[
            (TOPIC, "missing", &[("retention.ms", SET, Some("1"))]),
            (BROKER, "0", &[("background.threads", SET, Some("3"))]),
            (
                GROUP,
                group,
                &[("consumer.heartbeat.interval.ms", SET, Some("6000"))],
            ),
            (BROKER, "0", &[("num.shards", SET, Some("3"))]),
        ],
        true,
    );
    let summary: Vec<(i8, &str, i16)> = outcomes
        .iter()
        .map(|(t, n, c, _)| (*t, n.as_str(), *c))
        .collect();
    assert_eq!(
        summary,
        [
            (TOPIC, "missing", 3),
            (BROKER, "0", 0),
            (GROUP, group, 0),
            (BROKER, "0", INVALID_REQUEST),
        ]
    );
    let (_, configs) = describe(&mut client, BROKER, "0", Some(&["background.threads"]));
    assert_eq!(configs["background.threads"].source, SOURCE_DEFAULT);
}

/// The dynamic configs are the controller's, on disk: a restart brings back the per-broker
/// ones, the cluster default and the group's.
#[test]
fn dynamic_configs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start(&dir);
    let mut client = Client::connect(&broker.bootstrap);
    let set = |client: &mut Client, resource_type, name, key, value| {
        let (code, message) = incremental(client, resource_type, name, &[(key, SET, Some(value))]);
        assert_eq!(code, 0, "{key}: {message}");
    };
    set(
        &mut client,
        BROKER,
        "0",
        "sasl.kerberos.min.time.before.relogin",
        "58000",
    );
    set(&mut client, BROKER, "", "log.cleaner.backoff.ms", "1000");
    set(
        &mut client,
        GROUP,
        "kept",
        "consumer.heartbeat.interval.ms",
        "7000",
    );
    drop(client);
    assert!(broker.terminate().success());
    broker.restart();

    let mut client = Client::connect(&broker.bootstrap);
    let (_, configs) = describe(&mut client, BROKER, "0", None);
    assert_eq!(
        value_and_source(&configs, "sasl.kerberos.min.time.before.relogin"),
        ("58000".to_owned(), SOURCE_DYNAMIC_BROKER)
    );
    assert_eq!(
        value_and_source(&configs, "log.cleaner.backoff.ms"),
        ("1000".to_owned(), SOURCE_DYNAMIC_DEFAULT)
    );
    let (code, defaults) = describe(&mut client, BROKER, "", None);
    assert_eq!(code, 0);
    assert_eq!(
        defaults.keys().collect::<Vec<_>>(),
        ["log.cleaner.backoff.ms"]
    );
    let (_, group) = describe(&mut client, GROUP, "kept", None);
    assert_eq!(
        value_and_source(&group, "consumer.heartbeat.interval.ms"),
        ("7000".to_owned(), SOURCE_GROUP)
    );
}

/// A cluster-wide `message.max.bytes` and `log.retention.ms` apply to a topic without its
/// own override, as DescribeConfigs reports (DYNAMIC_DEFAULT_BROKER_CONFIG, synonyms in
/// Kafka's order) and as produce shows; a per-broker value wins over the default; a topic
/// override wins over both; deleting the default restores the static value.
#[test]
fn a_dynamic_default_applies_to_topics_without_an_override() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    let mut client = Client::connect(&broker.bootstrap);
    raw::create_topic(&mut client, "plain", &[]);
    raw::create_topic(&mut client, "own", &[("max.message.bytes", "100000")]);
    let large = raw::batch(4, 1000);
    assert_eq!(
        raw::produce(&mut client, "plain", 0, large.clone(), 1),
        Some(0)
    );

    let (code, message) = incremental(
        &mut client,
        BROKER,
        "",
        &[
            ("message.max.bytes", SET, Some("1000")),
            ("log.retention.ms", SET, Some("3600000")),
        ],
    );
    assert_eq!(code, 0, "{message}");
    let keys: &[&str] = &["max.message.bytes", "retention.ms"];
    let (_, configs) = describe(&mut client, TOPIC, "plain", Some(keys));
    assert_eq!(
        value_and_source(&configs, "max.message.bytes"),
        ("1000".to_owned(), SOURCE_DYNAMIC_DEFAULT)
    );
    assert_eq!(
        synonyms(&configs, "max.message.bytes"),
        [
            synonym("message.max.bytes", "1000", SOURCE_DYNAMIC_DEFAULT),
            synonym("message.max.bytes", "1048588", SOURCE_DEFAULT),
        ]
    );
    assert_eq!(
        value_and_source(&configs, "retention.ms"),
        ("3600000".to_owned(), SOURCE_DYNAMIC_DEFAULT)
    );
    assert_eq!(
        synonyms(&configs, "retention.ms"),
        [
            synonym("log.retention.ms", "3600000", SOURCE_DYNAMIC_DEFAULT),
            synonym("log.retention.hours", "168", SOURCE_DEFAULT),
        ]
    );
    assert_eq!(
        raw::produce(&mut client, "plain", 0, large.clone(), 1),
        Some(MESSAGE_TOO_LARGE)
    );
    assert_eq!(
        raw::produce(&mut client, "own", 0, large.clone(), 1),
        Some(0)
    );
    let admin = admin(&broker.bootstrap);
    let described = block_on(
        admin.describe_configs([&ResourceSpecifier::Topic("plain")], &AdminOptions::new()),
    )
    .unwrap();
    let entry = described[0]
        .as_ref()
        .unwrap()
        .get("max.message.bytes")
        .unwrap();
    assert_eq!(entry.source, ConfigSource::DynamicDefaultBroker);

    // This broker's own value wins over the cluster default.
    let (code, _) = incremental(
        &mut client,
        BROKER,
        "0",
        &[("message.max.bytes", SET, Some("200000"))],
    );
    assert_eq!(code, 0);
    let (_, configs) = describe(&mut client, TOPIC, "plain", Some(keys));
    assert_eq!(
        synonyms(&configs, "max.message.bytes"),
        [
            synonym("message.max.bytes", "200000", SOURCE_DYNAMIC_BROKER),
            synonym("message.max.bytes", "1000", SOURCE_DYNAMIC_DEFAULT),
            synonym("message.max.bytes", "1048588", SOURCE_DEFAULT),
        ]
    );
    assert_eq!(
        raw::produce(&mut client, "plain", 0, large.clone(), 1),
        Some(0)
    );

    // Back to the static values.
    let (code, _) = incremental(
        &mut client,
        BROKER,
        "0",
        &[("message.max.bytes", DELETE, None)],
    );
    assert_eq!(code, 0);
    let (code, _) = incremental(
        &mut client,
        BROKER,
        "",
        &[
            ("message.max.bytes", DELETE, None),
            ("log.retention.ms", DELETE, None),
        ],
    );
    assert_eq!(code, 0);
    let (_, configs) = describe(&mut client, TOPIC, "plain", Some(keys));
    assert_eq!(
        value_and_source(&configs, "retention.ms"),
        ("604800000".to_owned(), SOURCE_DEFAULT)
    );
    assert_eq!(raw::produce(&mut client, "plain", 0, large, 1), Some(0));
}

/// A group's `consumer.heartbeat.interval.ms` is what its KIP-848 members are told to use;
/// other groups keep the broker's.
#[test]
fn a_group_config_reaches_the_members_of_that_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir);
    let mut client = Client::connect(&broker.bootstrap);
    raw::create_topic(&mut client, "subscribed", &[]);
    let (code, message) = incremental(
        &mut client,
        GROUP,
        "tuned",
        &[
            ("consumer.heartbeat.interval.ms", SET, Some("6000")),
            ("consumer.session.timeout.ms", SET, Some("50000")),
        ],
    );
    assert_eq!(code, 0, "{message}");
    let mut heartbeat_interval = |group: &str| {
        let mut request = m::FindCoordinatorRequest::default();
        request.key = s(group);
        let response: m::FindCoordinatorResponse =
            client.call(ApiKey::FindCoordinator, 1, &request);
        assert_eq!(response.error_code, 0);
        // The coordinator loads its partition of __consumer_offsets on its own schedule.
        eventually(Duration::from_secs(30), "the coordinator is loaded", || {
            let mut request = m::ConsumerGroupHeartbeatRequest::default();
            request.group_id = GroupId(s(group));
            request.member_id = s(&format!("{group}-member"));
            request.rebalance_timeout_ms = 30_000;
            request.subscribed_topic_names = Some(vec![TopicName(s("subscribed"))]);
            let response: m::ConsumerGroupHeartbeatResponse =
                client.call(ApiKey::ConsumerGroupHeartbeat, 1, &request);
            match response.error_code {
                14 | 15 => None,
                0 => Some(response.heartbeat_interval_ms),
                other => panic!("heartbeat failed: {other} {:?}", response.error_message),
            }
        })
    };
    assert_eq!(heartbeat_interval("tuned"), 6000);
    assert_eq!(heartbeat_interval("plain-group"), 5000);
}

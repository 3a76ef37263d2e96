//! Topic configs against librdkafka (the `rdkafka` crate's AdminClient, producer and consumer):
//! what its regression tests 0081-admin (create, describe, alter configs) and 0092-mixed_msgver
//! expect, every Kafka 3.x key described, INVALID_CONFIG for unknown keys and bad values,
//! broker recompression into a topic's `compression.type`, and the CreateTime window.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::raw;
use common::{eventually, Broker};
use futures::executor::block_on;
use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Every topic-level key of Kafka 3.x (`LogConfig`).
const KAFKA_TOPIC_KEYS: [&str; 36] = [
    "cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("compression.type", "none")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

fn new_topic<'a>(name: &'a str, configs: &[(&'a str, &'a str)]) -> NewTopic<'a> {
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    topic
}

fn create(admin: &AdminClient<DefaultClientContext>, name: &str, configs: &[(&str, &str)]) {
    let results =
        block_on(admin.create_topics([&new_topic(name, configs)], &AdminOptions::new())).unwrap();
    for result in results {
        result.expect("topic created");
    }
}

/// The described topic: name → (value, source, is_default, read_only).
fn describe(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
) -> BTreeMap<String, (Option<String>, ConfigSource, bool, bool)> {
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(name)], &AdminOptions::new()))
            .unwrap();
    let resource = results.into_iter().next().unwrap().expect("described");
    resource
        .entries
        .into_iter()
        .map(|e| (e.name, (e.value, e.source, e.is_default, e.is_read_only)))
        .collect()
}

fn value(
    described: &BTreeMap<String, (Option<String>, ConfigSource, bool, bool)>,
    key: &str,
) -> String {
    described[key].0.clone().unwrap_or_default()
}

fn alter_configs_raw(
    bootstrap: &str,
    topic: &str,
    configs: &[(&str, &str)],
) -> (i16, Option<String>) {
    let mut client = raw::Client::connect(bootstrap);
    let mut request = m::AlterConfigsRequest::default();
    let mut resource = m::alter_configs_request::AlterConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.into());
    for (key, value) in configs {
        let mut config = m::alter_configs_request::AlterableConfig::default();
        config.name = StrBytes::from_string(key.to_string());
        config.value = Some(StrBytes::from_string(value.to_string()));
        resource.configs.push(config);
    }
    request.resources.push(resource);
    let response: m::AlterConfigsResponse = client.call(ApiKey::AlterConfigs, 1, &request);
    let outcome = &response.responses[0];
    (
        outcome.error_code,
        outcome.error_message.as_ref().map(|s| s.to_string()),
    )
}

/// 0081-admin's CreateTopics with configs: `compression.type=lz4` and `delete.retention.ms`
/// are accepted, an unknown key is INVALID_CONFIG; then DescribeConfigs reports them as topic
/// configs and AlterConfigs (0081's do_test_AlterConfigs) replaces them.
#[test]
fn admin_0081_create_with_configs_describe_and_alter() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let admin = admin(&broker.bootstrap);
    let options = AdminOptions::new();
    let with_configs = new_topic(
        "t0081-a",
        &[("compression.type", "lz4"), ("delete.retention.ms", "900")],
    );
    let invalid = new_topic(
        "t0081-b",
        &[
            ("compression.type", "lz4"),
            ("dummy.doesntexist", "broker is verifying this"),
        ],
    );
    let results = block_on(admin.create_topics([&with_configs, &invalid], &options)).unwrap();
    assert_eq!(results[0], Ok("t0081-a".to_string()));
    assert_eq!(
        results[1],
        Err(("t0081-b".to_string(), RDKafkaErrorCode::InvalidConfig))
    );

    let described = describe(&admin, "t0081-a");
    assert_eq!(value(&described, "compression.type"), "lz4");
    assert_eq!(described["compression.type"].1, ConfigSource::DynamicTopic);
    assert_eq!(value(&described, "delete.retention.ms"), "900");
    assert_eq!(described["segment.bytes"].1, ConfigSource::Default);
    assert!(described.values().all(|(_, _, _, read_only)| !read_only));

    // AlterConfigs replaces the overrides: compression.type=gzip and flush.ms as 0081 sets.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("t0081-a"))
        .set("compression.type", "gzip")
        .set("flush.ms", "12345678");
    block_on(admin.alter_configs([&alter], &options)).unwrap()[0]
        .as_ref()
        .unwrap();
    let described = describe(&admin, "t0081-a");
    assert_eq!(value(&described, "compression.type"), "gzip");
    assert_eq!(value(&described, "flush.ms"), "12345678");
    assert_eq!(
        described["delete.retention.ms"].1,
        ConfigSource::Default,
        "AlterConfigs drops what it does not set"
    );
    // The same keys on a topic that does not exist: UNKNOWN_TOPIC_OR_PART.
    let (code, _) = alter_configs_raw(
        &broker.bootstrap,
        "t0081-missing",
        &[
            ("compression.type", "lz4"),
            ("max.compaction.lag.ms", "3600000"),
        ],
    );
    assert_eq!(code, 3);
}

/// 0092-mixed_msgver: AlterConfigs of `message.format.version` half way through producing
/// succeeds, and every message is consumed afterwards.
#[test]
fn mixed_msgver_0092_alter_message_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let admin = admin(&broker.bootstrap);
    create(&admin, "t0092", &[]);
    let producer = producer(&broker.bootstrap);
    for i in 0..20 {
        let payload = format!("msg-{i}");
        block_on(producer.send(
            FutureRecord::<(), _>::to("t0092").payload(&payload),
            TIMEOUT,
        ))
        .unwrap();
        if i == 10 {
            let alter = AlterConfig::new(ResourceSpecifier::Topic("t0092"))
                .set("message.format.version", "0.10.0.0");
            block_on(admin.alter_configs([&alter], &AdminOptions::new())).unwrap()[0]
                .as_ref()
                .unwrap();
            assert_eq!(
                value(&describe(&admin, "t0092"), "message.format.version"),
                "0.10.0.0"
            );
        }
    }
    let consumed = consume_all(&broker.bootstrap, "t0092", 20);
    let values: Vec<String> = consumed
        .iter()
        .map(|(_, value, _)| String::from_utf8_lossy(value).into_owned())
        .collect();
    assert_eq!(
        values,
        (0..20).map(|i| format!("msg-{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn describe_configs_lists_every_kafka_topic_key_with_synonyms_types_and_docs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[("log.retention.hours", "24"), ("compression.type", "gzip")],
    );
    let admin = admin(&broker.bootstrap);
    create(&admin, "described", &[("retention.ms", "1000")]);
    let described = describe(&admin, "described");
    let keys: Vec<&str> = described.keys().map(String::as_str).collect();
    assert_eq!(keys, KAFKA_TOPIC_KEYS);
    assert_eq!(described["retention.ms"].1, ConfigSource::DynamicTopic);
    assert_eq!(described["compression.type"].1, ConfigSource::StaticBroker);
    assert_eq!(value(&described, "compression.type"), "gzip");
    assert_eq!(described["preallocate"].1, ConfigSource::Default);
    assert!(described["preallocate"].2, "is_default");
    assert_eq!(
        value(&described, "max.compaction.lag.ms"),
        i64::MAX.to_string()
    );

    // v4 with synonyms and documentation, as the Java admin client asks.
    let mut client = raw::Client::connect(&broker.bootstrap);
    let mut request = m::DescribeConfigsRequest::default();
    request.include_synonyms = true;
    request.include_documentation = true;
    let mut resource = m::describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_static_str("described");
    resource.configuration_keys = Some(vec![
        StrBytes::from_static_str("retention.ms"),
        StrBytes::from_static_str("segment.bytes"),
    ]);
    request.resources.push(resource);
    let response: m::DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &request);
    let result = &response.results[0];
    assert_eq!(result.error_code, 0);
    assert_eq!(result.configs.len(), 2);
    let retention = &result.configs[0];
    assert_eq!(retention.name.as_str(), "retention.ms");
    assert_eq!(retention.config_type, 5, "LONG");
    assert!(retention
        .documentation
        .as_ref()
        .is_some_and(|d| !d.is_empty()));
    let synonyms: Vec<(String, String, i8)> = retention
        .synonyms
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                s.source,
            )
        })
        .collect();
    assert_eq!(
        synonyms,
        [
            ("retention.ms".to_string(), "1000".to_string(), 1),
            ("log.retention.hours".to_string(), "24".to_string(), 4),
            ("log.retention.hours".to_string(), "168".to_string(), 5),
        ]
    );
    let segment = &result.configs[1];
    assert_eq!(segment.config_type, 3, "INT");
    assert_eq!(segment.config_source, 5);
}

#[test]
fn unknown_keys_and_bad_values_are_invalid_config_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let admin = admin(&broker.bootstrap);
    for (key, bad) in [
        ("no.such.key", "1"),
        ("compression.type", "brotli"),
        ("min.insync.replicas", "0"),
        ("max.compaction.lag.ms", "0"),
        ("message.timestamp.type", "WallClock"),
        ("unclean.leader.election.enable", "yes"),
        ("segment.index.bytes", "2"),
    ] {
        let results = block_on(
            admin.create_topics([&new_topic("refused", &[(key, bad)])], &AdminOptions::new()),
        )
        .unwrap();
        assert_eq!(
            results[0],
            Err(("refused".to_string(), RDKafkaErrorCode::InvalidConfig)),
            "{key}={bad}"
        );
    }
    create(&admin, "altered", &[]);
    for (key, bad) in [("no.such.key", "1"), ("segment.jitter.ms", "-5")] {
        let (code, message) = alter_configs_raw(&broker.bootstrap, "altered", &[(key, bad)]);
        assert_eq!(code, 40, "INVALID_CONFIG for {key}={bad}");
        let message = message.unwrap_or_default();
        assert!(
            message.contains(key) && message.contains(bad),
            "{message:?} names {key} and {bad}"
        );
    }
    let (code, _) = alter_configs_raw(
        &broker.bootstrap,
        "altered",
        &[("message.downconversion.enable", "false")],
    );
    assert_eq!(code, 0, "a key Kafka ignores is still accepted");
}

/// A consumed record: key, value, headers in order.
type Consumed = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Reads `count` messages of partition 0 from the start.
fn consume_all(bootstrap: &str, topic: &str, count: usize) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count}",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a message");
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                message.key().map(<[u8]>::to_vec),
                message.payload().unwrap_or_default().to_vec(),
                headers,
            ));
        }
    }
    out
}

/// The codec bits of every stored batch of partition 0, read with a raw fetch.
fn stored_codecs(bootstrap: &str, topic: &str) -> Vec<i16> {
    let mut client = raw::Client::connect(bootstrap);
    let request = raw::fetch_request(topic, &[(0, 0, 1 << 20)], 100, 1, 1 << 20);
    let response: m::FetchResponse = client.call(ApiKey::Fetch, 11, &request);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let mut data: &[u8] = partition.records.as_deref().unwrap_or_default();
    let mut codecs = Vec::new();
    while !data.is_empty() {
        let header = shardlog::protocol::batch::parse_checked(data).expect("a valid batch");
        codecs.push(header.compression());
        data = &data[header.size..];
    }
    codecs
}

#[test]
fn a_zstd_topic_stores_uncompressed_produces_as_zstd_with_records_and_headers_intact() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let admin = admin(&broker.bootstrap);
    create(&admin, "zstd-topic", &[("compression.type", "zstd")]);
    let producer = producer(&broker.bootstrap);
    let count = 50;
    for i in 0..count {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some(format!("a-{i}").as_bytes()),
            })
            .insert(Header {
                key: "trace",
                value: Some(format!("b-{i}").as_bytes()),
            })
            .insert(Header {
                key: "other",
                value: Some(b"x"),
            });
        let key = format!("key-{i}");
        let payload = format!("value-{i}-").repeat(20);
        block_on(
            producer.send(
                FutureRecord::to("zstd-topic")
                    .key(&key)
                    .payload(&payload)
                    .headers(headers),
                TIMEOUT,
            ),
        )
        .expect("acknowledged");
    }
    let codecs = stored_codecs(&broker.bootstrap, "zstd-topic");
    assert!(!codecs.is_empty());
    assert!(codecs.iter().all(|&c| c == 4), "stored as zstd: {codecs:?}");
    let consumed = consume_all(&broker.bootstrap, "zstd-topic", count);
    for (i, (key, value, headers)) in consumed.into_iter().enumerate() {
        assert_eq!(key, Some(format!("key-{i}").into_bytes()));
        assert_eq!(value, format!("value-{i}-").repeat(20).into_bytes());
        assert_eq!(
            headers,
            [
                ("trace".to_string(), format!("a-{i}").into_bytes()),
                ("trace".to_string(), format!("b-{i}").into_bytes()),
                ("other".to_string(), b"x".to_vec()),
            ],
            "repeated header names kept in order"
        );
    }
    // Back to `producer`: later batches are stored as they come (uncompressed here).
    let alter = AlterConfig::new(ResourceSpecifier::Topic("zstd-topic"))
        .set("compression.type", "producer");
    block_on(admin.alter_configs([&alter], &AdminOptions::new())).unwrap()[0]
        .as_ref()
        .unwrap();
    eventually(TIMEOUT, "the new config applies", || {
        block_on(producer.send(
            FutureRecord::<(), _>::to("zstd-topic").payload("plain"),
            TIMEOUT,
        ))
        .unwrap();
        let codecs = stored_codecs(&broker.bootstrap, "zstd-topic");
        (codecs.last() == Some(&0)).then_some(())
    });
}

#[test]
fn create_time_outside_the_window_is_invalid_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let admin = admin(&broker.bootstrap);
    create(
        &admin,
        "windowed",
        &[
            ("message.timestamp.before.max.ms", "3600000"),
            ("message.timestamp.after.max.ms", "60000"),
        ],
    );
    create(
        &admin,
        "difference",
        &[("message.timestamp.difference.max.ms", "3600000")],
    );
    create(
        &admin,
        "appended",
        &[
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.before.max.ms", "1"),
        ],
    );
    let producer = producer(&broker.bootstrap);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let send = |topic: &str, timestamp: i64| {
        block_on(
            producer.send(
                FutureRecord::<(), _>::to(topic)
                    .payload("x")
                    .timestamp(timestamp),
                TIMEOUT,
            ),
        )
        .map(|_| ())
        .map_err(|(e, _)| e.rdkafka_error_code())
    };
    assert_eq!(send("windowed", now), Ok(()));
    assert_eq!(
        send("windowed", now - 2 * 3_600_000),
        Err(Some(RDKafkaErrorCode::InvalidTimestamp))
    );
    assert_eq!(
        send("windowed", now + 600_000),
        Err(Some(RDKafkaErrorCode::InvalidTimestamp))
    );
    assert_eq!(send("windowed", now + 1_000), Ok(()));
    assert_eq!(
        send("difference", now - 2 * 3_600_000),
        Err(Some(RDKafkaErrorCode::InvalidTimestamp))
    );
    assert_eq!(
        send("difference", now + 2 * 3_600_000),
        Err(Some(RDKafkaErrorCode::InvalidTimestamp))
    );
    assert_eq!(
        send("appended", now - 2 * 3_600_000),
        Ok(()),
        "not checked under LogAppendTime"
    );
}

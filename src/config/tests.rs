//! Broker config parsing, end to end from properties text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::broker::*;
use super::cluster::*;
use super::parse::*;
use super::topic::*;
use super::*;

fn parse(text: &str) -> (BrokerConfig, Vec<UnknownKey>) {
    match BrokerConfig::from_properties(text, &[]) {
        Ok(parsed) => parsed,
        Err(error) => panic!("unexpected error: {error}"),
    }
}

fn parse_error(text: &str) -> ConfigError {
    match BrokerConfig::from_properties(text, &[]) {
        Ok(_) => panic!("expected {text:?} to be rejected"),
        Err(error) => error,
    }
}

fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn assert_invalid(text: &str, expected_key: &str, expected_value: &str) {
    match parse_error(text) {
        ConfigError::Invalid { key, value, .. } => {
            assert_eq!(key, expected_key, "for {text:?}");
            assert_eq!(value, expected_value, "for {text:?}");
        }
        other => panic!("expected Invalid for {text:?}, got {other:?}"),
    }
}

fn listener(name: &str, host: &str, port: u16) -> Listener {
    Listener {
        name: name.to_string(),
        host: host.to_string(),
        port,
    }
}

fn voter(id: i32, host: &str, port: u16) -> QuorumVoter {
    QuorumVoter {
        id,
        host: host.to_string(),
        port,
    }
}

#[test]
fn embedded_default() {
    let config = BrokerConfig::default();
    assert_eq!(config.broker_id, 0);
    assert_eq!(
        config.listeners,
        vec![listener("PLAINTEXT", "127.0.0.1", 9092)]
    );
    assert_eq!(config.advertised_listeners, config.listeners);
    assert_eq!(config.data_dir(), Path::new("./data"));
    assert!(config.auto_create_topics_enable);
    assert!(config.delete_topic_enable);
    assert_eq!(config.num_partitions, 1);
    assert_eq!(config.message_max_bytes, 1_048_588);
    assert_eq!(config.topic_defaults, TopicConfig::default());
    assert!((1..=MAX_SHARDS).contains(&config.num_shards));
    assert_eq!(config.shard_io_memory_bytes, 2_097_152);
    assert_eq!(config.batch_cache_bytes, 268_435_456);
    assert_eq!(config.fetch_session_cache_slots, 1_000);
    assert_eq!(config.fetch_session_eviction_ms, 120_000);
    assert_eq!(
        config.metrics_listener,
        Some("127.0.0.1:9644".parse().expect("valid address"))
    );
    assert_eq!(config.cluster_id, "shardlog-cluster");

    let (loaded, unknown) = match BrokerConfig::load(None, &[]) {
        Ok(loaded) => loaded,
        Err(error) => panic!("unexpected error: {error}"),
    };
    assert!(unknown.is_empty());
    assert_eq!(loaded, config);
}

#[test]
fn topic_defaults_match_kafka() {
    let topic = TopicConfig::default();
    assert_eq!(topic.segment_bytes, 1_073_741_824);
    assert_eq!(topic.segment_ms, 604_800_000);
    assert_eq!(topic.retention_ms, 604_800_000);
    assert_eq!(topic.retention_bytes, -1);
    assert_eq!(topic.index_interval_bytes, 4096);
    assert_eq!(topic.cleanup_policy, CleanupPolicy::DELETE);
    assert_eq!(topic.flush_messages, None);
}

#[test]
fn seed_three_broker_lines() {
    let (config, unknown) =
        parse("broker.id=1\nlisteners=PLAINTEXT://:9093\nlog.dir=/tmp/kafka-logs-1\n");
    assert!(unknown.is_empty());
    assert_eq!(config.broker_id, 1);
    assert_eq!(config.listeners, vec![listener("PLAINTEXT", "", 9093)]);
    assert_eq!(
        config.advertised_listeners,
        vec![listener("PLAINTEXT", "localhost", 9093)]
    );
    assert_eq!(config.data_dir(), Path::new("/tmp/kafka-logs-1"));
    assert_eq!(config.listeners[0].bind_address(), "0.0.0.0:9093");
}

#[test]
fn comments_blank_lines_and_colon_separator() {
    let text = "\u{feff}# a comment\n\n   ! another comment\n  num.partitions : 3  \n\
                auto.create.topics.enable=FALSE\r\ncluster.id = my cluster \n";
    let (config, unknown) = parse(text);
    assert!(unknown.is_empty());
    assert_eq!(config.num_partitions, 3);
    assert!(!config.auto_create_topics_enable);
    assert_eq!(config.cluster_id, "my cluster");
    assert_eq!(config.explicit_keys["num.partitions"], "3");
}

#[test]
fn line_continuation_and_escapes() {
    let text = "log.dirs=/data/one,\\\n    /data/two\nprocess.roles=broker\\u002c\\\ncontroller\n\
                cluster.id=back\\\\slash\nnum.partitions=2\n";
    let (config, unknown) = parse(text);
    assert!(unknown.is_empty());
    assert_eq!(
        config.log_dirs,
        vec![PathBuf::from("/data/one"), PathBuf::from("/data/two")]
    );
    assert_eq!(config.process_roles, ProcessRoles::Combined);
    assert_eq!(config.cluster_id, "back\\slash");
    assert_eq!(config.num_partitions, 2);
}

#[test]
fn syntax_errors_name_the_line() {
    for (text, expected_line) in [
        ("num.partitions=1\njust-a-key\n", 2),
        ("\n\nlisteners PLAINTEXT://:9092\n", 3),
        ("=value\n", 1),
        ("cluster.id=\\u12\n", 1),
    ] {
        match parse_error(text) {
            ConfigError::Syntax { line, .. } => assert_eq!(line, expected_line, "for {text:?}"),
            other => panic!("expected Syntax for {text:?}, got {other:?}"),
        }
    }
    let message = parse_error("oops\n").to_string();
    assert_eq!(message, "line 1: cannot parse \"oops\": expected key=value");
}

#[test]
fn overrides_win_over_file() {
    let text = "num.partitions=3\nbroker.id=1\n";
    let (config, _) = match BrokerConfig::from_properties(
        text,
        &overrides(&[("num.partitions", "8"), ("log.dirs", "/var/shardlog")]),
    ) {
        Ok(parsed) => parsed,
        Err(error) => panic!("unexpected error: {error}"),
    };
    assert_eq!(config.num_partitions, 8);
    assert_eq!(config.broker_id, 1);
    assert_eq!(config.data_dir(), Path::new("/var/shardlog"));
    assert_eq!(config.explicit_keys["num.partitions"], "8");
}

#[test]
fn later_duplicate_wins() {
    let (config, _) = parse("num.partitions=3\nnum.partitions=4\n");
    assert_eq!(config.num_partitions, 4);
}

#[test]
fn retention_precedence() {
    let (config, _) = parse("log.retention.hours=1\nlog.retention.minutes=2\nlog.retention.ms=3\n");
    assert_eq!(config.topic_defaults.retention_ms, 3);
    let (config, _) = parse("log.retention.hours=1\nlog.retention.minutes=2\n");
    assert_eq!(config.topic_defaults.retention_ms, 120_000);
    let (config, _) = parse("log.retention.hours=24\n");
    assert_eq!(config.topic_defaults.retention_ms, 86_400_000);
    let (config, _) = parse("log.retention.hours=-1\n");
    assert_eq!(config.topic_defaults.retention_ms, -1);
    let (config, _) = parse("log.retention.ms=-1\n");
    assert_eq!(config.topic_defaults.retention_ms, -1);
    assert_invalid("log.retention.hours=-2\n", "log.retention.hours", "-2");
    assert_invalid("log.retention.ms=-5\n", "log.retention.ms", "-5");
    // A broken lower-precedence key is still an error, as in Kafka.
    assert_invalid(
        "log.retention.ms=1\nlog.retention.hours=x\n",
        "log.retention.hours",
        "x",
    );
}

#[test]
fn roll_hours_and_ms() {
    let (config, _) = parse("log.roll.hours=2\n");
    assert_eq!(config.topic_defaults.segment_ms, 7_200_000);
    let (config, _) = parse("log.roll.hours=2\nlog.roll.ms=500\n");
    assert_eq!(config.topic_defaults.segment_ms, 500);
    assert_invalid("log.roll.hours=0\n", "log.roll.hours", "0");
}

#[test]
fn broker_log_keys_feed_topic_defaults() {
    let (config, unknown) = parse(
        "log.segment.bytes=1048576\nlog.retention.bytes=1000\nmessage.max.bytes=2000000\n\
         log.message.timestamp.type=LogAppendTime\nlog.cleanup.policy=delete, compact\n\
         log.flush.interval.messages=100\nlog.flush.interval.ms=9223372036854775807\n\
         log.index.interval.bytes=8192\nlog.cleaner.delete.retention.ms=10\n\
         log.cleaner.min.compaction.lag.ms=20\nlog.cleaner.min.cleanable.ratio=0.25\n",
    );
    assert!(unknown.is_empty());
    let topic = &config.topic_defaults;
    assert_eq!(topic.segment_bytes, 1_048_576);
    assert_eq!(topic.retention_bytes, 1000);
    assert_eq!(topic.max_message_bytes, 2_000_000);
    assert_eq!(config.message_max_bytes, 2_000_000);
    assert_eq!(topic.timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(
        topic.cleanup_policy,
        CleanupPolicy {
            delete: true,
            compact: true
        }
    );
    assert_eq!(topic.flush_messages, Some(100));
    assert_eq!(topic.flush_ms, None);
    assert_eq!(topic.index_interval_bytes, 8192);
    assert_eq!(topic.delete_retention_ms, 10);
    assert_eq!(topic.min_compaction_lag_ms, 20);
    assert_eq!(topic.min_cleanable_dirty_ratio, 0.25);
}

#[test]
fn unknown_keys_reported_with_line() {
    let text = "broker.id=1\nshard.pinnning=false\n# comment\nfoo.bar=1\n";
    let (_, unknown) =
        match BrokerConfig::from_properties(text, &overrides(&[("also.unknown", "x")])) {
            Ok(parsed) => parsed,
            Err(error) => panic!("unexpected error: {error}"),
        };
    assert_eq!(
        unknown,
        vec![
            UnknownKey {
                key: "shard.pinnning".to_string(),
                line: Some(2)
            },
            UnknownKey {
                key: "foo.bar".to_string(),
                line: Some(4)
            },
            UnknownKey {
                key: "also.unknown".to_string(),
                line: None
            },
        ]
    );
}

#[test]
fn ignored_kafka_keys_not_reported() {
    let text: String = IGNORED_KAFKA_KEYS
        .iter()
        .map(|key| format!("{key}=whatever\n"))
        .collect();
    let (config, unknown) = parse(&text);
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(config.explicit_keys.len(), IGNORED_KAFKA_KEYS.len());
}

#[test]
fn kafka_sample_server_properties() {
    let text = "\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
#log.flush.interval.messages=10000
#log.flush.interval.ms=1000
log.retention.hours=168
#log.retention.bytes=1073741824
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
";
    let (config, unknown) = parse(text);
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(config.broker_id, 1);
    assert_eq!(config.process_roles, ProcessRoles::Combined);
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(
        config.advertised_listeners[1],
        listener("CONTROLLER", "localhost", 9093)
    );
    assert_eq!(config.controller_listener_names, ["CONTROLLER"]);
    assert_eq!(
        config.controller_listener(),
        &listener("CONTROLLER", "", 9093)
    );
    assert_eq!(config.client_listener(), &listener("PLAINTEXT", "", 9092));
    assert_eq!(config.quorum_voters(), [voter(1, "localhost", 9093)]);
    assert_eq!(config.data_dir(), Path::new("/tmp/kraft-combined-logs"));
    assert_eq!(config.topic_defaults.flush_messages, None);
}

#[test]
fn parsed_extra_broker_keys() {
    let (config, unknown) = parse(
        "min.insync.replicas=2\noffsets.topic.num.partitions=10\n\
         offsets.retention.minutes=60\ngroup.min.session.timeout.ms=100\n\
         group.max.session.timeout.ms=200\nmetrics.listener=0.0.0.0:9100\n\
         process.roles=broker\ncontroller.quorum.voters=1@localhost:9093\n\
         num.shards= 4 \nshard.pinning=False\n\
         shard.io.memory.bytes=65536\nbatch.cache.bytes=0\nfetch.read.ahead.bytes=0\n\
         max.incremental.fetch.session.cache.slots=10\n\
         min.incremental.fetch.session.eviction.ms=500\n\
         default.replication.factor=3\ndelete.topic.enable=false\n\
         log.retention.check.interval.ms=1000\nsocket.request.max.bytes=1024\n",
    );
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(config.min_insync_replicas, 2);
    assert_eq!(config.offsets_topic_num_partitions, 10);
    assert_eq!(config.offsets_retention_minutes, 60);
    assert_eq!(config.group_min_session_timeout_ms, 100);
    assert_eq!(config.group_max_session_timeout_ms, 200);
    assert_eq!(
        config.metrics_listener,
        Some("0.0.0.0:9100".parse().expect("valid address"))
    );
    assert_eq!(config.process_roles, ProcessRoles::Broker);
    assert_eq!(
        config.controller_quorum_voters,
        [voter(1, "localhost", 9093)]
    );
    assert_eq!(config.num_shards, 4);
    assert!(!config.shard_pinning);
    assert_eq!(config.shard_io_memory_bytes, 65536);
    assert_eq!(config.batch_cache_bytes, 0);
    assert_eq!(config.fetch_read_ahead_bytes, 0);
    assert_eq!(config.fetch_session_cache_slots, 10);
    assert_eq!(config.fetch_session_eviction_ms, 500);
    assert_eq!(
        config.fetch_session_slots_per_shard(),
        3,
        "10 over 4 shards"
    );
    assert_eq!(config.default_replication_factor, 3);
    assert!(!config.delete_topic_enable);
    assert_eq!(config.log_retention_check_interval_ms, 1000);
    assert_eq!(config.socket_request_max_bytes, 1024);

    for disabled in ["", "none", "NONE"] {
        let (config, _) = parse(&format!("metrics.listener={disabled}\n"));
        assert_eq!(config.metrics_listener, None);
    }
    let (config, _) = parse("metrics.listener=localhost:9700\n");
    assert_eq!(
        config.metrics_listener,
        Some("127.0.0.1:9700".parse().expect("valid address"))
    );
}

#[test]
fn node_id_is_an_alias_for_broker_id() {
    let (config, _) = parse("node.id=7\n");
    assert_eq!(config.broker_id, 7);
    assert!(config.explicit_keys.contains_key("node.id"));
    assert!(!config.explicit_keys.contains_key("broker.id"));
    let (config, _) = parse("node.id=7\nbroker.id=7\n");
    assert_eq!(config.broker_id, 7);
    assert_invalid("node.id=7\nbroker.id=8\n", "broker.id", "8");
}

#[test]
fn invalid_values_name_key_and_value() {
    let cases = [
        ("num.shards=abc", "num.shards", "abc"),
        ("num.shards=0", "num.shards", "0"),
        (
            "max.incremental.fetch.session.cache.slots=-1",
            "max.incremental.fetch.session.cache.slots",
            "-1",
        ),
        (
            "min.incremental.fetch.session.eviction.ms=soon",
            "min.incremental.fetch.session.eviction.ms",
            "soon",
        ),
        ("num.shards=1025", "num.shards", "1025"),
        ("broker.id=-1", "broker.id", "-1"),
        ("num.partitions=0", "num.partitions", "0"),
        (
            "default.replication.factor=40000",
            "default.replication.factor",
            "40000",
        ),
        (
            "auto.create.topics.enable=yes",
            "auto.create.topics.enable",
            "yes",
        ),
        ("shard.pinning=1", "shard.pinning", "1"),
        ("log.segment.bytes=13", "log.segment.bytes", "13"),
        (
            "log.segment.bytes=2147483648",
            "log.segment.bytes",
            "2147483648",
        ),
        ("message.max.bytes=-1", "message.max.bytes", "-1"),
        ("log.cleanup.policy=remove", "log.cleanup.policy", "remove"),
        ("log.cleanup.policy=", "log.cleanup.policy", ""),
        (
            "log.message.timestamp.type=Now",
            "log.message.timestamp.type",
            "Now",
        ),
        (
            "log.cleaner.min.cleanable.ratio=1.5",
            "log.cleaner.min.cleanable.ratio",
            "1.5",
        ),
        (
            "log.cleaner.min.cleanable.ratio=NaN",
            "log.cleaner.min.cleanable.ratio",
            "NaN",
        ),
        (
            "log.flush.interval.messages=0",
            "log.flush.interval.messages",
            "0",
        ),
        (
            "shard.io.memory.bytes=1024",
            "shard.io.memory.bytes",
            "1024",
        ),
        (
            "log.retention.check.interval.ms=0",
            "log.retention.check.interval.ms",
            "0",
        ),
        (
            "metrics.listener=somewhere",
            "metrics.listener",
            "somewhere",
        ),
        ("log.dirs= , ", "log.dirs", ","),
        ("cluster.id=", "cluster.id", ""),
        ("listeners=", "listeners", ""),
        ("listeners=127.0.0.1:9092", "listeners", "127.0.0.1:9092"),
        (
            "listeners=PLAINTEXT://host",
            "listeners",
            "PLAINTEXT://host",
        ),
        (
            "listeners=PLAINTEXT://:99999",
            "listeners",
            "PLAINTEXT://:99999",
        ),
        (
            "listeners=PLAINTEXT://::1:9092",
            "listeners",
            "PLAINTEXT://::1:9092",
        ),
        (
            "listeners=PLAINTEXT://[nope]:9092",
            "listeners",
            "PLAINTEXT://[nope]:9092",
        ),
        ("listeners=://:9092", "listeners", "://:9092"),
    ];
    for (text, key, value) in cases {
        assert_invalid(text, key, value);
    }
}

#[test]
fn invalid_message_format() {
    let error = parse_error("num.shards=abc\n");
    assert_eq!(
        error.to_string(),
        "invalid value \"abc\" for num.shards: expected an integer between 1 and 1024"
    );
    let error = parse_error("listeners=PLAINTEXT:/x\n");
    assert_eq!(
        error.to_string(),
        "invalid value \"PLAINTEXT:/x\" for listeners: \
         expected NAME://host:port, e.g. PLAINTEXT://127.0.0.1:9092"
    );
}

#[test]
fn listener_forms() {
    let (config, _) =
        parse("listeners=plaintext://[::1]:9092, INTERNAL://broker-1.example.com:9093,\n");
    assert_eq!(
        config.listeners,
        vec![
            listener("PLAINTEXT", "::1", 9092),
            listener("INTERNAL", "broker-1.example.com", 9093),
        ]
    );
    assert_eq!(config.listeners[0].bind_address(), "[::1]:9092");
    assert_eq!(config.listeners[0].to_string(), "PLAINTEXT://[::1]:9092");
    assert_eq!(config.advertised_listeners, config.listeners);

    let (config, _) = parse("listeners=PLAINTEXT://0.0.0.0:9092\n");
    assert_eq!(
        config.advertised_listeners,
        vec![listener("PLAINTEXT", "localhost", 9092)]
    );
}

#[test]
fn listener_cross_checks() {
    let text = "listeners=PLAINTEXT://:9092,INTERNAL://127.0.0.1:9092\n";
    assert_invalid(
        text,
        "listeners",
        "PLAINTEXT://:9092,INTERNAL://127.0.0.1:9092",
    );
    let text = "listeners=PLAINTEXT://:9092,PLAINTEXT://:9093\n";
    assert_invalid(text, "listeners", "PLAINTEXT://:9092,PLAINTEXT://:9093");
    let (config, _) = parse("listeners=A://:0,B://:0\n");
    assert_eq!(config.listeners.len(), 2);

    let text = "listeners=PLAINTEXT://:9092\nadvertised.listeners=OTHER://host:9092\n";
    assert_invalid(text, "advertised.listeners", "OTHER://host:9092");
    let text = "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://0.0.0.0:9092\n";
    assert_invalid(text, "advertised.listeners", "PLAINTEXT://0.0.0.0:9092");
    let (config, _) = parse(
        "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://kafka.example.com:19092\n",
    );
    assert_eq!(
        config.advertised_listeners,
        vec![listener("PLAINTEXT", "kafka.example.com", 19092)]
    );

    assert_invalid(
        "listeners=PLAINTEXT://:9092,OTHER://:9700\nmetrics.listener=127.0.0.1:9700\n",
        "metrics.listener",
        "127.0.0.1:9700",
    );
    let (config, _) = parse("listeners=PLAINTEXT://:9092,OTHER://:9700\nmetrics.listener=none\n");
    assert_eq!(config.metrics_listener, None);
    let (config, _) = parse("listeners=PLAINTEXT://10.0.0.1:9092,OTHER://10.0.0.2:9644\n");
    assert_eq!(config.metrics_listener, Some(metrics_address(9644)));

    assert_invalid(
        "group.min.session.timeout.ms=5000\ngroup.max.session.timeout.ms=4000\n",
        "group.min.session.timeout.ms",
        "5000",
    );
}

#[test]
fn load_reports_missing_file() {
    let path = Path::new("/nonexistent/shardlog/server.properties");
    match BrokerConfig::load(Some(path), &[]) {
        Err(ConfigError::Io { path: reported, .. }) => assert_eq!(reported, path),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn topic_overrides() {
    let defaults = TopicConfig::default();
    let topic = match TopicConfig::with_overrides(
        &defaults,
        [
            ("retention.ms", "-1"),
            ("segment.bytes", " 1048576 "),
            ("cleanup.policy", "compact"),
            ("flush.messages", "1"),
            ("flush.ms", "0"),
            ("min.cleanable.dirty.ratio", "1"),
            ("message.timestamp.type", "LogAppendTime"),
        ],
    ) {
        Ok(topic) => topic,
        Err(error) => panic!("unexpected error: {error}"),
    };
    assert_eq!(topic.retention_ms, -1);
    assert_eq!(topic.segment_bytes, 1_048_576);
    assert_eq!(
        topic.cleanup_policy,
        CleanupPolicy {
            delete: false,
            compact: true
        }
    );
    assert_eq!(topic.flush_messages, Some(1));
    assert_eq!(topic.flush_ms, Some(0));
    assert_eq!(topic.min_cleanable_dirty_ratio, 1.0);
    assert_eq!(topic.timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(topic.index_interval_bytes, defaults.index_interval_bytes);

    match TopicConfig::with_overrides(&defaults, [("retention.ms", "-2")]) {
        Err(ConfigError::Invalid { key, value, .. }) => {
            assert_eq!(key, "retention.ms");
            assert_eq!(value, "-2");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    match TopicConfig::with_overrides(&defaults, [("segment.bytes", "big")]) {
        Err(ConfigError::Invalid { key, value, .. }) => {
            assert_eq!(key, "segment.bytes");
            assert_eq!(value, "big");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    match TopicConfig::with_overrides(&defaults, [("retention.hours", "1")]) {
        Err(ConfigError::Invalid { key, expected, .. }) => {
            assert_eq!(key, "retention.hours");
            assert_eq!(expected, "a known topic config");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn describe_sources_and_values() {
    let (broker, _) = parse("log.retention.hours=24\nlog.segment.bytes=1048576\n");
    let topic_overrides: BTreeMap<String, String> =
        [("segment.bytes".to_string(), "2097152".to_string())].into();
    let topic = match TopicConfig::with_overrides(
        &broker.topic_defaults,
        topic_overrides
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    ) {
        Ok(topic) => topic,
        Err(error) => panic!("unexpected error: {error}"),
    };
    let described = topic.describe(&topic_overrides, &broker);
    assert_eq!(described.len(), TopicConfig::keys().count());
    let find = |name: &str| match described.iter().find(|entry| entry.name == name) {
        Some(entry) => entry.clone(),
        None => panic!("{name} not described"),
    };

    let segment = find("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("2097152"));
    assert_eq!(segment.source, ConfigSource::TopicOverride);
    assert_eq!(segment.source.kafka_code(), 1);

    let retention = find("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    assert_eq!(retention.source, ConfigSource::StaticBroker);
    assert_eq!(retention.source.kafka_code(), 4);

    let cleanup = find("cleanup.policy");
    assert_eq!(cleanup.value.as_deref(), Some("delete"));
    assert_eq!(cleanup.source, ConfigSource::Default);
    assert_eq!(cleanup.source.kafka_code(), 5);

    assert_eq!(
        find("flush.messages").value.as_deref(),
        Some("9223372036854775807")
    );
    assert_eq!(
        find("flush.ms").value.as_deref(),
        Some("9223372036854775807")
    );
    assert_eq!(
        find("message.timestamp.type").value.as_deref(),
        Some("CreateTime")
    );
    assert_eq!(
        find("min.cleanable.dirty.ratio").value.as_deref(),
        Some("0.5")
    );
    assert_eq!(find("retention.bytes").value.as_deref(), Some("-1"));
    assert!(described
        .iter()
        .all(|entry| !entry.read_only && !entry.sensitive));

    let compacting = TopicConfig {
        cleanup_policy: CleanupPolicy {
            delete: true,
            compact: true,
        },
        min_cleanable_dirty_ratio: 1.0,
        ..TopicConfig::default()
    };
    let described = compacting.describe(&BTreeMap::new(), &BrokerConfig::default());
    let value_of = |name: &str| {
        described
            .iter()
            .find(|entry| entry.name == name)
            .and_then(|entry| entry.value.clone())
    };
    assert_eq!(
        value_of("cleanup.policy").as_deref(),
        Some("compact,delete")
    );
    assert_eq!(
        value_of("min.cleanable.dirty.ratio").as_deref(),
        Some("1.0")
    );
}

#[test]
fn override_arguments() {
    match parse_override("num.shards=4") {
        Ok(pair) => assert_eq!(pair, ("num.shards".to_string(), "4".to_string())),
        Err(error) => panic!("unexpected error: {error}"),
    }
    match parse_override(" listeners = PLAINTEXT://:9093 ") {
        Ok(pair) => assert_eq!(
            pair,
            ("listeners".to_string(), "PLAINTEXT://:9093".to_string())
        ),
        Err(error) => panic!("unexpected error: {error}"),
    }
    match parse_override("cluster.id=") {
        Ok(pair) => assert_eq!(pair, ("cluster.id".to_string(), String::new())),
        Err(error) => panic!("unexpected error: {error}"),
    }
    assert!(matches!(
        parse_override("num.shards"),
        Err(ConfigError::Invalid { .. })
    ));
    assert!(matches!(
        parse_override("=4"),
        Err(ConfigError::Invalid { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Cluster keys: roles, voters, controller listener, timings, rack; their cross-checks.

fn invalid_parts(error: ConfigError) -> (String, String) {
    match error {
        ConfigError::Invalid { key, value, .. } => (key, value),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// A cross-check refusal: the key it names, and words the message must contain.
fn assert_conflict(text: &str, expected_key: &str, expected_words: &[&str]) {
    let error = parse_error(text);
    let message = error.to_string();
    match error {
        ConfigError::Conflict { key, .. } => assert_eq!(key, expected_key, "for {text:?}"),
        other => panic!("expected Conflict for {text:?}, got {other:?}"),
    }
    assert!(
        message.starts_with(&format!("{expected_key}: ")),
        "{message}"
    );
    for word in expected_words {
        assert!(message.contains(word), "{word:?} not in {message:?}");
    }
}

fn metrics_address(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn cluster_defaults() {
    let config = BrokerConfig::default();
    assert_eq!(config.process_roles, ProcessRoles::Combined);
    assert!(config.process_roles.is_broker() && config.process_roles.is_controller());
    assert!(config.controller_quorum_voters.is_empty());
    assert!(config.controller_listener_names.is_empty());
    assert_eq!(config.broker_heartbeat_interval_ms, 250);
    assert_eq!(config.broker_session_timeout_ms, 1500);
    assert_eq!(config.controller_quorum_election_timeout_ms, 1000);
    assert_eq!(config.controller_quorum_heartbeat_interval_ms, 100);
    assert_eq!(config.broker_rack, None);
    assert!(!IGNORED_KAFKA_KEYS.contains(&"controller.listener.names"));
}

#[test]
fn process_roles_in_any_order_spacing_and_case() {
    for (value, roles) in [
        ("broker", ProcessRoles::Broker),
        ("BROKER", ProcessRoles::Broker),
        ("controller", ProcessRoles::Controller),
        ("broker,controller", ProcessRoles::Combined),
        (" Controller , broker ", ProcessRoles::Combined),
        ("controller,broker,", ProcessRoles::Combined),
    ] {
        assert_eq!(parse_process_roles(value).unwrap(), roles, "{value:?}");
    }
    assert_eq!(ProcessRoles::Broker.to_string(), "broker");
    assert!(!ProcessRoles::Broker.is_controller());
    assert!(!ProcessRoles::Controller.is_broker());

    let (config, _) =
        parse("process.roles=controller\ncontroller.quorum.voters=0@localhost:9092\n");
    assert_eq!(config.process_roles, ProcessRoles::Controller);

    for value in [
        "",
        " , ",
        "zookeeper",
        "broker;controller",
        "broker,broker",
        "brokers",
    ] {
        let error = parse_error(&format!("process.roles={value}\n"));
        let message = error.to_string();
        assert_eq!(
            invalid_parts(error),
            ("process.roles".to_string(), value.trim().to_string())
        );
        assert!(
            message.contains("broker, controller, or broker,controller"),
            "{message}"
        );
    }
}

#[test]
fn quorum_voters_parse() {
    let voters = parse_quorum_voters(
        "0@localhost:9092, 1@10.0.0.2:9093,2@[::1]:9094,3@broker-3.example.com:65535",
    )
    .unwrap();
    assert_eq!(
        voters,
        [
            voter(0, "localhost", 9092),
            voter(1, "10.0.0.2", 9093),
            voter(2, "::1", 9094),
            voter(3, "broker-3.example.com", 65535),
        ]
    );
    assert_eq!(voters[0].address(), "localhost:9092");
    assert_eq!(voters[2].address(), "[::1]:9094");
    assert_eq!(voters[2].to_string(), "2@[::1]:9094");
    assert!(parse_quorum_voters("").unwrap().is_empty());
    assert!(parse_quorum_voters(" , ").unwrap().is_empty());

    // What is wrong with one entry names that entry; a clash between two names the list.
    for (value, reported) in [
        ("localhost:9092", "localhost:9092"),
        ("0-localhost:9092", "0-localhost:9092"),
        ("x@localhost:9092", "x@localhost:9092"),
        ("-1@localhost:9092", "-1@localhost:9092"),
        ("2147483648@localhost:9092", "2147483648@localhost:9092"),
        ("0@localhost", "0@localhost"),
        ("0@localhost:0", "0@localhost:0"),
        ("0@localhost:65536", "0@localhost:65536"),
        ("0@localhost:port", "0@localhost:port"),
        ("0@::1:9092", "0@::1:9092"),
        ("0@[nope]:9092", "0@[nope]:9092"),
        ("0@[::1]9092", "0@[::1]9092"),
        ("0@:9092", "0@:9092"),
        ("0@0.0.0.0:9092", "0@0.0.0.0:9092"),
        ("0@[::]:9092", "0@[::]:9092"),
        ("0@local/host:9092", "0@local/host:9092"),
        (
            "0@localhost:9092,1@localhost:9093,0@other:9094",
            "0@localhost:9092,1@localhost:9093,0@other:9094",
        ),
        (
            "0@localhost:9092,1@localhost:9092",
            "0@localhost:9092,1@localhost:9092",
        ),
    ] {
        let error = match parse_quorum_voters(value) {
            Ok(voters) => panic!("{value:?} parsed as {voters:?}"),
            Err(error) => error,
        };
        assert_eq!(
            invalid_parts(error),
            ("controller.quorum.voters".to_string(), reported.to_string()),
            "{value:?}"
        );
    }
    let message = parse_quorum_voters("0@a:1,0@b:2").unwrap_err().to_string();
    assert!(message.contains("node 0 appears twice"), "{message}");

    // Through the whole file, as the broker reads it.
    let (config, _) =
        parse("controller.quorum.voters=0@localhost:9092,1@[fe80::1]:9093,2@host-2:9094\n");
    assert_eq!(config.controller_quorum_voters.len(), 3);
    assert_eq!(
        config.controller_quorum_voters[1],
        voter(1, "fe80::1", 9093)
    );
    assert_eq!(config.quorum_voters(), config.controller_quorum_voters);
    let (config, _) = parse("controller.quorum.voters=\n");
    assert!(config.controller_quorum_voters.is_empty());
    assert_invalid(
        "controller.quorum.voters=0@localhost:9092,one@localhost:9093\n",
        "controller.quorum.voters",
        "one@localhost:9093",
    );
}

#[test]
fn without_voters_the_quorum_is_this_node_alone() {
    assert_eq!(
        BrokerConfig::default().quorum_voters(),
        [voter(0, "127.0.0.1", 9092)]
    );
    let (config, _) = parse("broker.id=4\nlisteners=PLAINTEXT://:9093\n");
    assert_eq!(config.quorum_voters(), [voter(4, "localhost", 9093)]);
    let (config, _) = parse(
        "node.id=5\nlisteners=PLAINTEXT://0.0.0.0:9093,OTHER://[::1]:9094\n\
         advertised.listeners=PLAINTEXT://kafka.example.com:19093\n",
    );
    assert_eq!(
        config.quorum_voters(),
        [voter(5, "kafka.example.com", 9093)]
    );
    let (config, _) = parse(
        "listeners=PLAINTEXT://[::1]:9092,CONTROLLER://[::1]:9093\n\
         controller.listener.names=CONTROLLER\n",
    );
    let voters = config.quorum_voters();
    assert_eq!(voters, [voter(0, "::1", 9093)]);
    assert_eq!(voters[0].address(), "[::1]:9093");
    let (config, _) = parse("listeners=PLAINTEXT://127.0.0.1:0\n");
    assert_eq!(config.quorum_voters(), [voter(0, "127.0.0.1", 0)]);
}

#[test]
fn empty_listener_host_listens_everywhere_and_advertises_localhost() {
    let (config, _) = parse("listeners=PLAINTEXT://:9093\n");
    assert_eq!(config.listeners, [listener("PLAINTEXT", "", 9093)]);
    assert_eq!(config.listeners[0].bind_address(), "0.0.0.0:9093");
    assert_eq!(
        config.advertised_listeners,
        [listener("PLAINTEXT", "localhost", 9093)]
    );
    assert_eq!(config.quorum_voters()[0].address(), "localhost:9093");
    let (config, _) = parse("listeners=PLAINTEXT://[::]:9093\n");
    assert_eq!(config.listeners[0].bind_address(), "[::]:9093");
    assert_eq!(
        config.advertised_listeners,
        [listener("PLAINTEXT", "localhost", 9093)]
    );
}

#[test]
fn controller_and_client_listeners() {
    let two = "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n";
    let (config, _) = parse(two);
    assert_eq!(
        config.controller_listener(),
        &listener("PLAINTEXT", "", 9092)
    );
    assert_eq!(config.client_listener(), &listener("PLAINTEXT", "", 9092));

    let (config, unknown) = parse(&format!("{two}controller.listener.names= controller \n"));
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(config.controller_listener_names, ["CONTROLLER"]);
    assert_eq!(
        config.controller_listener(),
        &listener("CONTROLLER", "", 9093)
    );
    assert_eq!(config.client_listener(), &listener("PLAINTEXT", "", 9092));

    let (config, _) = parse(&format!(
        "{two}controller.listener.names=CONTROLLER,plaintext\n"
    ));
    assert_eq!(
        config.controller_listener_names,
        ["CONTROLLER", "PLAINTEXT"]
    );
    assert_eq!(
        config.controller_listener(),
        &listener("CONTROLLER", "", 9093)
    );
    assert_eq!(
        config.client_listener(),
        &listener("PLAINTEXT", "", 9092),
        "every listener is a controller listener: the first serves clients too"
    );
    let (config, _) = parse(&format!("{two}controller.listener.names=\n"));
    assert!(config.controller_listener_names.is_empty());

    let error = parse_error(&format!(
        "{two}controller.listener.names=CONTROLLER,OTHER\n"
    ));
    let message = error.to_string();
    assert_eq!(
        invalid_parts(error),
        (
            "controller.listener.names".to_string(),
            "CONTROLLER,OTHER".to_string()
        )
    );
    assert!(message.contains("OTHER is not among them"), "{message}");
    assert_invalid(
        &format!("{two}controller.listener.names=CONTROLLER,controller\n"),
        "controller.listener.names",
        "CONTROLLER,controller",
    );
}

#[test]
fn broker_lease_and_raft_timings() {
    let (config, _) = parse(
        "broker.heartbeat.interval.ms=100\nbroker.session.timeout.ms=200\n\
         controller.quorum.election.timeout.ms=300\ncontroller.quorum.heartbeat.interval.ms=149\n",
    );
    assert_eq!(config.broker_heartbeat_interval_ms, 100);
    assert_eq!(config.broker_session_timeout_ms, 200);
    assert_eq!(config.controller_quorum_election_timeout_ms, 300);
    assert_eq!(config.controller_quorum_heartbeat_interval_ms, 149);

    for (key, value) in [
        ("broker.heartbeat.interval.ms", "9"),
        ("broker.heartbeat.interval.ms", "60001"),
        ("broker.heartbeat.interval.ms", "soon"),
        ("broker.session.timeout.ms", "99"),
        ("broker.session.timeout.ms", "600001"),
        ("controller.quorum.election.timeout.ms", "99"),
        ("controller.quorum.election.timeout.ms", "60001"),
        ("controller.quorum.heartbeat.interval.ms", "9"),
        ("controller.quorum.heartbeat.interval.ms", "10001"),
    ] {
        assert_invalid(&format!("{key}={value}\n"), key, value);
    }

    let message =
        parse_error("broker.heartbeat.interval.ms=1000\nbroker.session.timeout.ms=1999\n")
            .to_string();
    assert!(
        message.contains("broker.session.timeout.ms")
            && message.contains("at least twice broker.heartbeat.interval.ms (1000)"),
        "{message}"
    );
    assert_invalid(
        "broker.heartbeat.interval.ms=1000\nbroker.session.timeout.ms=1999\n",
        "broker.session.timeout.ms",
        "1999",
    );
    parse("broker.heartbeat.interval.ms=1000\nbroker.session.timeout.ms=2000\n");
    assert_invalid(
        "broker.heartbeat.interval.ms=800\n",
        "broker.session.timeout.ms",
        "1500",
    );

    assert_invalid(
        "controller.quorum.election.timeout.ms=1000\ncontroller.quorum.heartbeat.interval.ms=500\n",
        "controller.quorum.heartbeat.interval.ms",
        "500",
    );
    assert_invalid(
        "controller.quorum.election.timeout.ms=200\n",
        "controller.quorum.heartbeat.interval.ms",
        "100",
    );
    let message = parse_error("controller.quorum.election.timeout.ms=200\n").to_string();
    assert!(
        message.contains("less than half of controller.quorum.election.timeout.ms (200)"),
        "{message}"
    );
    parse(
        "controller.quorum.election.timeout.ms=1000\ncontroller.quorum.heartbeat.interval.ms=499\n",
    );
}

#[test]
fn broker_rack() {
    let (config, unknown) = parse("broker.rack=rack-a\n");
    assert!(unknown.is_empty());
    assert_eq!(config.broker_rack.as_deref(), Some("rack-a"));
    let (config, _) = parse("broker.rack=\n");
    assert_eq!(config.broker_rack, None);
}

#[test]
fn quorum_cross_checks() {
    const VOTERS: &str =
        "controller.quorum.voters=0@localhost:9092,1@localhost:9093,2@localhost:9094\n";
    let members = |id: u16| {
        format!(
            "broker.id={id}\nlisteners=PLAINTEXT://:{}\n{VOTERS}",
            9092 + id
        )
    };
    for id in 0..3 {
        for roles in ["broker,controller", "controller"] {
            let (config, _) = parse(&format!("{}process.roles={roles}\n", members(id)));
            assert_eq!(config.controller_quorum_voters.len(), 3);
        }
    }

    // 1. A controller must be a voter, at the port of its controller listener.
    for roles in ["broker,controller", "controller"] {
        assert_conflict(
            &format!("broker.id=3\nlisteners=PLAINTEXT://:9095\nprocess.roles={roles}\n{VOTERS}"),
            "controller.quorum.voters",
            &["controller.quorum.voters: node 3 is not a voter (voters: 0, 1, 2)"],
        );
        assert_conflict(
            &format!("broker.id=1\nlisteners=PLAINTEXT://:9092\nprocess.roles={roles}\n{VOTERS}"),
            "controller.quorum.voters",
            &["1@localhost:9093", "PLAINTEXT://:9092"],
        );
    }
    let separate = "broker.id=0\nlisteners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                    controller.listener.names=CONTROLLER\n";
    assert_conflict(
        &format!("{separate}controller.quorum.voters=0@localhost:9092\n"),
        "controller.quorum.voters",
        &["0@localhost:9092", "CONTROLLER://:9093"],
    );
    parse(&format!(
        "{separate}controller.quorum.voters=0@localhost:9093\n"
    ));
    assert_conflict(
        &format!("listeners=PLAINTEXT://:0\n{VOTERS}"),
        "controller.quorum.voters",
        &["0@localhost:9092", "PLAINTEXT://:0", "port 0"],
    );

    // 2. A broker-only node registers with other nodes' quorum.
    let (config, _) = parse(&format!(
        "broker.id=3\nlisteners=PLAINTEXT://:9095\nprocess.roles=broker\n{VOTERS}"
    ));
    assert_eq!(config.process_roles, ProcessRoles::Broker);
    assert_eq!(config.quorum_voters().len(), 3);
    assert_conflict(
        "process.roles=broker\n",
        "controller.quorum.voters",
        &["not set", "process.roles=broker"],
    );
    assert_conflict(
        &format!("{}process.roles=broker\n", members(1)),
        "controller.quorum.voters",
        &[
            "node 1 is a voter (1@localhost:9093)",
            "process.roles=broker",
        ],
    );

    // 3. A controller alone has no quorum to be part of.
    assert_conflict(
        "process.roles=controller\n",
        "controller.quorum.voters",
        &["not set", "process.roles=controller"],
    );
}

#[test]
fn metrics_listener_follows_the_first_listener() {
    for (port, metrics) in [(9092, 9644), (9093, 9645), (9094, 9646), (64983, 65535)] {
        let (config, _) = parse(&format!("listeners=PLAINTEXT://:{port}\n"));
        assert_eq!(
            config.metrics_listener,
            Some(metrics_address(metrics)),
            "{port}"
        );
    }
    let (config, _) = parse("listeners=PLAINTEXT://127.0.0.1:0\n");
    assert_eq!(config.metrics_listener, Some(metrics_address(0)));
    let (config, _) = parse("listeners=PLAINTEXT://:64984\n");
    assert_eq!(config.metrics_listener, None);
    let (config, _) = parse("listeners=PLAINTEXT://:9093,OTHER://:9092\n");
    assert_eq!(config.metrics_listener, Some(metrics_address(9645)));

    let (config, _) = parse("listeners=PLAINTEXT://:9093\nmetrics.listener=127.0.0.1:9100\n");
    assert_eq!(config.metrics_listener, Some(metrics_address(9100)));
    let (config, _) = parse("listeners=PLAINTEXT://:9093\nmetrics.listener=none\n");
    assert_eq!(config.metrics_listener, None);

    // The derived port is checked against the listeners as a written one is.
    let error = parse_error("listeners=PLAINTEXT://:9092,OTHER://:9644\n");
    let message = error.to_string();
    assert_eq!(
        invalid_parts(error),
        ("metrics.listener".to_string(), "127.0.0.1:9644".to_string())
    );
    assert!(
        message.contains("OTHER://:9644") && message.contains("+ 552"),
        "{message}"
    );
    let (config, _) = parse("listeners=PLAINTEXT://:9092,OTHER://:9644\nmetrics.listener=none\n");
    assert_eq!(config.metrics_listener, None);
}

/// Kafka's quickstart: copies of `config/server.properties` with `broker.id`, `listeners`
/// and `log.dir` edited make a three-node cluster on one machine, and the shipped
/// `server-1.properties` and `server-2.properties` are exactly those copies.
#[test]
fn shipped_configs_are_the_quickstart_cluster() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let read = |name: &str| match std::fs::read_to_string(directory.join(name)) {
        Ok(text) => text,
        Err(error) => panic!("cannot read config/{name}: {error}"),
    };
    let seed = read("server.properties");
    assert!(
        !seed
            .lines()
            .any(|line| line.trim_start().starts_with("log.dirs")),
        "only log.dir, so that editing it in a copy means what it says"
    );
    let edit = |text: &str, from: &str, to: &str| {
        let (from, to) = (format!("\n{from}\n"), format!("\n{to}\n"));
        assert_eq!(text.matches(&from).count(), 1, "{from:?} once in the file");
        text.replacen(&from, &to, 1)
    };
    let copy = |id: u16| {
        let text = edit(&seed, "broker.id=0", &format!("broker.id={id}"));
        let text = edit(
            &text,
            "listeners=PLAINTEXT://:9092",
            &format!("listeners=PLAINTEXT://:{}", 9092 + id),
        );
        edit(
            &text,
            "log.dir=/tmp/kafka-logs",
            &format!("log.dir=/tmp/kafka-logs-{id}"),
        )
    };
    let texts = [seed.clone(), copy(1), copy(2)];
    assert_eq!(read("server-1.properties"), texts[1], "server-1.properties");
    assert_eq!(read("server-2.properties"), texts[2], "server-2.properties");

    let configs: Vec<BrokerConfig> = texts
        .iter()
        .map(|text| {
            let (config, unknown) = parse(text);
            assert!(unknown.is_empty(), "{unknown:?}");
            config
        })
        .collect();
    let ids: Vec<i32> = configs.iter().map(|config| config.broker_id).collect();
    assert_eq!(ids, [0, 1, 2]);
    let ports: Vec<u16> = configs
        .iter()
        .map(|config| config.listeners[0].port)
        .collect();
    assert_eq!(ports, [9092, 9093, 9094]);
    let dirs: Vec<&Path> = configs.iter().map(BrokerConfig::data_dir).collect();
    assert_eq!(
        dirs,
        [
            Path::new("/tmp/kafka-logs"),
            Path::new("/tmp/kafka-logs-1"),
            Path::new("/tmp/kafka-logs-2")
        ]
    );
    let metrics: Vec<_> = configs
        .iter()
        .map(|config| config.metrics_listener)
        .collect();
    assert_eq!(
        metrics,
        [9644, 9645, 9646].map(|port| Some(metrics_address(port)))
    );
    for config in &configs {
        assert_eq!(config.process_roles, ProcessRoles::Combined);
        assert_eq!(config.quorum_voters(), configs[0].quorum_voters());
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].host, "", "listens on every address");
        let own = config
            .controller_quorum_voters
            .iter()
            .find(|voter| voter.id == config.broker_id)
            .expect("each node is a voter");
        assert_eq!(own.port, config.controller_listener().port);
        assert_eq!(own.host, config.advertised_listeners[0].host);
    }
    assert_eq!(
        configs[0].controller_quorum_voters,
        [
            voter(0, "localhost", 9092),
            voter(1, "localhost", 9093),
            voter(2, "localhost", 9094)
        ]
    );
}

//! The broker's command line and config file, run as a user would run them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn shardlog(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run shardlog")
}

#[test]
fn an_invalid_value_stops_the_broker_with_exit_code_2_naming_key_value_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("log.dirs={}", dir.path().display());
    for (setting, key, value) in [
        ("num.shards=abc", "num.shards", "abc"),
        ("log.retention.ms=-5", "log.retention.ms", "-5"),
        ("listeners=9092", "listeners", "9092"),
        (
            "auto.create.topics.enable=maybe",
            "auto.create.topics.enable",
            "maybe",
        ),
    ] {
        let output = shardlog(&["broker", "--override", &data, "--override", setting]);
        assert_eq!(output.status.code(), Some(2), "{setting}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(key) && stderr.contains(value),
            "{setting}: {stderr}"
        );
        assert!(stderr.contains("expected"), "{setting}: {stderr}");
    }
    let output = shardlog(&["broker", "--override", "no-equals-sign"]);
    assert_eq!(output.status.code(), Some(2));
    let output = shardlog(&["broker", "/no/such/server.properties"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/server.properties"));
}

#[test]
fn a_seed_style_config_file_runs_with_unknown_keys_warned_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server-1.properties");
    let data = dir.path().join("kafka-logs-1");
    std::fs::write(
        &file,
        format!(
            "# as in the seed's three-broker setup\n\
             broker.id=1\n\
             listeners=PLAINTEXT://127.0.0.1:0\n\
             log.dir={}\n\
             num.network.threads=3\n\
             zookeeper.connect=localhost:2181\n\
             frobnicate.level=11\n\
             num.shards=1\n\
             shard.pinning=false\n\
             metrics.listener=none\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .arg("broker")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader};
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout.lines().next().unwrap().unwrap();
    let bootstrap = line
        .strip_prefix("shardlog broker listening on ")
        .unwrap()
        .to_string();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .unwrap();
    assert_eq!(metadata.brokers()[0].id(), 1, "broker.id from the file");
    assert!(data.exists(), "log.dir from the file");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("frobnicate.level"),
        "unknown key named: {stderr}"
    );
    assert!(
        !stderr.contains("zookeeper.connect"),
        "Kafka keys we ignore are not warned about"
    );
}

#[test]
fn broker_level_log_defaults_apply_to_new_topics() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::message::{Message, Timestamp};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[
            ("log.message.timestamp.type", "LogAppendTime"),
            ("log.retention.hours", "1"),
        ],
    );
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let before = rdkafka::util::current_time_millis();
    futures::executor::block_on(
        producer.send(
            FutureRecord::<(), _>::to("defaults")
                .payload("x")
                .timestamp(1000),
            Duration::from_secs(30),
        ),
    )
    .unwrap();
    let described = futures::executor::block_on(
        admin.describe_configs([&ResourceSpecifier::Topic("defaults")], &options),
    )
    .unwrap()
    .remove(0)
    .unwrap();
    let value = |name: &str| {
        described
            .entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap()
    };
    assert_eq!(value("message.timestamp.type"), "LogAppendTime");
    assert_eq!(value("retention.ms"), "3600000");
    let consumer = common::assigned_consumer(&broker.bootstrap, "defaults", &[0]);
    let message = loop {
        if let Some(message) = consumer.poll(Duration::from_secs(1)) {
            break message.unwrap();
        }
    };
    match message.timestamp() {
        Timestamp::LogAppendTime(t) => assert!(t >= before, "broker time, not the client's 1000"),
        other => panic!("expected LogAppendTime, got {other:?}"),
    }
}

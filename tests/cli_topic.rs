//! `shardlog topic ...` run as a user runs it: create, list (table and JSON), describe,
//! delete; a refused request, bad arguments and an unreachable broker each give their exit
//! code and a message.

mod common;

use common::{shardlog, text, Broker};

#[test]
fn topic_commands_work_and_fail_with_clear_messages_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let b = broker.bootstrap.as_str();

    let out = shardlog(
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-r",
            "1",
            "-c",
            "cleanup.policy=compact",
        ],
        b,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created topic orders"));

    let out = shardlog(&["topic", "list", "--format", "json"], b);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let orders = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .expect("orders listed");
    assert_eq!(orders["partitions"].as_array().unwrap().len(), 3);

    let out = shardlog(&["topic", "list"], b);
    assert!(text(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]));
    let out = shardlog(&["topic", "describe", "orders"], b);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        3
    );

    // Settings: the one set at creation shows with its source, then one altered and one
    // put back to its default.
    let out = shardlog(&["topic", "describe", "orders"], b);
    assert!(text(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG"]));
    let out = shardlog(
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=60000",
            "--delete",
            "cleanup.policy",
        ],
        b,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = shardlog(&["topic", "describe", "orders", "--format", "json"], b);
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(described["configs"]["retention.ms"]["value"], "60000");
    assert_eq!(
        described["configs"]["retention.ms"]["source"],
        "DYNAMIC_TOPIC_CONFIG"
    );
    assert_eq!(described["configs"]["cleanup.policy"]["value"], "delete");
    assert_eq!(described["partitions"][0]["high_watermark"], 0);
    let out = shardlog(
        &["topic", "alter-config", "orders", "--set", "retention.ms=x"],
        b,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = shardlog(&["topic", "alter-config", "orders"], b);
    assert_eq!(out.status.code(), Some(2));

    // Partitions are added, never removed.
    let out = shardlog(&["topic", "add-partitions", "orders", "-n", "2"], b);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("now has 5 partitions"));
    let out = shardlog(&["topic", "add-partitions", "orders", "-n", "0"], b);
    assert_eq!(out.status.code(), Some(2));

    // The broker refuses: exit 1 and Kafka's error.
    let out = shardlog(&["topic", "create", "orders"], b);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("TopicAlreadyExists"),
        "{}",
        text(&out.stderr)
    );
    // Bad arguments: exit 2.
    let out = shardlog(&["topic", "create", "x", "-c", "no-equals-sign"], b);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("KEY=VALUE"));
    let out = shardlog(&["topic", "create", "x", "-p", "many"], b);
    assert_eq!(out.status.code(), Some(2));
    // Nothing listening: exit 3, naming the address.
    let out = shardlog(&["topic", "list", "--bootstrap", "127.0.0.1:1"], b);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("127.0.0.1:1"));

    let out = shardlog(&["topic", "delete", "orders"], b);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = shardlog(&["topic", "list", "--format", "json"], b);
    assert!(!text(&out.stdout).contains("\"orders\""));
}

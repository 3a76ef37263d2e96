//! `shardlog produce`, `consume`, `group` and `cluster` run as a user runs them: lines from
//! stdin become records (keys split at a separator, headers, a chosen partition), come back
//! through a template or as JSON, a group consumes and commits exactly what it printed, its lag
//! shows per partition, its offsets are reset, and bad arguments exit with 2.

mod common;

use std::process::Output;

use common::{shardlog, shardlog_with_input, text, Broker, GROUP_SETTINGS};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

#[test]
fn produce_and_consume_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let b = broker.bootstrap.as_str();
    ok(&shardlog(&["topic", "create", "lines", "-p", "3"], b));

    // Keys split at the separator land on their murmur2 partition, as with Kafka's clients.
    let input = "k1:one\nk2:two\nk3:three\nk1:four\n";
    let produced = json(&shardlog_with_input(
        &[
            "produce",
            "lines",
            "--key-separator",
            ":",
            "-H",
            "source=test",
            "--format",
            "json",
        ],
        b,
        Some(input),
    ));
    assert_eq!(produced["records"], 4);
    let out = ok(&shardlog(
        &[
            "consume",
            "lines",
            "-o",
            "start",
            "-n",
            "4",
            "-f",
            "%p %k=%s %h\\n",
        ],
        b,
    ));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    let partition = |key: &str| shardlog::client::partitioner::partition_for_key(key.as_bytes(), 3);
    let mut expected = vec![
        format!("{} k1=one source=test", partition("k1")),
        format!("{} k2=two source=test", partition("k2")),
        format!("{} k3=three source=test", partition("k3")),
        format!("{} k1=four source=test", partition("k1")),
    ];
    expected.sort_unstable();
    assert_eq!(lines, expected);

    // A chosen partition, a key for every line, a codec; JSON output, and -e stops at the end.
    ok(&shardlog_with_input(
        &["produce", "lines", "-p", "2", "-k", "fixed", "-z", "zstd"],
        b,
        Some("a\nb\n"),
    ));
    let out = ok(&shardlog(
        &[
            "consume", "lines", "-p", "2", "-o", "-2", "-e", "--format", "json",
        ],
        b,
    ));
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record per line"))
        .collect();
    assert_eq!(records.len(), 2, "{out}");
    assert_eq!(records[0]["key"], "fixed");
    assert_eq!(records[0]["value"], "a");
    assert_eq!(records[1]["value"], "b");
    assert_eq!(records[1]["partition"], 2);
    // From an offset, and from a timestamp past every record: nothing before the end.
    let first = records[0]["offset"].as_i64().unwrap();
    let out = ok(&shardlog(
        &[
            "consume",
            "lines",
            "-p",
            "2",
            "-o",
            &(first + 1).to_string(),
            "-e",
        ],
        b,
    ));
    assert_eq!(out, "b\n");
    let late = (records[1]["timestamp"].as_i64().unwrap() + 60_000).to_string();
    let out = ok(&shardlog(
        &["consume", "lines", "-o", &format!("@{late}"), "-e"],
        b,
    ));
    assert_eq!(out, "");

    // acks=0 is fire and forget; the records still arrive.
    ok(&shardlog_with_input(
        &["produce", "lines", "--acks", "0", "-p", "0"],
        b,
        Some("x\n"),
    ));
    let out = ok(&shardlog(
        &["consume", "lines", "-p", "0", "-o", "-1", "-n", "1"],
        b,
    ));
    assert_eq!(out, "x\n");

    // Bad arguments: exit 2 and a message naming what was wrong.
    for (args, says) in [
        (vec!["consume", "lines", "-o", "sometime"], "-o takes"),
        (vec!["consume", "lines", "-f", "%q"], "%q"),
        (vec!["produce", "lines", "--acks", "2"], "--acks"),
        (vec!["produce", "lines", "-H", "novalue"], "KEY=VALUE"),
        (vec!["consume", "lines", "-g", "g", "-o", "5"], "with -g"),
        (vec!["consume", "lines", "-p", "9", "-e"], "no partition 9"),
    ] {
        let out = shardlog(&args, b);
        common::assert_usage_error(&out, &args, says);
    }
    let out = shardlog(&["consume", "no-such-topic", "-e"], b);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // A partition the topic does not have: the record fails and the exit code says so.
    let out = shardlog_with_input(&["produce", "lines", "-p", "7"], b, Some("x\n"));
    assert_ne!(out.status.code(), Some(0));
    let out = shardlog(&["cluster", "info", "--bootstrap", "127.0.0.1:1"], b);
    assert_eq!(out.status.code(), Some(3));

    // A reader that has gone (`| head`) before the output is written: a quiet, successful end,
    // not a crash.
    for args in [
        vec!["topic", "list"],
        vec!["consume", "lines", "-o", "start", "-e"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog"))
            .args(&args)
            .env("SHARDLOG_BOOTSTRAP", b)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run shardlog");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_group_commits_what_it_printed_shows_its_lag_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &GROUP_SETTINGS);
    let b = broker.bootstrap.as_str();
    ok(&shardlog(&["topic", "create", "events", "-p", "2"], b));
    let input: String = (0..30).map(|i| format!("event-{i}\n")).collect();
    ok(&shardlog_with_input(
        &["produce", "events", "--partitioner", "round-robin"],
        b,
        Some(&input),
    ));

    // Two runs of 12 then the rest: together they print every record once.
    let first = ok(&shardlog(
        &["consume", "events", "-g", "readers", "-n", "12"],
        b,
    ));
    assert_eq!(first.lines().count(), 12);
    let described = json(&shardlog(
        &["group", "describe", "readers", "--format", "json"],
        b,
    ));
    assert_eq!(described["state"], "Empty");
    // Exactly what was printed is committed (each partition's read started at 0).
    let committed: i64 = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["committed_offset"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(committed, 12, "{described}");
    let second = ok(&shardlog(
        &["consume", "events", "-g", "readers", "-n", "18"],
        b,
    ));
    let mut all: Vec<&str> = first.lines().chain(second.lines()).collect();
    all.sort_unstable();
    let mut expected: Vec<String> = (0..30).map(|i| format!("event-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(all, expected);

    let out = ok(&shardlog(&["group", "describe", "readers"], b));
    assert!(out.contains("TOTAL-LAG    0"), "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("events"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows.iter()
            .all(|r| r[2] == "15" && r[3] == "15" && r[4] == "0"),
        "{out}"
    );
    let listed = json(&shardlog(&["group", "list", "--format", "json"], b));
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["group"] == "readers"));

    // A dry run changes nothing; --execute moves partition 0 back by 5.
    let out = ok(&shardlog(
        &[
            "group",
            "reset-offsets",
            "readers",
            "-t",
            "events:0",
            "--shift-by",
            "-5",
        ],
        b,
    ));
    assert!(out.contains("dry run"), "{out}");
    let unchanged = json(&shardlog(
        &["group", "describe", "readers", "--format", "json"],
        b,
    ));
    assert_eq!(unchanged["total_lag"], 0);
    ok(&shardlog(
        &[
            "group",
            "reset-offsets",
            "readers",
            "-t",
            "events:0",
            "--shift-by",
            "-5",
            "--execute",
        ],
        b,
    ));
    let moved = json(&shardlog(
        &["group", "describe", "readers", "--format", "json"],
        b,
    ));
    assert_eq!(moved["total_lag"], 5);
    let again = ok(&shardlog(
        &["consume", "events", "-g", "readers", "-n", "5"],
        b,
    ));
    assert_eq!(again.lines().count(), 5);

    ok(&shardlog(&["group", "delete", "readers"], b));
    let out = shardlog(&["group", "describe", "readers"], b);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not exist"));
    let out = shardlog(&["group", "reset-offsets", "readers", "-t", "events"], b);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--to or --shift-by"));

    let cluster = json(&shardlog(&["cluster", "info", "--format", "json"], b));
    assert_eq!(cluster["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["controller"], cluster["brokers"][0]["id"]);
}

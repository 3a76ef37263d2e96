//! `shardlog bench` run as a user runs it, against the real broker: a produce run's count
//! matches the end offsets librdkafka reads, consume reads back exactly what was produced,
//! e2e measures latency, the result files are well-formed, compare prints both results, and
//! bad arguments and an unreachable broker give their exit codes.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{shardlog, text, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use shardlog::bench::report::{parse_percentile_distribution, RunReport};

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn report(path: &Path) -> RunReport {
    RunReport::from_json(&std::fs::read_to_string(path).expect("a result file"))
        .expect("a result the tool reads back")
}

/// Records in `topic` by librdkafka's reading of the watermarks: independent of our client.
fn records_in(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "watermarks")
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn produce_consume_and_e2e_agree_with_the_broker_and_write_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let b = broker.bootstrap.as_str();
    let files = dir.path();
    let (produce_json, hgrm, svg) = (
        files.join("produce.json"),
        files.join("produce.hgrm"),
        files.join("produce.svg"),
    );

    // The usage the issue names, plus the files and a partition count.
    let out = shardlog(
        &[
            "bench",
            "produce",
            "--topic",
            "bench-a",
            "--messages",
            "3000",
            "--size",
            "100",
            "--partitions",
            "4",
            "--producers",
            "2",
            "--json",
            path_text(&produce_json),
            "--hgrm",
            path_text(&hgrm),
            "--svg",
            path_text(&svg),
        ],
        b,
    );
    succeeded(&out);
    let produced = report(&produce_json);
    assert_eq!(produced.workload, "produce");
    assert_eq!(produced.messages, 3000);
    assert_eq!(produced.bytes, 300_000);
    assert_eq!(records_in(b, "bench-a", 4), 3000);
    assert!(produced.verification.ok);
    assert_eq!(produced.verification.expected_messages, 3000);
    assert_eq!(produced.parameters["partitions"], 4);
    assert_eq!(produced.parameters["producers"], 2);
    assert!(produced.command_line.iter().any(|a| a == "--messages"));
    let latency = produced.latency.as_ref().expect("ack latency");
    assert_eq!(latency.count, 3000);
    let percentiles: Vec<f64> = latency.percentiles().iter().map(|p| p.1).collect();
    assert!(
        percentiles.windows(2).all(|w| w[0] <= w[1]),
        "{percentiles:?}"
    );
    assert!(text(&out.stdout).contains("throughput"));

    let (rows, total) =
        parse_percentile_distribution(&std::fs::read_to_string(&hgrm).unwrap()).expect("hgrm");
    assert_eq!(total, 3000);
    assert_eq!(rows.last().map(|r| r.total_count), Some(3000));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("<polyline") && chart.contains("percentile"));

    // Reading it back: every record, every byte.
    let consume_json = files.join("consume.json");
    let out = shardlog(
        &[
            "bench",
            "consume",
            "--topic",
            "bench-a",
            "--size",
            "100",
            "--consumers",
            "3",
            "--json",
            path_text(&consume_json),
        ],
        b,
    );
    succeeded(&out);
    let consumed = report(&consume_json);
    assert_eq!(consumed.messages, produced.messages);
    assert_eq!(consumed.bytes, produced.bytes);
    assert!(consumed.verification.ok);

    // Part of it, and more than there is.
    let out = shardlog(
        &[
            "bench",
            "consume",
            "--topic",
            "bench-a",
            "--messages",
            "1001",
        ],
        b,
    );
    succeeded(&out);
    assert!(
        text(&out.stdout).contains("1001 messages"),
        "{}",
        text(&out.stdout)
    );
    let out = shardlog(
        &[
            "bench",
            "consume",
            "--topic",
            "bench-a",
            "--messages",
            "3001",
        ],
        b,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = shardlog(&["bench", "consume", "--topic", "no-such-topic"], b);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no-such-topic"));

    // End to end: latency from the stamp in each value.
    let e2e_json = files.join("e2e.json");
    let out = shardlog(
        &[
            "bench",
            "e2e",
            "--topic",
            "bench-e2e",
            "--partitions",
            "3",
            "--messages",
            "600",
            "--size",
            "64",
            "--linger-ms",
            "1",
            "--json",
            path_text(&e2e_json),
        ],
        b,
    );
    succeeded(&out);
    let e2e = report(&e2e_json);
    assert_eq!(e2e.messages, 600);
    assert_eq!(e2e.bytes, 600 * 64);
    let latency = e2e.latency.as_ref().expect("end-to-end latency");
    assert_eq!(latency.kind, "end_to_end");
    assert_eq!(latency.count, 600);
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    assert_eq!(e2e.ack_latency.as_ref().map(|l| l.count), Some(600));
    assert_eq!(records_in(b, "bench-e2e", 3), 600);

    // Side by side, with a chart of both curves.
    let both = files.join("both.svg");
    let out = shardlog(
        &[
            "bench",
            "compare",
            path_text(&produce_json),
            path_text(&e2e_json),
            "--svg",
            path_text(&both),
        ],
        b,
    );
    succeeded(&out);
    let table = text(&out.stdout);
    assert!(
        table.contains("produce") && table.contains("e2e") && table.contains("B/A"),
        "{table}"
    );
    let throughput = table
        .lines()
        .find(|l| l.starts_with("throughput msg/s"))
        .expect("a throughput row");
    assert_eq!(throughput.split_whitespace().count(), 5, "{throughput}");
    let chart = std::fs::read_to_string(&both).unwrap();
    assert!(
        chart.contains("produce (ack latency)") && chart.contains("e2e (end_to_end latency)"),
        "both curves in the legend"
    );
}

#[test]
fn warmup_keys_codecs_rates_and_durations_do_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let b = broker.bootstrap.as_str();
    let json = dir.path().join("run.json");

    // Warm-up messages are produced but not measured; the broker counts them too.
    let out = shardlog(
        &[
            "bench",
            "produce",
            "--topic",
            "keyed",
            "--partitions",
            "5",
            "--messages",
            "1000",
            "--warmup-messages",
            "200",
            "--size",
            "300",
            "--keyed",
            "--compression",
            "lz4",
            "--acks",
            "1",
            "--batch-bytes",
            "4096",
            "--json",
            path_text(&json),
        ],
        b,
    );
    succeeded(&out);
    let run = report(&json);
    assert_eq!(run.messages, 1000);
    assert_eq!(run.total_messages, 1200);
    assert_eq!(run.warmup_messages, 200);
    assert_eq!(run.latency.as_ref().map(|l| l.count), Some(1000));
    assert_eq!(run.verification.expected_messages, 1200);
    assert_eq!(run.parameters["compression"], "lz4");
    assert_eq!(run.parameters["acks"], "1");
    assert_eq!(records_in(b, "keyed", 5), 1200);

    // Open loop at a fixed rate, idempotent.
    let out = shardlog(
        &[
            "bench",
            "produce",
            "--topic",
            "paced",
            "--messages",
            "300",
            "--rate",
            "3000",
            "--idempotent",
            "--partitioner",
            "round-robin",
            "--json",
            path_text(&json),
        ],
        b,
    );
    succeeded(&out);
    let run = report(&json);
    assert_eq!(run.messages, 300);
    assert_eq!(run.parameters["open_loop"], true);
    assert_eq!(run.parameters["rate_msgs_per_s"], 3000.0);

    // By duration: whatever was sent is what the broker holds.
    let out = shardlog(
        &[
            "bench",
            "produce",
            "--topic",
            "timed",
            "--partitions",
            "2",
            "--duration",
            "0.3",
            "--rate",
            "1000",
            "--size",
            "50",
            "--json",
            path_text(&json),
        ],
        b,
    );
    succeeded(&out);
    let run = report(&json);
    assert!(run.messages > 0);
    assert_eq!(records_in(b, "timed", 2), run.total_messages as i64);
}

#[test]
fn bad_arguments_exit_2_and_an_unreachable_broker_exits_3() {
    let nobody = "127.0.0.1:1";
    for (args, needle) in [
        (vec!["bench", "produce", "--size", "0"], "--size"),
        (
            vec!["bench", "produce", "--compression", "brotli"],
            "brotli",
        ),
        (vec!["bench", "produce", "--acks", "2"], "--acks"),
        (
            vec!["bench", "produce", "--messages", "5", "--duration", "1"],
            "--duration",
        ),
        (
            vec!["bench", "produce", "--idempotent", "--acks", "1"],
            "--idempotent",
        ),
        (vec!["bench", "e2e", "--size", "4"], "--size"),
        (
            vec![
                "bench",
                "compare",
                "/nonexistent/a.json",
                "/nonexistent/b.json",
            ],
            "a.json",
        ),
    ] {
        let out = shardlog(&args, nobody);
        common::assert_usage_error(&out, &args, needle);
    }

    // A port nobody listens on: refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    for workload in ["produce", "consume", "e2e"] {
        let out = shardlog(&["bench", workload, "--bootstrap", &address], nobody);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{workload}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(&address),
            "{}",
            text(&out.stderr)
        );
    }
}

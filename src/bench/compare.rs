//! `shardlog bench compare A.json B.json`: two results side by side, each metric with the
//! ratio B/A, the parameters that differ, and optionally one chart with both latency curves.

use std::fmt::Write as _;
use std::path::Path;

use super::report::RunReport;
use super::{chart, BenchError, CompareArgs};

pub fn run(args: &CompareArgs) -> Result<(), BenchError> {
    let baseline = load(&args.baseline)?;
    let candidate = load(&args.candidate)?;
    let names = (label(&args.baseline), label(&args.candidate));
    super::print_lossless(&table(&baseline, &candidate, &names));
    if let Some(path) = &args.svg {
        let mut curves = Vec::new();
        for (report, name) in [(&baseline, &names.0), (&candidate, &names.1)] {
            if let Some(latency) = &report.latency {
                curves.push(chart::Curve {
                    label: format!("{name} ({} latency)", latency.kind),
                    points: &latency.distribution,
                });
            }
        }
        chart::write(path, &format!("{} vs {}", names.0, names.1), &curves)
            .map_err(BenchError::Output)?;
        super::print_lossless(&format!("wrote {}\n", path.display()));
    }
    Ok(())
}

fn load(path: &Path) -> Result<RunReport, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::Usage(format!("cannot read {}: {e}", path.display())))?;
    RunReport::from_json(&text)
        .map_err(|e| BenchError::Usage(format!("{} is not a bench result: {e}", path.display())))
}

fn label(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into(),
    )
}

fn ratio(a: f64, b: f64) -> String {
    if a == 0.0 {
        "-".into()
    } else {
        format!("{:.3}", b / a)
    }
}

/// The comparison table: metric, A, B, B/A.
pub fn table(a: &RunReport, b: &RunReport, names: &(String, String)) -> String {
    let mut rows: Vec<(String, f64, f64)> = vec![
        ("messages".into(), a.messages as f64, b.messages as f64),
        ("MB".into(), a.bytes as f64 / 1e6, b.bytes as f64 / 1e6),
        ("duration s".into(), a.duration_s, b.duration_s),
        (
            "throughput msg/s".into(),
            a.throughput_msgs_per_s,
            b.throughput_msgs_per_s,
        ),
        (
            "throughput MB/s".into(),
            a.throughput_mb_per_s,
            b.throughput_mb_per_s,
        ),
        ("errors".into(), a.errors as f64, b.errors as f64),
    ];
    for (pick, title) in [
        (
            (|r: &RunReport| r.latency.clone()) as fn(&RunReport) -> _,
            "latency",
        ),
        (|r: &RunReport| r.ack_latency.clone(), "ack latency"),
    ] {
        if let (Some(la), Some(lb)) = (pick(a), pick(b)) {
            let kind = if la.kind == lb.kind {
                la.kind.clone()
            } else {
                format!("{}/{}", la.kind, lb.kind)
            };
            let title = if title == "latency" {
                format!("{kind} latency")
            } else {
                title.to_owned()
            };
            for ((label, va), (_, vb)) in la.percentiles().iter().zip(lb.percentiles().iter()) {
                rows.push((format!("{title} {label} ms"), *va, *vb));
            }
        }
    }
    let width_a = names.0.len().max(12);
    let width_b = names.1.len().max(12);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36} {:>width_a$} {:>width_b$} {:>8}",
        "metric", names.0, names.1, "B/A"
    );
    let _ = writeln!(
        out,
        "{:<36} {:>width_a$} {:>width_b$}",
        "workload", a.workload, b.workload
    );
    for (metric, va, vb) in rows {
        let _ = writeln!(
            out,
            "{metric:<36} {:>width_a$} {:>width_b$} {:>8}",
            number(va),
            number(vb),
            ratio(va, vb)
        );
    }
    let mut keys: Vec<&String> = a.parameters.keys().chain(b.parameters.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| a.parameters.get(*k) != b.parameters.get(*k))
        .map(|k| {
            let show = |r: &RunReport| {
                r.parameters
                    .get(k)
                    .map_or_else(|| "-".into(), |v| v.to_string())
            };
            format!("  {k}: {} vs {}", show(a), show(b))
        })
        .collect();
    if differing.is_empty() {
        let _ = writeln!(out, "parameters: the same");
    } else {
        let _ = writeln!(out, "parameters that differ:");
        for line in differing {
            let _ = writeln!(out, "{line}");
        }
    }
    if a.host != b.host {
        let _ = writeln!(
            out,
            "hosts differ: {} vs {} cores",
            a.host.cores, b.host.cores
        );
    }
    out
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::{Host, LatencySummary, Verification, SCHEMA};
    use super::*;

    fn report(throughput: f64, p99_ms: f64, linger: u64) -> RunReport {
        let mut parameters = serde_json::Map::new();
        parameters.insert("linger_ms".into(), linger.into());
        RunReport {
            schema: SCHEMA.into(),
            workload: "produce".into(),
            command_line: Vec::new(),
            parameters,
            host: Host::this(),
            started_unix_ms: 0,
            messages: 1000,
            bytes: 1_024_000,
            warmup_messages: 0,
            total_messages: 1000,
            total_bytes: 1_024_000,
            duration_s: 1.0,
            throughput_msgs_per_s: throughput,
            throughput_mb_per_s: throughput * 1024.0 / 1e6,
            errors: 0,
            latency: Some(LatencySummary {
                kind: "ack".into(),
                count: 1000,
                min_ms: 0.1,
                mean_ms: 1.0,
                stdev_ms: 0.5,
                p50_ms: 1.0,
                p90_ms: 2.0,
                p99_ms,
                p99_9_ms: p99_ms * 2.0,
                p99_99_ms: p99_ms * 3.0,
                max_ms: p99_ms * 4.0,
                distribution: vec![(0.0, 0.1), (0.99, p99_ms), (1.0, p99_ms * 4.0)],
            }),
            ack_latency: None,
            verification: Verification {
                method: "test".into(),
                expected_messages: 1000,
                counted_messages: 1000,
                expected_bytes: None,
                counted_bytes: None,
                ok: true,
            },
        }
    }

    #[test]
    fn the_table_gives_both_values_and_their_ratio() {
        let names = ("base".to_owned(), "new".to_owned());
        let text = table(&report(1000.0, 4.0, 1), &report(1500.0, 2.0, 5), &names);
        let throughput = text
            .lines()
            .find(|l| l.starts_with("throughput msg/s"))
            .expect("a throughput row");
        assert!(
            throughput.contains("1000")
                && throughput.contains("1500")
                && throughput.ends_with("1.500"),
            "{throughput}"
        );
        let p99 = text
            .lines()
            .find(|l| l.starts_with("ack latency p99 ms"))
            .expect("a p99 row");
        assert!(p99.ends_with("0.500"), "{p99}");
        assert!(text.contains("linger_ms: 1 vs 5"), "{text}");
    }
}

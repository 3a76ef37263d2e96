//! Results of a run: the JSON document, HdrHistogram's percentile distribution text (`.hgrm`),
//! and the one-screen summary. Pure: values in, text out, and the parsers that read them back.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, from 1 µs to an hour, to 3 significant digits.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Microseconds per millisecond: results are reported in ms.
const US_PER_MS: f64 = 1000.0;
/// Points per halving of the distance to 100% in the percentile iteration, as HdrHistogram's
/// own `outputPercentileDistribution` uses by default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Identifies the JSON layout, so `compare` can refuse files it does not understand.
pub const SCHEMA: &str = "shardlog-bench/1";

/// `value` to `decimals` places. Results carry no more precision than was measured (µs for
/// latencies), which also keeps them short and exact through a JSON round trip.
pub fn rounded(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// What was measured: "ack" (send to acknowledgement), "end_to_end" (send to receipt by
    /// a consumer) or "poll" (one consumer poll that returned records).
    pub kind: String,
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub stdev_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub p99_99_ms: f64,
    pub max_ms: f64,
    /// (quantile, latency ms) at HdrHistogram's percentile steps, for charts.
    pub distribution: Vec<(f64, f64)>,
}

impl LatencySummary {
    pub fn of(kind: &str, histogram: &Histogram<u64>) -> LatencySummary {
        let ms = |us: u64| us as f64 / US_PER_MS;
        let at = |q: f64| ms(histogram.value_at_quantile(q));
        LatencySummary {
            kind: kind.to_owned(),
            count: histogram.len(),
            min_ms: ms(histogram.min()),
            mean_ms: rounded(histogram.mean() / US_PER_MS, 3),
            stdev_ms: rounded(histogram.stdev() / US_PER_MS, 3),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p99_9_ms: at(0.999),
            p99_99_ms: at(0.9999),
            max_ms: ms(histogram.max()),
            distribution: distribution(histogram)
                .into_iter()
                .map(|row| (rounded(row.quantile, 12), row.value))
                .collect(),
        }
    }

    /// The named percentiles as (label, ms), in order.
    pub fn percentiles(&self) -> [(&'static str, f64); 6] {
        [
            ("p50", self.p50_ms),
            ("p90", self.p90_ms),
            ("p99", self.p99_ms),
            ("p99.9", self.p99_9_ms),
            ("p99.99", self.p99_99_ms),
            ("max", self.max_ms),
        ]
    }
}

/// How the bench's count compared with the broker's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Where the independent count came from.
    pub method: String,
    /// Messages by the broker's count.
    pub expected_messages: i64,
    /// Messages by the bench's count.
    pub counted_messages: i64,
    /// Bytes expected, when known independently (count x size).
    pub expected_bytes: Option<u64>,
    pub counted_bytes: Option<u64>,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Cores this process may use.
    pub cores: usize,
    pub os: String,
    pub arch: String,
}

impl Host {
    pub fn this() -> Host {
        Host {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }
}

/// One run, as `--json` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub schema: String,
    pub workload: String,
    /// The arguments the tool was started with, program name first.
    pub command_line: Vec<String>,
    /// Every setting of the run, defaults resolved.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub host: Host,
    pub started_unix_ms: u64,
    /// Measured messages and value bytes (warm-up excluded).
    pub messages: u64,
    pub bytes: u64,
    pub warmup_messages: u64,
    /// Everything produced or consumed, warm-up included.
    pub total_messages: u64,
    pub total_bytes: u64,
    /// From the first measured send (or read) to the last measured acknowledgement (or read).
    pub duration_s: f64,
    pub throughput_msgs_per_s: f64,
    /// 10^6 bytes of values per second.
    pub throughput_mb_per_s: f64,
    /// Messages whose delivery failed.
    pub errors: u64,
    /// The run's main latency: acknowledgement (produce), end to end (e2e), poll (consume).
    pub latency: Option<LatencySummary>,
    /// For e2e: the producers' acknowledgement latency beside the end-to-end one.
    pub ack_latency: Option<LatencySummary>,
    pub verification: Verification,
}

impl RunReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    pub fn from_json(text: &str) -> Result<RunReport, String> {
        let report: RunReport = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if report.schema != SCHEMA {
            return Err(format!(
                "schema {:?}, this tool reads {SCHEMA:?}",
                report.schema
            ));
        }
        Ok(report)
    }

    /// The summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let parameter = |key: &str| {
            self.parameters
                .get(key)
                .map(|v| v.to_string().trim_matches('"').to_owned())
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            out,
            "{}: topic {} ({} partitions), {} messages ({} MB) in {:.2} s",
            self.workload,
            parameter("topic"),
            parameter("partitions"),
            self.messages,
            megabytes(self.bytes),
            self.duration_s
        );
        let _ = writeln!(
            out,
            "throughput: {:.0} msg/s, {:.2} MB/s",
            self.throughput_msgs_per_s, self.throughput_mb_per_s
        );
        for latency in [&self.latency, &self.ack_latency].into_iter().flatten() {
            let mut line = format!("{} latency ms:", latency.kind);
            for (label, value) in latency.percentiles() {
                let _ = write!(line, " {label} {value:.3}");
            }
            let _ = writeln!(out, "{line}");
        }
        let v = &self.verification;
        let _ = write!(
            out,
            "verification ({}): broker {} messages, bench {}",
            v.method, v.expected_messages, v.counted_messages
        );
        if let (Some(expected), Some(counted)) = (v.expected_bytes, v.counted_bytes) {
            let _ = write!(out, "; bytes expected {expected}, counted {counted}");
        }
        let _ = write!(out, ": {}", if v.ok { "ok" } else { "MISMATCH" });
        out
    }
}

pub fn megabytes(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

/// A row of a percentile distribution: value (ms), quantile and the count up to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistributionRow {
    pub value: f64,
    pub quantile: f64,
    pub total_count: u64,
}

pub fn distribution(histogram: &Histogram<u64>) -> Vec<DistributionRow> {
    let mut rows = Vec::new();
    if histogram.is_empty() {
        return rows;
    }
    let mut total = 0;
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += step.count_since_last_iteration();
        rows.push(DistributionRow {
            value: step.value_iterated_to() as f64 / US_PER_MS,
            quantile: step.quantile_iterated_to(),
            total_count: total,
        });
    }
    rows
}

/// HdrHistogram's percentile distribution text, values in ms, as
/// `outputPercentileDistribution(out, 1000.0)` prints a histogram of microseconds; the
/// HdrHistogram plotter and other tools read this format.
pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let digits = usize::from(LATENCY_SIGNIFICANT_DIGITS);
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for row in distribution(histogram) {
        if row.quantile < 1.0 {
            let _ = writeln!(
                out,
                "{:>12.digits$} {:>2.12} {:>10} {:>14.2}",
                row.value,
                row.quantile,
                row.total_count,
                1.0 / (1.0 - row.quantile)
            );
        } else {
            let _ = writeln!(
                out,
                "{:>12.digits$} {:>2.12} {:>10}",
                row.value, row.quantile, row.total_count
            );
        }
    }
    let ms = |us: f64| us / US_PER_MS;
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.digits$}, StdDeviation   = {:>12.digits$}]",
        ms(histogram.mean()),
        ms(histogram.stdev())
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        ms(histogram.max() as f64),
        histogram.len()
    );
    // HdrHistogram's sub-bucket count: the power of two holding 2 x 10^digits values.
    let sub_buckets = (2 * 10u64.pow(u32::from(LATENCY_SIGNIFICANT_DIGITS))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_buckets
    );
    out
}

/// Reads back the rows and the total count of a percentile distribution text.
pub fn parse_percentile_distribution(text: &str) -> Result<(Vec<DistributionRow>, u64), String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.split_whitespace().next() == Some("Value") => {}
        _ => return Err("line 1: expected the Value/Percentile header".into()),
    }
    let mut rows = Vec::new();
    let mut total = None;
    for (index, line) in lines {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(footer) = line.strip_prefix("#[") {
            if let Some(rest) = footer.split("Total count").nth(1) {
                let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
                total = Some(
                    digits
                        .parse::<u64>()
                        .map_err(|_| format!("line {number}: no total count"))?,
                );
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 3 && fields.len() != 4 {
            return Err(format!(
                "line {number}: {} fields, expected 3 or 4",
                fields.len()
            ));
        }
        let number_at = |i: usize| {
            fields[i]
                .parse::<f64>()
                .map_err(|_| format!("line {number}: {:?} is not a number", fields[i]))
        };
        let row = DistributionRow {
            value: number_at(0)?,
            quantile: number_at(1)?,
            total_count: fields[2]
                .parse()
                .map_err(|_| format!("line {number}: {:?} is not a count", fields[2]))?,
        };
        if let Some(last) = rows.last() {
            let last: &DistributionRow = last;
            if row.value < last.value
                || row.quantile < last.quantile
                || row.total_count < last.total_count
            {
                return Err(format!("line {number}: goes backwards"));
            }
        }
        rows.push(row);
    }
    let total = total.ok_or("no Total count footer")?;
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = latency_histogram();
        for us in 1..=10_000u64 {
            h.saturating_record(us);
        }
        h.saturating_record(250_000);
        h
    }

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let summary = LatencySummary::of("ack", &sample());
        assert_eq!(summary.count, 10_001);
        assert!((summary.p50_ms - 5.0).abs() < 0.01, "{}", summary.p50_ms);
        assert!((summary.p99_ms - 9.9).abs() < 0.01, "{}", summary.p99_ms);
        assert!((summary.max_ms - 250.0).abs() < 0.2, "{}", summary.max_ms);
        assert!((summary.min_ms - 0.001).abs() < 1e-9);
        let ordered: Vec<f64> = summary.percentiles().iter().map(|p| p.1).collect();
        assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{ordered:?}");
        assert_eq!(summary.distribution.last().map(|p| p.0), Some(1.0));
    }

    #[test]
    fn percentile_distribution_parses_back_with_the_same_counts() {
        let h = sample();
        let text = percentile_distribution(&h);
        let (rows, total) = parse_percentile_distribution(&text).expect("parses");
        assert_eq!(total, h.len());
        let last = rows.last().expect("rows");
        assert_eq!(last.total_count, h.len());
        assert_eq!(last.quantile, 1.0);
        assert!((last.value - 250.0).abs() < 0.2);
        assert!(text.contains("#[Mean    = "), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        // The layout of HdrHistogram's own output: a 12-wide value with 3 decimals.
        let first = text.lines().nth(2).expect("a first row");
        assert_eq!(first.find('.'), Some(8), "{first:?}");
    }

    #[test]
    fn broken_distributions_are_errors_not_panics() {
        assert!(parse_percentile_distribution("").is_err());
        assert!(parse_percentile_distribution("Value Percentile\n\n1.0 x 3\n").is_err());
        assert!(parse_percentile_distribution("Value\n\n2.0 0.5 3 2.0\n1.0 0.6 4 2.5\n").is_err());
        assert!(parse_percentile_distribution("Value\n\n2.0 0.5 3 2.0\n").is_err());
        let empty = percentile_distribution(&latency_histogram());
        let (rows, total) = parse_percentile_distribution(&empty).expect("parses");
        assert!(rows.is_empty());
        assert_eq!(total, 0);
    }

    #[test]
    fn reports_round_trip_through_json() {
        let mut parameters = serde_json::Map::new();
        parameters.insert("topic".into(), "t".into());
        parameters.insert("partitions".into(), 8.into());
        let report = RunReport {
            schema: SCHEMA.into(),
            workload: "produce".into(),
            command_line: vec!["shardlog".into(), "bench".into()],
            parameters,
            host: Host::this(),
            started_unix_ms: 1,
            messages: 10,
            bytes: 10_240,
            warmup_messages: 0,
            total_messages: 10,
            total_bytes: 10_240,
            duration_s: 0.5,
            throughput_msgs_per_s: 20.0,
            throughput_mb_per_s: 0.02048,
            errors: 0,
            latency: Some(LatencySummary::of("ack", &sample())),
            ack_latency: None,
            verification: Verification {
                method: "ListOffsets".into(),
                expected_messages: 10,
                counted_messages: 10,
                expected_bytes: None,
                counted_bytes: Some(10_240),
                ok: true,
            },
        };
        let back = RunReport::from_json(&report.to_json()).expect("parses");
        assert_eq!(back, report);
        assert!(report.summary().contains("ok"));
        let mut other = report.clone();
        other.schema = "something-else".into();
        assert!(RunReport::from_json(&other.to_json()).is_err());
        assert!(RunReport::from_json("{").is_err());
    }
}

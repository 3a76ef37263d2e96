//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per
//! family, then one `name{labels} value` line per sample. Pure string building; the scrape
//! path allocates here, the recording path never does.

use std::fmt::Write;

use super::HistogramSnapshot;

/// The `Content-Type` a scraper expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// How a histogram's recorded integers map to the exposed unit: Prometheus wants base units
/// (seconds), while shards record integers (microseconds) so recording stays integer math.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub divisor: f64,
}

impl Scale {
    pub const MICROSECONDS_TO_SECONDS: Scale = Scale { divisor: 1e6 };
    pub const NONE: Scale = Scale { divisor: 1.0 };
}

/// Builds one exposition document.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family; every sample of it must follow before the next family starts.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.text, " {value}");
    }

    /// The `_bucket` (cumulative, ending in `+Inf`), `_sum` and `_count` lines of a histogram.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        snapshot: &HistogramSnapshot,
        scale: Scale,
    ) {
        let mut cumulative = 0u64;
        for (index, count) in snapshot.counts.iter().enumerate() {
            cumulative += count;
            let le = match snapshot.bounds.get(index) {
                Some(&bound) => format_float(bound as f64 / scale.divisor),
                None => "+Inf".to_owned(),
            };
            let _ = write!(self.text, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.text, " {cumulative}");
        }
        let _ = write!(self.text, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(
            self.text,
            " {}",
            format_float(snapshot.sum as f64 / scale.divisor)
        );
        let _ = write!(self.text, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.text, " {cumulative}");
    }

    pub fn finish(self) -> String {
        self.text
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.text.push('{');
        let mut first = true;
        for (key, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.text.push(',');
            }
            first = false;
            let _ = write!(self.text, "{key}=\"");
            escape_label_into(&mut self.text, value);
            self.text.push('"');
        }
        self.text.push('}');
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` is what Prometheus prints; Rust's shortest
/// round-trip `Display` gives the same digits without an exponent, which parsers accept too.
fn format_float(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    format!("{value}")
}

fn escape_label_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::{Histogram, LATENCY_BOUNDS_US};

    /// A parsed sample line: name, labels in order, value.
    pub(crate) type Sample = (String, Vec<(String, String)>, f64);

    /// Checks a document line by line against the 0.0.4 grammar as far as shardlog uses it:
    /// each family typed once before its samples, names and labels well-formed, values numbers,
    /// histogram buckets cumulative with `+Inf` equal to `_count`. Returns the samples.
    pub(crate) fn parse_exposition(text: &str) -> Vec<Sample> {
        let mut typed: std::collections::HashMap<String, String> = Default::default();
        let mut samples = Vec::new();
        assert!(text.ends_with('\n'), "a document ends with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(valid_name(name), "{line}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "family {name} typed twice"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect("HELP name text");
                assert!(valid_name(name), "{line}");
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                value => value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels close");
                    let labels = body
                        .split(',')
                        .map(|pair| {
                            let (key, quoted) = pair.split_once('=').expect("label key=value");
                            assert!(valid_name(key), "{line}");
                            let value = quoted
                                .strip_prefix('"')
                                .and_then(|v| v.strip_suffix('"'))
                                .expect("quoted label value");
                            (key.to_owned(), value.to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            assert!(valid_name(name), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| typed.get(*base).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family), "sample before its TYPE: {line}");
            samples.push((name.to_owned(), labels, value));
        }
        check_histograms(&samples);
        samples
    }

    fn check_histograms(samples: &[Sample]) {
        let mut last: Option<Sample> = None;
        for (name, labels, value) in samples {
            if let Some(base) = name.strip_suffix("_bucket") {
                let series: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                if let Some((previous, previous_labels, previous_value)) = &last {
                    if previous == base && *previous_labels == series {
                        assert!(value >= previous_value, "{name} buckets not cumulative");
                    }
                }
                last = Some((base.to_owned(), series, *value));
            } else if let Some(base) = name.strip_suffix("_count") {
                if let Some((previous, previous_labels, previous_value)) = &last {
                    if previous == base && previous_labels == labels {
                        assert_eq!(value, previous_value, "{name}: +Inf bucket == count");
                    }
                }
            }
        }
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_in_seconds() {
        let histogram = Histogram::new(&LATENCY_BOUNDS_US);
        histogram.record(40);
        histogram.record(700);
        histogram.record(30_000_000);
        let mut out = Exposition::new();
        out.family("x_seconds", Kind::Histogram, "test");
        out.histogram(
            "x_seconds",
            &[("shard", "0")],
            &histogram.snapshot(),
            Scale::MICROSECONDS_TO_SECONDS,
        );
        let text = out.finish();
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"0.001\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"10\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("x_seconds_sum{shard=\"0\"} 30.00074\n"));
        assert!(text.contains("x_seconds_count{shard=\"0\"} 3\n"));
        let samples = parse_exposition(&text);
        assert_eq!(samples.len(), LATENCY_BOUNDS_US.len() + 1 + 2);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::new();
        out.family("y_total", Kind::Counter, "a \\ help\nline");
        out.sample("y_total", &[("v", "a\"b\\c\nd")], 7);
        let text = out.finish();
        assert!(text.contains("# HELP y_total a \\\\ help\\nline\n"));
        assert!(text.contains("y_total{v=\"a\\\"b\\\\c\\nd\"} 7\n"));
    }

    #[test]
    fn samples_without_labels_have_no_braces() {
        let mut out = Exposition::new();
        out.family("z", Kind::Gauge, "g");
        out.sample("z", &[], 1);
        assert_eq!(out.finish(), "# HELP z g\n# TYPE z gauge\nz 1\n");
    }
}

//! `shardlog consume TOPIC...`: records from a start offset (`-o`), by partition or as a member
//! of a group (`-g`), printed through a kcat-style template (`-f`) or as one JSON object per
//! line (`--format json`). Stops after `-n` records, at the end of the partitions (`-e`), or at
//! Ctrl-C; a group member commits what it printed and leaves the group on the way out.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{progress, Failure, Format};
use crate::client::admin::{Admin, OffsetSpec};
use crate::client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset};
use crate::client::group::{GroupConfig, GroupConsumer};

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Where to start: start, end, an offset, +N (N after the start), -N (N before the end),
    /// or @TIMESTAMP (ms since the epoch). With -g, where a partition without a committed
    /// offset starts (start or end).
    #[arg(short = 'o', long, default_value = "start", allow_hyphen_values = true)]
    pub offset: String,
    /// Stops after this many records.
    #[arg(short = 'n', long = "num")]
    pub num: Option<u64>,
    /// Consumes as a member of this group, committing what it printed.
    #[arg(short = 'g', long)]
    pub group: Option<String>,
    /// Only these partitions (comma-separated); not with -g.
    #[arg(short = 'p', long, value_delimiter = ',', conflicts_with = "group")]
    pub partitions: Vec<i32>,
    /// Stops at the end of every partition (as it was when the command started); not with -g.
    #[arg(short = 'e', long = "exit-at-end", conflicts_with = "group")]
    pub exit_at_end: bool,
    /// Output template: %t topic, %p partition, %o offset, %k key, %s value, %T timestamp,
    /// %h headers, %K / %S key / value length, %% a percent sign; \n, \t, \r, \\ escapes.
    #[arg(short = 'f', long = "template", default_value = "%s\\n")]
    pub template: String,
    /// Reads only committed records (isolation level read_committed).
    #[arg(long = "read-committed")]
    pub read_committed: bool,
}

/// Where to start, as `-o` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Beginning,
    End,
    At(i64),
    AfterFirst(i64),
    BeforeLast(i64),
    Timestamp(i64),
}

fn parse_start(value: &str) -> Result<Start, Failure> {
    let bad = || {
        Failure::Usage(format!(
            "-o takes start, end, OFFSET, +N, -N or @TIMESTAMP, got {value:?}"
        ))
    };
    let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(bad);
    match value {
        "start" | "beginning" | "oldest" => Ok(Start::Beginning),
        "end" | "newest" => Ok(Start::End),
        v if v.starts_with('@') => number(&v[1..]).map(Start::Timestamp),
        v if v.starts_with('+') => number(&v[1..]).map(Start::AfterFirst),
        v if v.starts_with('-') => number(&v[1..]).map(Start::BeforeLast),
        v => number(v).map(Start::At),
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
    KeyLength,
    ValueLength,
}

fn parse_template(template: &str) -> Result<Vec<Piece>, Failure> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        let piece = match c {
            '%' => match chars.next() {
                Some('t') => Piece::Topic,
                Some('p') => Piece::Partition,
                Some('o') => Piece::Offset,
                Some('k') => Piece::Key,
                Some('s') => Piece::Value,
                Some('T') => Piece::Timestamp,
                Some('h') => Piece::Headers,
                Some('K') => Piece::KeyLength,
                Some('S') => Piece::ValueLength,
                Some('%') => {
                    text.push('%');
                    continue;
                }
                other => {
                    return Err(Failure::Usage(format!(
                        "-f: unknown directive %{} in {template:?}",
                        other.map(String::from).unwrap_or_default()
                    )))
                }
            },
            '\\' => {
                match chars.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some('\\') | None => text.push('\\'),
                    Some(other) => {
                        text.push('\\');
                        text.push(other);
                    }
                }
                continue;
            }
            c => {
                text.push(c);
                continue;
            }
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn render(pieces: &[Piece], record: &ConsumerRecord, out: &mut Vec<u8>) {
    let bytes_or_empty = |b: &Option<bytes::Bytes>| b.as_deref().unwrap_or_default().to_vec();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
            Piece::Topic => out.extend_from_slice(record.topic.as_bytes()),
            Piece::Partition => out.extend_from_slice(record.partition.to_string().as_bytes()),
            Piece::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
            Piece::Key => out.extend(bytes_or_empty(&record.key)),
            Piece::Value => out.extend(bytes_or_empty(&record.value)),
            Piece::Timestamp => out.extend_from_slice(record.timestamp.to_string().as_bytes()),
            Piece::Headers => {
                for (i, (name, value)) in record.headers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'=');
                    out.extend(bytes_or_empty(value));
                }
            }
            // kcat prints -1 for a null key or value.
            Piece::KeyLength => out.extend_from_slice(
                record
                    .key
                    .as_ref()
                    .map_or(-1, |k| k.len() as i64)
                    .to_string()
                    .as_bytes(),
            ),
            Piece::ValueLength => out.extend_from_slice(
                record
                    .value
                    .as_ref()
                    .map_or(-1, |v| v.len() as i64)
                    .to_string()
                    .as_bytes(),
            ),
        }
    }
}

fn record_json(record: &ConsumerRecord) -> serde_json::Value {
    let text = |b: &Option<bytes::Bytes>| {
        b.as_ref()
            .map(|b| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
            .unwrap_or(serde_json::Value::Null)
    };
    serde_json::json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": text(&record.key),
        "value": text(&record.value),
        "headers": record.headers.iter().map(|(k, v)| serde_json::json!({"key": k, "value": text(v)})).collect::<Vec<_>>(),
    })
}

/// Consumes by partition or in a group; either way records come from `poll`.
enum Source {
    Partitions(Box<Consumer>),
    Group(Box<GroupConsumer>),
}

impl Source {
    async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, crate::client::ClientError> {
        match self {
            Source::Partitions(c) => c.poll().await,
            Source::Group(g) => g.poll().await,
        }
    }
}

/// The absolute start offset of each partition.
async fn resolve_starts(
    admin: &Admin,
    slots: &[(String, i32)],
    start: Start,
) -> Result<BTreeMap<(String, i32), i64>, Failure> {
    Ok(match start {
        Start::At(offset) => slots.iter().map(|s| (s.clone(), offset)).collect(),
        Start::Beginning => admin.list_offsets(slots, OffsetSpec::Earliest).await?,
        Start::End => admin.list_offsets(slots, OffsetSpec::Latest).await?,
        Start::Timestamp(t) => admin.list_offsets(slots, OffsetSpec::Timestamp(t)).await?,
        Start::AfterFirst(n) => {
            let starts = admin.list_offsets(slots, OffsetSpec::Earliest).await?;
            let ends = admin.list_offsets(slots, OffsetSpec::Latest).await?;
            starts
                .into_iter()
                .map(|(slot, s)| {
                    let end = ends.get(&slot).copied().unwrap_or(s);
                    (slot, s.saturating_add(n).min(end))
                })
                .collect()
        }
        Start::BeforeLast(n) => {
            let starts = admin.list_offsets(slots, OffsetSpec::Earliest).await?;
            let ends = admin.list_offsets(slots, OffsetSpec::Latest).await?;
            ends.into_iter()
                .map(|(slot, e)| {
                    let start = starts.get(&slot).copied().unwrap_or(0);
                    (slot, e.saturating_sub(n).max(start))
                })
                .collect()
        }
    })
}

/// Commits the offsets past what was printed, for the partitions the member still owns (one
/// that moved to another member meanwhile is that member's to commit).
async fn commit_printed(
    group: &mut GroupConsumer,
    uncommitted: &mut BTreeMap<(String, i32), i64>,
) -> Result<(), crate::client::ClientError> {
    uncommitted.retain(|slot, _| group.assignment().contains(slot));
    if uncommitted.is_empty() {
        return Ok(());
    }
    group.commit_offsets(uncommitted).await?;
    uncommitted.clear();
    Ok(())
}

pub(super) async fn run(
    bootstrap: String,
    format: Format,
    args: ConsumeArgs,
) -> Result<String, Failure> {
    let start = parse_start(&args.offset)?;
    let template = parse_template(&args.template)?;
    if args.group.is_some() && !matches!(start, Start::Beginning | Start::End) {
        return Err(Failure::Usage(
            "with -g, -o takes start or end (where partitions without a committed offset start)"
                .into(),
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Failure::Usage(format!("cannot install a signal handler: {e}")))?;
    }
    let mut config = ConsumerConfig::new(&bootstrap);
    config.client_id = "shardlog-cli".into();
    config.isolation_level = i8::from(args.read_committed);
    config.max_wait = Duration::from_millis(250);
    // Partitions by number, with where each starts and (for -e) where each ends.
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut source = match &args.group {
        Some(group) => {
            config.auto_offset_reset = if start == Start::End {
                Offset::End
            } else {
                Offset::Beginning
            };
            let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
            // What was printed is committed, not what was fetched: a run cut short by -n
            // leaves the rest for the next member.
            let mut group_config = GroupConfig::new(group);
            group_config.enable_auto_commit = false;
            Source::Group(Box::new(
                GroupConsumer::connect(config, group_config, &topics).await?,
            ))
        }
        None => {
            let admin = Admin::connect(&bootstrap).await?;
            let names: Vec<&str> = args.topics.iter().map(String::as_str).collect();
            let topics = admin.topics(Some(&names)).await?;
            let mut slots = Vec::new();
            for name in &args.topics {
                let topic = topics
                    .iter()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| Failure::Refused(format!("topic {name} does not exist")))?;
                for p in &topic.partitions {
                    if args.partitions.is_empty() || args.partitions.contains(&p.partition) {
                        slots.push((name.clone(), p.partition));
                    }
                }
            }
            if let Some(p) = args
                .partitions
                .iter()
                .find(|p| !slots.iter().any(|(_, q)| q == *p))
            {
                return Err(Failure::Usage(format!(
                    "no partition {p} in {:?}",
                    args.topics
                )));
            }
            let starts = resolve_starts(&admin, &slots, start).await?;
            if args.exit_at_end {
                ends = admin.list_offsets(&slots, OffsetSpec::Latest).await?;
                // Partitions with nothing left to read are done before they start.
                ends.retain(|slot, end| starts.get(slot).is_some_and(|s| s < end));
            }
            let mut consumer = Consumer::connect(config).await?;
            let assigned: Vec<(&str, i32)> = slots.iter().map(|(t, p)| (t.as_str(), *p)).collect();
            consumer.assign(&assigned);
            for (slot, offset) in &starts {
                consumer.seek(&slot.0, slot.1, Offset::At(*offset));
            }
            Source::Partitions(Box::new(consumer))
        }
    };
    let bar = progress(args.num, "records");
    let mut printed: u64 = 0;
    let stdout = std::io::stdout();
    let mut buffer = Vec::with_capacity(64 << 10);
    let done = |printed: u64, ends: &BTreeMap<(String, i32), i64>| {
        args.num.is_some_and(|n| printed >= n) || (args.exit_at_end && ends.is_empty())
    };
    let mut closed_pipe = false;
    // Next offset to commit per partition: past the last record printed.
    let mut uncommitted: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while !done(printed, &ends) && !stop.load(Ordering::Relaxed) {
        let records = source.poll().await?;
        buffer.clear();
        for record in &records {
            if done(printed, &ends) {
                break;
            }
            match format {
                Format::Json => {
                    buffer.extend_from_slice(record_json(record).to_string().as_bytes());
                    buffer.push(b'\n');
                }
                Format::Table => render(&template, record, &mut buffer),
            }
            printed += 1;
            let slot = (record.topic.clone(), record.partition);
            if matches!(source, Source::Group(_)) {
                uncommitted.insert(slot.clone(), record.offset + 1);
            }
            if ends.get(&slot).is_some_and(|end| record.offset + 1 >= *end) {
                ends.remove(&slot);
            }
        }
        bar.set_position(printed);
        let mut out = stdout.lock();
        if out.write_all(&buffer).and_then(|()| out.flush()).is_err() {
            // The reader went away (`| head`): stop as kcat does.
            closed_pipe = true;
            break;
        }
        if let Source::Group(group) = &mut source {
            commit_printed(group, &mut uncommitted).await?;
        }
    }
    bar.finish_and_clear();
    if let Source::Group(mut group) = source {
        if !closed_pipe {
            commit_printed(&mut group, &mut uncommitted).await?;
        }
        group.close().await?;
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn offsets_parse_as_rpk_spells_them() {
        assert!(matches!(parse_start("start"), Ok(Start::Beginning)));
        assert!(matches!(parse_start("end"), Ok(Start::End)));
        assert!(matches!(parse_start("42"), Ok(Start::At(42))));
        assert!(matches!(parse_start("+3"), Ok(Start::AfterFirst(3))));
        assert!(matches!(parse_start("-3"), Ok(Start::BeforeLast(3))));
        assert!(matches!(
            parse_start("@1700000000000"),
            Ok(Start::Timestamp(1_700_000_000_000))
        ));
        for bad in ["", "x", "@", "@-1", "+", "1.5"] {
            assert!(matches!(parse_start(bad), Err(Failure::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn templates_render_every_directive() {
        let record = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 99,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"1"))),
                ("g".into(), None),
            ],
        };
        let pieces = parse_template("%t/%p@%o %k=%s [%h] %K %S %T 100%%\\n").unwrap();
        let mut out = Vec::new();
        render(&pieces, &record, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "t/2@7 k= [h=1,g=] 1 -1 99 100%\n"
        );
        assert!(matches!(parse_template("%x"), Err(Failure::Usage(m)) if m.contains("%x")));
    }
}

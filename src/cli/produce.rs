//! `shardlog produce TOPIC`: one record per input line (stdin or `--file`), as `kcat -P` and
//! `rpk topic produce` do. Lines are read on a thread of their own, so a slow or interactive
//! input never stalls the producer's timers and deliveries.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use super::{key_value, progress, Failure, Format};
use crate::client::partitioner::RoundRobinPartitioner;
use crate::client::producer::{Compression, Delivery, Producer, ProducerConfig, ProducerRecord};
use crate::client::ClientError;

/// Lines read ahead of the producer.
const LINES_QUEUED_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(codec: Codec) -> Self {
        match codec {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionerChoice {
    /// Kafka's: murmur2 of the key, sticky for records without one.
    Default,
    RoundRobin,
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// The key of every record.
    #[arg(short = 'k', long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Splits each line into key and value at the first SEP (as `kcat -K`).
    #[arg(short = 'K', long = "key-separator", value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record, as KEY=VALUE; repeatable.
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Sends every record to this partition instead of asking the partitioner.
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    #[arg(long, value_enum, default_value = "default")]
    pub partitioner: PartitionerChoice,
    /// all (-1), 1 or 0. Idempotence is on with all, off otherwise.
    #[arg(long, default_value = "all")]
    pub acks: String,
    #[arg(short = 'z', long, value_enum, default_value = "none")]
    pub compression: Codec,
    #[arg(long = "linger-ms", default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long = "batch-size", default_value_t = 16384)]
    pub batch_size: usize,
    /// Reads the records from this file instead of stdin.
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
}

fn parse_acks(value: &str) -> Result<i16, Failure> {
    match value {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(Failure::Usage(format!(
            "--acks takes all, -1, 1 or 0, got {other:?}"
        ))),
    }
}

/// One line as (key, value): `separator` splits at its first occurrence; a line without it is
/// all value, with no key.
fn split_line(line: &[u8], separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    if let Some(sep) = separator.filter(|s| !s.is_empty()) {
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            return (
                Some(Bytes::copy_from_slice(&line[..at])),
                Bytes::copy_from_slice(&line[at + sep.len()..]),
            );
        }
    }
    (None, Bytes::copy_from_slice(line))
}

#[derive(Default)]
struct Tally {
    /// partition → (records, first offset, last offset)
    partitions: BTreeMap<i32, (u64, i64, i64)>,
    failed: u64,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, outcome: Result<crate::client::producer::RecordMetadata, ClientError>) {
        match outcome {
            Ok(meta) => {
                let entry =
                    self.partitions
                        .entry(meta.partition)
                        .or_insert((0, meta.offset, meta.offset));
                entry.0 += 1;
                entry.1 = entry.1.min(meta.offset);
                entry.2 = entry.2.max(meta.offset);
            }
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn produced(&self) -> u64 {
        self.partitions.values().map(|p| p.0).sum()
    }
}

fn spawn_reader(
    file: Option<PathBuf>,
) -> Result<mpsc::Receiver<std::io::Result<Vec<u8>>>, Failure> {
    let input: Box<dyn BufRead + Send> = match file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(&path)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let (mut tx, rx) = mpsc::channel(LINES_QUEUED_MAX);
    std::thread::spawn(move || {
        let mut input = input;
        loop {
            let mut line = Vec::new();
            let item = match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    Ok(line)
                }
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if futures::executor::block_on(tx.send(item)).is_err() || stop {
                break;
            }
        }
    });
    Ok(rx)
}

pub(super) async fn run(
    bootstrap: String,
    format: Format,
    args: ProduceArgs,
) -> Result<String, Failure> {
    let acks = parse_acks(&args.acks)?;
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|h| key_value(h, "--header").map(|(k, v)| (k, Some(Bytes::from(v)))))
        .collect::<Result<_, _>>()?;
    if args.batch_size == 0 {
        return Err(Failure::Usage("--batch-size must be at least 1".into()));
    }
    let mut lines = spawn_reader(args.file.clone())?;
    let mut config = ProducerConfig::new(&bootstrap);
    config.client_id = "shardlog-cli".into();
    config.acks = acks;
    config.idempotence = acks == -1;
    config.compression = args.compression.into();
    config.linger = std::time::Duration::from_millis(args.linger_ms);
    config.batch_size = args.batch_size;
    let producer = Producer::connect(config).await?;
    if args.partitioner == PartitionerChoice::RoundRobin {
        producer.set_partitioner(Box::new(RoundRobinPartitioner::default()));
    }
    let key = args.key.map(Bytes::from);
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let bar = progress(None, "records acknowledged");
    let topic: std::sync::Arc<str> = args.topic.as_str().into();
    let mut waiting: VecDeque<Delivery> = VecDeque::new();
    let mut tally = Tally::default();
    let settle = |waiting: &mut VecDeque<Delivery>, tally: &mut Tally| {
        while let Some(front) = waiting.front_mut() {
            match front.try_recv() {
                Ok(Some(outcome)) => tally.record(outcome),
                Ok(None) => break,
                Err(_) => tally.record(Err(ClientError::Config("the producer stopped".into()))),
            }
            waiting.pop_front();
            bar.inc(1);
        }
    };
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| Failure::Usage(format!("cannot read the input: {e}")))?;
        let (line_key, value) = split_line(&line, separator);
        let record = ProducerRecord {
            topic: topic.clone(),
            key: line_key.or_else(|| key.clone()),
            value: Some(value),
            headers: headers.clone(),
            partition: args.partition,
            timestamp: None,
        };
        waiting.push_back(producer.send_record(record).await?);
        settle(&mut waiting, &mut tally);
    }
    producer.flush().await;
    for delivery in waiting {
        tally.record(
            delivery
                .await
                .unwrap_or_else(|_| Err(ClientError::Config("the producer stopped".into()))),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(error) = &tally.first_error {
        return Err(Failure::Refused(format!(
            "{} of {} records failed; the first: {error}",
            tally.failed,
            tally.failed + tally.produced()
        )));
    }
    Ok(match format {
        Format::Json => serde_json::json!({
            "topic": args.topic,
            "records": tally.produced(),
            "partitions": tally.partitions.iter().map(|(p, (n, first, last))| serde_json::json!({
                "partition": p, "records": n, "first_offset": first, "last_offset": last,
            })).collect::<Vec<_>>(),
        })
        .to_string(),
        Format::Table => {
            let mut out = format!("produced {} records to {}", tally.produced(), args.topic);
            for (p, (n, first, last)) in &tally.partitions {
                if acks == 0 {
                    out.push_str(&format!(
                        "\n  partition {p}: {n} records (acks=0: no offsets)"
                    ));
                } else {
                    out.push_str(&format!(
                        "\n  partition {p}: {n} records, offsets {first}..={last}"
                    ));
                }
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator_only() {
        assert_eq!(
            split_line(b"k1:v:1", Some(b":")),
            (Some(Bytes::from_static(b"k1")), Bytes::from_static(b"v:1"))
        );
        assert_eq!(
            split_line(b"no-separator", Some(b"::")),
            (None, Bytes::from_static(b"no-separator"))
        );
        assert_eq!(split_line(b"a:b", None), (None, Bytes::from_static(b"a:b")));
        assert_eq!(
            split_line(b"::v", Some(b"::")),
            (Some(Bytes::new()), Bytes::from_static(b"v"))
        );
    }

    #[test]
    fn acks_take_kafka_spellings() {
        assert!(matches!(parse_acks("all"), Ok(-1)));
        assert!(matches!(parse_acks("-1"), Ok(-1)));
        assert!(matches!(parse_acks("0"), Ok(0)));
        assert!(matches!(parse_acks("2"), Err(Failure::Usage(_))));
    }
}

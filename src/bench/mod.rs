//! `shardlog bench`: a benchmark tool for any Kafka-compatible broker, on our own client.
//!
//! Workloads (`workload.rs`): `produce` (acknowledgement latency and throughput), `consume`
//! (read a topic's existing records back) and `e2e` (producers and consumers together; the
//! latency from a message's send time, stamped in its value, to its arrival at a consumer).
//! Every producer and consumer runs on its own thread with its own executor, as the broker's
//! shards do. A fixed `--rate` runs open-loop: latency counts from the time a message was due,
//! so a stalled broker cannot hide its stall by slowing the producer (coordinated omission).
//!
//! Each run checks its own count against the broker's: the sum over partitions of the end
//! offset moved (ListOffsets, `offsets.rs`) must equal what the tool says it produced, and a
//! consumer must read exactly the offsets it was given. A mismatch fails the run.
//!
//! Results (`report.rs`): a JSON file, an HdrHistogram percentile distribution (`.hgrm`) and an
//! SVG percentile chart (`chart.rs`); `compare.rs` sets two JSON results side by side.
//!
//! This module owns argument parsing and validation, and maps failures to the exit codes of
//! `crate::cli`: 0 done, 1 refused by the broker or failed verification, 2 bad arguments, 3
//! broker unreachable. It never touches broker internals: only the client and the wire.

mod chart;
mod compare;
mod offsets;
pub mod report;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::client::producer::Compression;
use crate::client::ClientError;

/// Largest message value accepted (Kafka's default `message.max.bytes` is about 1 MiB).
pub const MESSAGE_SIZE_MAX_BYTES: usize = 16 << 20;
/// Bytes at the start of a value that carry its send time (see `workload::Stamp`).
pub const STAMP_BYTES: usize = 8;
/// Most producer or consumer threads of one run.
pub const CLIENTS_MAX: usize = 1024;
/// Most partitions `--partitions` may ask for (the broker's own cap is larger).
pub const PARTITIONS_MAX: i32 = 100_000;
/// How long the first connection to the broker may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages of a run when neither `--messages` nor `--duration` is given.
pub const DEFAULT_MESSAGES: u64 = 100_000;

/// The workloads' arguments are boxed: `main`'s command enum holds this one, and a large
/// inline variant would make every command as big as the biggest.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Produces messages and measures acknowledgement latency and throughput.
    Produce(Box<ProduceArgs>),
    /// Reads the records already in a topic and measures throughput and poll latency.
    Consume(Box<ConsumeArgs>),
    /// Produces and consumes together; measures the latency from send to receipt.
    E2e(Box<E2eArgs>),
    /// Puts two JSON results side by side, with the ratio B/A of each metric.
    Compare(CompareArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TopicArgs {
    /// Topic to use; created if missing.
    #[arg(long, default_value = "shardlog-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created (an existing topic keeps its own).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=PARTITIONS_MAX as i64))]
    pub partitions: i32,
    /// Replication factor of the topic when it is created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
    pub replication_factor: i16,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LengthArgs {
    /// Messages to measure, warm-up excluded [default: 100000 unless --duration is given].
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Seconds to measure, warm-up excluded.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub duration: Option<f64>,
    /// Seconds at the start whose messages are not measured.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = seconds)]
    pub warmup: f64,
    /// Messages at the start that are not measured (on top of --warmup).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warmup_messages: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionerChoice {
    /// Kafka's default: murmur2 of the key, sticky batches for unkeyed messages.
    Default,
    /// One partition after another, keys ignored.
    RoundRobin,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProducerArgs {
    /// Producer threads, each with its own connection [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=CLIENTS_MAX as u64))]
    pub producers: Option<u64>,
    /// Bytes of each message value.
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=MESSAGE_SIZE_MAX_BYTES as u64))]
    pub size: u64,
    /// Acknowledgements: all (or -1), 1, or 0 (no answer).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    /// Milliseconds a batch waits for more messages before it is sent.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// A batch is sent once it holds this many bytes.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_bytes: u64,
    /// Memory per producer for messages not yet acknowledged; `send` waits when it is used up.
    #[arg(long, default_value_t = 32 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub buffer_bytes: u64,
    /// Idempotent producers (needs --acks all).
    #[arg(long)]
    pub idempotent: bool,
    /// Give each message a distinct key (partitioned by murmur2).
    #[arg(long)]
    pub keyed: bool,
    /// How unkeyed messages are spread over partitions.
    #[arg(long, value_enum, default_value_t = PartitionerChoice::Default)]
    pub partitioner: PartitionerChoice,
    /// Open loop: send this many messages per second in all, each at its due time; latency
    /// counts from that time.
    #[arg(long, value_name = "MSG_PER_SEC", value_parser = positive_rate, conflicts_with = "rate_mb")]
    pub rate: Option<f64>,
    /// Open loop at this many MB (10^6 bytes of values) per second in all.
    #[arg(long, value_name = "MB_PER_SEC", value_parser = positive_rate)]
    pub rate_mb: Option<f64>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Consumer threads; the partitions are dealt among them [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=CLIENTS_MAX as u64))]
    pub consumers: Option<u64>,
    /// Longest time in ms the broker may hold a fetch waiting for data.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub fetch_wait_ms: u64,
    /// Most bytes one fetch may return per partition.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pub fetch_partition_bytes: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Writes the result as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Writes the latency distribution in HdrHistogram's percentile format.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Writes a latency-by-percentile chart.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// No progress display while running.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub length: LengthArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read (it must exist).
    #[arg(long, default_value = "shardlog-bench")]
    pub topic: String,
    /// Messages to read [default: every record in the topic when the run starts].
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Seconds to read at most (stops earlier once everything is read).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub duration: Option<f64>,
    /// Seconds at the start whose messages are not measured.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = seconds)]
    pub warmup: f64,
    /// Messages at the start that are not measured.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warmup_messages: u64,
    /// Expected bytes of every value: the run fails if the byte total is not count x size.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=MESSAGE_SIZE_MAX_BYTES as u64))]
    pub size: Option<u64>,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub length: LengthArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The baseline result (JSON from --json).
    pub baseline: PathBuf,
    /// The result compared with it.
    pub candidate: PathBuf,
    /// Writes a chart with both latency curves.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

fn seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !value.is_finite() || !(0.0..=1e7).contains(&value) {
        return Err(format!("{text} is not between 0 and 10^7 seconds"));
    }
    Ok(value)
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    let value = seconds(text)?;
    if value <= 0.0 {
        return Err("must be more than 0 seconds".into());
    }
    Ok(value)
}

fn positive_rate(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !value.is_finite() || value <= 0.0 || value > 1e9 {
        return Err(format!("{text} is not a rate above 0 and at most 10^9"));
    }
    Ok(value)
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("{text:?} is not all, -1, 1 or 0")),
    }
}

pub fn acks_name(acks: i16) -> &'static str {
    match acks {
        -1 => "all",
        0 => "0",
        _ => "1",
    }
}

/// Why a run ended badly; each kind has its exit code.
#[derive(Debug)]
pub enum BenchError {
    /// Arguments that cannot work together, or a setting the client refuses.
    Usage(String),
    /// The broker could not be reached (or the connection broke).
    Unreachable(String),
    /// The broker answered with an error, or its answers were malformed.
    Refused(String),
    /// The run finished but its counts do not match the broker's, or messages failed.
    Verification(String),
    /// A result file could not be written.
    Output(String),
}

impl BenchError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            BenchError::Usage(_) => EXIT_USAGE,
            BenchError::Unreachable(_) => EXIT_UNREACHABLE,
            BenchError::Refused(_) | BenchError::Verification(_) | BenchError::Output(_) => {
                EXIT_REFUSED
            }
        })
    }
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}"),
            BenchError::Unreachable(m) => write!(f, "broker unreachable: {m}"),
            BenchError::Refused(m) => write!(f, "{m}"),
            BenchError::Verification(m) => write!(f, "verification failed: {m}"),
            BenchError::Output(m) => write!(f, "cannot write results: {m}"),
        }
    }
}

/// Prints to stdout; a reader that went away (`| head`) is not an error worth a panic.
pub(crate) fn print_lossless(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

impl From<ClientError> for BenchError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Io { .. } | ClientError::Timeout(_) => {
                BenchError::Unreachable(error.to_string())
            }
            ClientError::Config(_) => BenchError::Usage(error.to_string()),
            ClientError::Kafka { .. } | ClientError::Protocol { .. } => {
                BenchError::Refused(error.to_string())
            }
        }
    }
}

pub fn run(bootstrap: &str, command: BenchCommand) -> ExitCode {
    let outcome = match command {
        BenchCommand::Produce(args) => workload::produce(bootstrap, *args),
        BenchCommand::Consume(args) => workload::consume(bootstrap, *args),
        BenchCommand::E2e(args) => workload::end_to_end(bootstrap, *args),
        BenchCommand::Compare(args) => compare::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shardlog bench: {error}");
            error.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_parsers_accept_what_they_document() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
        assert_eq!(seconds("0"), Ok(0.0));
        assert!(positive_seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(seconds("NaN").is_err());
        assert!(positive_rate("inf").is_err());
        assert_eq!(positive_rate("2.5"), Ok(2.5));
    }

    #[test]
    fn client_errors_map_to_the_cli_exit_codes() {
        let io = ClientError::Io {
            broker: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(matches!(BenchError::from(io), BenchError::Unreachable(_)));
        let refused = ClientError::from_code(3, None).expect("an error");
        assert!(matches!(BenchError::from(refused), BenchError::Refused(_)));
        let config = ClientError::Config("acks=7".into());
        assert!(matches!(BenchError::from(config), BenchError::Usage(_)));
    }
}

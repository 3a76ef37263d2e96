//! The `shardlog` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use shardlog::cli;
use shardlog::config::{self, BrokerConfig};

#[derive(Parser)]
#[command(
    name = "shardlog",
    version,
    about = "A Kafka-compatible streaming platform"
)]
struct Cli {
    /// The broker to talk to (client commands).
    #[arg(
        long,
        global = true,
        env = "SHARDLOG_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Output for client commands: a table, or JSON for scripts.
    #[arg(long, global = true, value_enum, default_value = "table")]
    format: cli::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a broker. Without CONFIG it runs on the embedded defaults: 127.0.0.1:9092, data
    /// under ./data, topics auto-created.
    Broker {
        /// A Kafka-style server.properties file.
        config: Option<PathBuf>,
        /// Sets a property over the file's value, as `key=value`; may be repeated.
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Topics: create, list, describe, delete, alter-config, add-partitions.
    Topic {
        #[command(subcommand)]
        verb: cli::TopicCommand,
    },
    /// Produces one record per line of stdin (or --file).
    Produce(cli::ProduceArgs),
    /// Consumes records and prints them.
    Consume(cli::ConsumeArgs),
    /// Consumer groups: list, describe (with lag), delete, reset-offsets.
    Group {
        #[command(subcommand)]
        verb: cli::GroupCommand,
    },
    /// The cluster: info.
    Cluster {
        #[command(subcommand)]
        verb: cli::ClusterCommand,
    },
    /// Benchmarks: produce, consume, end-to-end latency, compare results.
    Bench {
        #[command(subcommand)]
        verb: shardlog::bench::BenchCommand,
    },
}

/// Exit code for a configuration the broker refuses to start with.
const EXIT_BAD_CONFIG: u8 = 2;
/// How long a stop may take, from the first SIGTERM/SIGINT, before the process ends anyway:
/// connections drain for up to 5 s and every log is then synced and closed.
const STOP_GRACE_SECS: u64 = 30;

/// The first SIGTERM or SIGINT asks the broker to stop cleanly (`stop`); a second one ends the
/// process at once, as servers do, after a best-effort sync of what the kernel holds (the
/// shards' unwritten buffers are lost, but nothing acknowledged is: acknowledged data is
/// already durable). A stop that takes longer than `STOP_GRACE_SECS` ends the same way.
fn watch_signals(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first = true;
            for signal in signals.forever() {
                if first {
                    first = false;
                    stop.store(true, Ordering::Relaxed);
                    tracing::info!(signal, "stopping; a second signal ends the process at once");
                    std::thread::spawn(|| {
                        std::thread::sleep(std::time::Duration::from_secs(STOP_GRACE_SECS));
                        eprintln!(
                            "shardlog: the broker did not stop within {STOP_GRACE_SECS} s; exiting"
                        );
                        end_now(EXIT_STOP_TIMEOUT);
                    });
                    continue;
                }
                eprintln!("shardlog: second signal {signal}; exiting now");
                end_now(128 + signal);
            }
        })?;
    Ok(())
}

/// Ends the process without waiting for the shards, after asking the kernel to write back
/// what it holds.
fn end_now(code: i32) -> ! {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::process::exit(code)
}

/// Exit code when a stop did not finish in time, as sysexits' EX_TEMPFAIL.
const EXIT_STOP_TIMEOUT: i32 = 75;

/// Exit code after a bug (a panic), as sysexits' EX_SOFTWARE.
const EXIT_INTERNAL_ERROR: i32 = 70;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic is a bug. One shard dying while its siblings go on would leave partitions
    // unserved behind a listening port, so the whole process stops.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("shardlog: internal error; exiting");
        std::process::exit(EXIT_INTERNAL_ERROR);
    }));
    let cli = Cli::parse();
    match cli.command {
        Command::Broker { config, overrides } => broker(config, overrides),
        Command::Topic { verb } => cli::topic(&cli.bootstrap, cli.format, verb),
        Command::Produce(args) => cli::produce(&cli.bootstrap, cli.format, args),
        Command::Consume(args) => cli::consume(&cli.bootstrap, cli.format, args),
        Command::Group { verb } => cli::group(&cli.bootstrap, cli.format, verb),
        Command::Cluster { verb } => cli::cluster(&cli.bootstrap, cli.format, verb),
        Command::Bench { verb } => shardlog::bench::run(&cli.bootstrap, verb),
    }
}

fn broker(path: Option<PathBuf>, overrides: Vec<String>) -> ExitCode {
    let mut pairs = Vec::with_capacity(overrides.len());
    for arg in &overrides {
        match config::parse_override(arg) {
            Ok(pair) => pairs.push(pair),
            Err(e) => {
                eprintln!("shardlog: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
    }
    let (config, unknown) = match BrokerConfig::load(path.as_deref(), &pairs) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("shardlog: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    for key in unknown {
        match key.line {
            Some(line) => tracing::warn!("unknown config key '{}' (line {line}) ignored", key.key),
            None => tracing::warn!("unknown config key '{}' ignored", key.key),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = watch_signals(stop.clone()) {
        eprintln!("shardlog: cannot install signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let result = shardlog::broker::run(config, stop.clone(), |listening| {
        // Lines scripts and tests wait for; the ports are the real ones when 0 was asked for.
        // The metrics line comes first, so whoever waits for the broker line has both.
        if let Some(metrics) = listening.metrics {
            println!("shardlog metrics listening on {metrics}");
        }
        println!("shardlog broker listening on {}", listening.kafka);
    });
    match result {
        Ok(()) => {
            tracing::info!(signalled = stop.load(Ordering::Relaxed), "broker stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shardlog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

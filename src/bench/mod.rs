//! `shardlog bench`: a benchmark tool for any Kafka-compatible broker.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Produce workload.
    Produce,
}

pub fn run(_bootstrap: &str, _command: BenchCommand) -> ExitCode {
    eprintln!("shardlog: bench is not built yet");
    ExitCode::from(2)
}

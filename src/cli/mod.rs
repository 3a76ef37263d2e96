//! The client commands of the `shardlog` binary, in the manner of `rpk` and `kcat`, on the Rust
//! client (`crate::client`); each noun has its file: `topic`, `produce`, `consume`, `group`,
//! `cluster`. Output is a table for people or `--format json` for scripts; progress bars go to
//! stderr and only when it is a terminal. Exit codes scripts can trust: 0 done, 1 the broker
//! refused or a record failed (the Kafka error is printed), 2 bad arguments, 3 the broker could
//! not be reached.

mod cluster;
mod consume;
mod group;
mod produce;
mod topic;

use std::future::Future;
use std::process::ExitCode;

pub use cluster::ClusterCommand;
pub use consume::ConsumeArgs;
pub use group::GroupCommand;
pub use produce::ProduceArgs;
pub use topic::TopicCommand;

use crate::client::{blocking, ClientError};

pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// What a command ends with: its output, or an error and the exit code that goes with it.
#[derive(Debug)]
pub enum Failure {
    Client(ClientError),
    /// Bad arguments found after parsing (clap reports its own with exit code 2).
    Usage(String),
    /// The command ran but did not do all it was asked (some records failed).
    Refused(String),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

fn failed(failure: &Failure) -> ExitCode {
    match failure {
        Failure::Client(error) => {
            eprintln!("shardlog: {error}");
            match error {
                ClientError::Io { .. } | ClientError::Timeout(_) => {
                    ExitCode::from(EXIT_UNREACHABLE)
                }
                ClientError::Config(_) => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::from(EXIT_REFUSED),
            }
        }
        Failure::Usage(message) => {
            eprintln!("shardlog: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Failure::Refused(message) => {
            eprintln!("shardlog: {message}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

/// Runs a command's future on the client runtime and turns its outcome into output and an exit
/// code. The future returns the text to print on stdout (nothing when empty).
fn run<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<String, Failure>> + 'static,
{
    match blocking::run(body) {
        Ok(Ok(text)) => {
            use std::io::Write;
            // A reader that went away (`| head`) has what it wanted: not an error.
            if !text.is_empty() {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(failure)) => failed(&failure),
        Err(e) => {
            eprintln!("shardlog: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// Splits `KEY=VALUE`; `what` names the flag in the message.
fn key_value(arg: &str, what: &str) -> Result<(String, String), Failure> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(Failure::Usage(format!(
            "{what} takes KEY=VALUE, got {arg:?}"
        ))),
    }
}

/// A table with a header row; columns are as wide as their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let width = widths.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{cell:<width$}"));
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A progress bar on stderr, drawn only when stderr is a terminal: `total` known, or a
/// counting spinner.
fn progress(total: Option<u64>, what: &'static str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bar:40} {pos}/{len} {msg} ({per_sec}, eta {eta})",
            )
            .expect("a valid template"),
        ),
        None => indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} {msg} ({per_sec})")
                .expect("a valid template"),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_message(what);
    bar
}

pub fn topic(bootstrap: &str, format: Format, command: TopicCommand) -> ExitCode {
    let bootstrap = bootstrap.to_owned();
    run(move || topic::run(bootstrap, format, command))
}

pub fn produce(bootstrap: &str, format: Format, args: ProduceArgs) -> ExitCode {
    let bootstrap = bootstrap.to_owned();
    run(move || produce::run(bootstrap, format, args))
}

pub fn consume(bootstrap: &str, format: Format, args: ConsumeArgs) -> ExitCode {
    let bootstrap = bootstrap.to_owned();
    run(move || consume::run(bootstrap, format, args))
}

pub fn group(bootstrap: &str, format: Format, command: GroupCommand) -> ExitCode {
    let bootstrap = bootstrap.to_owned();
    run(move || group::run(bootstrap, format, command))
}

pub fn cluster(bootstrap: &str, format: Format, command: ClusterCommand) -> ExitCode {
    let bootstrap = bootstrap.to_owned();
    run(move || cluster::run(bootstrap, format, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_to_the_widest_cell() {
        let out = table(
            &["NAME", "N"],
            &[
                vec!["a".into(), "10".into()],
                vec!["longer".into(), "2".into()],
            ],
        );
        assert_eq!(out, "NAME    N\na       10\nlonger  2");
    }

    #[test]
    fn key_value_needs_a_key_and_an_equals_sign() {
        assert!(matches!(key_value("a=b=c", "-c"), Ok((k, v)) if k == "a" && v == "b=c"));
        assert!(matches!(key_value("=b", "-c"), Err(Failure::Usage(_))));
        assert!(matches!(key_value("ab", "-c"), Err(Failure::Usage(m)) if m.contains("KEY=VALUE")));
    }
}

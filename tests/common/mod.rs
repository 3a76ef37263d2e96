//! Test support: runs the real `shardlog` binary as a child process on an OS-chosen port,
//! with its own data directory, two unpinned shards and a small io_uring buffer.

#![allow(dead_code)]

pub mod cluster;
pub mod metrics;
pub mod proxy;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Broker {
    child: Option<Child>,
    pub bootstrap: String,
    /// The metrics endpoint's `HOST:PORT`, when the test turned it on (`metrics.listener`).
    pub metrics: Option<String>,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    overrides: Vec<(String, String)>,
}

impl Broker {
    /// Starts a broker on `data_dir` with the test defaults plus `overrides`.
    pub fn start(data_dir: &Path, overrides: &[(&str, &str)]) -> Broker {
        let mut broker = Broker {
            child: None,
            bootstrap: String::new(),
            metrics: None,
            data_dir: data_dir.to_path_buf(),
            log_path: data_dir.with_extension("broker.log"),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("broker log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardlog"));
        command.arg("broker");
        let mut settings: Vec<(String, String)> = vec![
            ("log.dirs".into(), self.data_dir.display().to_string()),
            ("listeners".into(), "PLAINTEXT://127.0.0.1:0".into()),
            ("num.shards".into(), "2".into()),
            ("shard.pinning".into(), "false".into()),
            ("shard.io.memory.bytes".into(), "1048576".into()),
            ("metrics.listener".into(), "none".into()),
        ];
        settings.extend(self.overrides.iter().cloned());
        for (key, value) in settings {
            command.arg("--override").arg(format!("{key}={value}"));
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start shardlog");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The broker prints the metrics line (if any) before the broker line.
            let mut metrics = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("shardlog metrics listening on ") {
                    metrics = Some(address.to_string());
                }
                if let Some(address) = line.strip_prefix("shardlog broker listening on ") {
                    let _ = tx.send((address.to_string(), metrics.take()));
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((address, metrics)) => {
                self.bootstrap = address;
                self.metrics = metrics;
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "broker did not start; its log:\n{}",
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_within(libc::SIGTERM, Duration::from_secs(30)).0
    }

    /// Sends `signal` and waits up to `limit` for the exit; past it, panics with every
    /// thread's stack. Returns the status and how long the stop took.
    pub fn stop_within(&mut self, signal: i32, limit: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(status) => (status.expect("wait"), started.elapsed()),
            Err(_) => {
                // Where every thread is stuck, for whoever reads the failure.
                let stacks = Command::new("timeout")
                    .args(["30", "gdb", "-p", &pid.to_string(), "-batch", "-ex"])
                    .arg("thread apply all bt")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_else(|e| format!("(no stacks: {e})"));
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                panic!(
                    "broker did not stop within {limit:?} of signal {signal}\n---- threads ----\n{stacks}\n---- log ----\n{}",
                    self.log()
                );
            }
        }
    }

    /// Sends `signal` to the running broker without waiting.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the broker first");
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("wait").is_none(),
            None => false,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- broker log (last lines) ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout`. For conditions the
/// broker reaches on its own schedule (retention), not as a stand-in for synchronisation.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A librdkafka consumer assigned to `partitions` of `topic` from the beginning, with no group
/// behaviour (no commits).
pub fn assigned_consumer(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for &partition in partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// The path of an example binary (a helper process for a test), built first if needed.
pub fn example(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().expect("test exe");
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    let path = path.join("examples").join(name);
    if !path.exists() {
        // `cargo test` builds examples; a run of one test file alone may not have.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .expect("run cargo");
        assert!(status.success(), "cannot build example {name}");
    }
    path
}

/// Broker settings for group tests: rebalances start at once and short sessions are allowed.
pub const GROUP_SETTINGS: [(&str, &str); 2] = [
    ("group.initial.rebalance.delay.ms", "0"),
    ("group.min.session.timeout.ms", "500"),
];

/// Runs the `shardlog` binary as a user would, against `bootstrap`, with `input` on its stdin.
pub fn shardlog_with_input(args: &[&str], bootstrap: &str, input: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .env("SHARDLOG_BOOTSTRAP", bootstrap)
        .env("RUST_LOG", "warn")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardlog");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("shardlog output")
}

pub fn shardlog(args: &[&str], bootstrap: &str) -> Output {
    shardlog_with_input(args, bootstrap, None)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command failed as bad arguments do: exit code 2 and a message containing `says`.
pub fn assert_usage_error(out: &Output, args: &[&str], says: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
}

/// Runs the executor's other tasks until `condition` holds; fails after a minute.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        shardlog::runtime::sleep(Duration::from_millis(10)).await;
    }
}

/// A broker with `GROUP_SETTINGS` on a data directory inside `dir`.
pub fn start_group_broker(dir: &tempfile::TempDir) -> Broker {
    Broker::start(&dir.path().join("data"), &GROUP_SETTINGS)
}

/// A consumer for group tests: from the beginning, with short fetch waits.
pub fn group_consumer_config(bootstrap: &str) -> shardlog::client::consumer::ConsumerConfig {
    let mut consumer = shardlog::client::consumer::ConsumerConfig::new(bootstrap);
    consumer.auto_offset_reset = shardlog::client::consumer::Offset::Beginning;
    consumer.max_wait = Duration::from_millis(50);
    consumer
}

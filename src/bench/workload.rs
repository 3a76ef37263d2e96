//! Running a workload: producer and consumer threads (one executor each), started together,
//! watched from the calling thread (progress), then merged, verified against the broker's
//! offsets and reported.
//!
//! Threads share only atomics, one mutex (e2e's consumer targets, read between polls) and a
//! channel of events to the watching thread; every client object stays on its own executor.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;

use crate::client::consumer::{Consumer, ConsumerConfig, Offset};
use crate::client::partitioner::RoundRobinPartitioner;
use crate::client::producer::{Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use crate::client::ClientError;
use crate::runtime;

use super::offsets::{self, PartitionOffsets};
use super::report::{self, LatencySummary, RunReport, Verification};
use super::{
    acks_name, chart, print_lossless, BenchError, ConsumeArgs, ConsumerArgs, E2eArgs, LengthArgs,
    OutputArgs, PartitionerChoice, ProduceArgs, ProducerArgs, TopicArgs, CONNECT_TIMEOUT,
    DEFAULT_MESSAGES, STAMP_BYTES,
};

/// Registered io_uring memory of each client thread: clients do no direct file I/O.
const WORKER_IO_MEMORY_BYTES: usize = 512 << 10;
/// Random bytes beyond one value in each producer's payload pool, so that consecutive values
/// differ (a compressor sees no repeats).
const PAYLOAD_POOL_EXTRA_BYTES: usize = 4096;
/// How long a record may take, retries included, before its delivery fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// A consumer that has been told where to stop and makes no progress for this long fails.
const CONSUMER_STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the broker's end offsets may take to show what was produced (acks=0 answers
/// before the append; replicated high watermarks move after the acknowledgement).
const OFFSETS_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const OFFSETS_SETTLE_POLL: Duration = Duration::from_millis(100);
/// How often a worker looks for the start signal.
const START_POLL: Duration = Duration::from_millis(1);
/// Progress refresh on a terminal, and the period of plain progress lines otherwise.
const PROGRESS_TICK: Duration = Duration::from_millis(200);
const PROGRESS_LINE_PERIOD: Duration = Duration::from_secs(1);

/// The top bit of a value's stamp marks a warm-up message.
const WARMUP_BIT: u64 = 1 << 63;

/// Writes the send time (ns since the run's epoch) and the warm-up flag into the first
/// `STAMP_BYTES` of a value.
pub fn encode_stamp(value: &mut [u8], sent_ns: u64, warmup: bool) {
    let word = (sent_ns & !WARMUP_BIT) | if warmup { WARMUP_BIT } else { 0 };
    value[..STAMP_BYTES].copy_from_slice(&word.to_be_bytes());
}

/// The send time and warm-up flag of a value; `None` when it is too short to hold them.
pub fn decode_stamp(value: &[u8]) -> Option<(u64, bool)> {
    let bytes: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
    let word = u64::from_be_bytes(bytes);
    Some((word & !WARMUP_BIT, word & WARMUP_BIT != 0))
}

/// `total` split into `parts` shares that differ by at most one, larger ones first.
pub fn split_evenly(total: u64, parts: usize) -> Vec<u64> {
    let parts_u64 = parts.max(1) as u64;
    (0..parts_u64)
        .map(|i| total / parts_u64 + u64::from(i < total % parts_u64))
        .collect()
}

/// How many records to read from each partition to read `wanted` in all, as evenly as the
/// `available` counts allow (water filling); never more than a partition has.
pub fn split_quota(available: &[u64], wanted: u64) -> Vec<u64> {
    let mut quota = vec![0; available.len()];
    let mut order: Vec<usize> = (0..available.len()).collect();
    order.sort_by_key(|&i| available[i]);
    let mut remaining = wanted;
    for (position, &index) in order.iter().enumerate() {
        let partitions_left = (order.len() - position) as u64;
        let fair = remaining / partitions_left + u64::from(remaining % partitions_left != 0);
        let take = fair.min(available[index]).min(remaining);
        quota[index] = take;
        remaining -= take;
    }
    quota
}

/// Partitions dealt to `consumers` in turn.
pub fn deal(partitions: &[i32], consumers: usize) -> Vec<Vec<i32>> {
    let mut hands = vec![Vec::new(); consumers.max(1)];
    let count = hands.len();
    for (i, &p) in partitions.iter().enumerate() {
        hands[i % count].push(p);
    }
    hands
}

/// A small generator for payload bytes: values need no cryptographic quality, only no
/// repeats a compressor could exploit.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// State shared by every thread of one run.
struct Shared {
    epoch: Instant,
    ready: AtomicUsize,
    go: AtomicBool,
    start_ns: AtomicU64,
    abort: AtomicBool,
    sent: AtomicU64,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    /// e2e: where each partition's consumer stops, once the producers are done.
    targets: Mutex<Option<HashMap<i32, i64>>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            epoch: Instant::now(),
            ready: AtomicUsize::new(0),
            go: AtomicBool::new(false),
            start_ns: AtomicU64::new(0),
            abort: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            targets: Mutex::new(None),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    async fn wait_for_start(&self) -> u64 {
        self.ready.fetch_add(1, Ordering::SeqCst);
        while !self.go.load(Ordering::SeqCst) {
            runtime::sleep(START_POLL).await;
        }
        self.start_ns.load(Ordering::SeqCst)
    }
}

/// What one worker measured.
struct Tally {
    latency: Histogram<u64>,
    messages: u64,
    bytes: u64,
    total_messages: u64,
    total_bytes: u64,
    /// ns since the epoch: first measured send (or read), last measured acknowledgement.
    window: Option<(u64, u64)>,
    errors: u64,
    first_error: Option<String>,
    /// Consumers: per partition (partition, start, next offset, records read).
    partitions: Vec<(i32, i64, i64, u64)>,
    /// Consumers: offsets skipped over inside their ranges (lost or compacted records).
    gaps: u64,
    /// Consumers: values whose size or stamp was not what the run expects.
    malformed: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: report::latency_histogram(),
            messages: 0,
            bytes: 0,
            total_messages: 0,
            total_bytes: 0,
            window: None,
            errors: 0,
            first_error: None,
            partitions: Vec::new(),
            gaps: 0,
            malformed: 0,
        }
    }

    fn widen(&mut self, from_ns: u64, to_ns: u64) {
        self.window = Some(match self.window {
            Some((a, b)) => (a.min(from_ns), b.max(to_ns)),
            None => (from_ns, to_ns),
        });
    }

    fn merge(&mut self, other: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.total_messages += other.total_messages;
        self.total_bytes += other.total_bytes;
        if let Some((a, b)) = other.window {
            self.widen(a, b);
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.partitions.extend(other.partitions);
        self.gaps += other.gaps;
        self.malformed += other.malformed;
    }

    fn duration_s(&self) -> f64 {
        self.window
            .map_or(0.0, |(a, b)| (b.saturating_sub(a)) as f64 / 1e9)
    }
}

fn record_latency(histogram: &mut Histogram<u64>, nanoseconds: u64) {
    histogram.saturating_record((nanoseconds / 1000).max(1));
}

struct ProducerPlan {
    index: usize,
    topic: String,
    config: ProducerConfig,
    partitioner: PartitionerChoice,
    size: usize,
    keyed: bool,
    /// Messages to measure; `None` in duration mode.
    measured_quota: Option<u64>,
    warmup_quota: u64,
    warmup_ns: u64,
    /// Duration mode: stop sending this long after the start.
    end_ns: Option<u64>,
    /// Open loop: messages per second of this producer.
    rate: Option<f64>,
    /// Whether each value carries its send time (end-to-end runs); otherwise values are
    /// slices of the payload pool, not copies.
    stamp: bool,
}

/// Counts one acknowledgement (or failure) of a record sent at `sent_ns`.
fn acknowledge(
    tally: &mut Tally,
    shared: &Shared,
    size: u64,
    outcome: Result<RecordMetadata, ClientError>,
    sent_ns: u64,
    warmup: bool,
) {
    match outcome {
        Ok(_) => {
            let now = shared.now_ns();
            shared.acked.fetch_add(1, Ordering::Relaxed);
            shared.acked_bytes.fetch_add(size, Ordering::Relaxed);
            tally.total_messages += 1;
            tally.total_bytes += size;
            if !warmup {
                tally.messages += 1;
                tally.bytes += size;
                record_latency(&mut tally.latency, now.saturating_sub(sent_ns));
                tally.widen(sent_ns, now);
            }
        }
        Err(error) => {
            tally.errors += 1;
            tally.first_error.get_or_insert(error.to_string());
            shared.abort.store(true, Ordering::SeqCst);
        }
    }
}

async fn run_producer(plan: ProducerPlan, shared: Arc<Shared>) -> Result<Tally, BenchError> {
    let bootstrap = plan.config.bootstrap.clone();
    let producer = runtime::timeout(CONNECT_TIMEOUT, Producer::connect(plan.config))
        .await
        .ok_or_else(|| BenchError::Unreachable(format!("no connection to {bootstrap}")))??;
    if plan.partitioner == PartitionerChoice::RoundRobin {
        producer.set_partitioner(Box::new(RoundRobinPartitioner::default()));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15 ^ (plan.index as u64 + 1);
    let pool: Bytes = (0..plan.size + PAYLOAD_POOL_EXTRA_BYTES)
        .map(|_| xorshift(&mut seed) as u8)
        .collect::<Vec<u8>>()
        .into();
    let start_ns = shared.wait_for_start().await;
    // Acknowledgements are counted by the producer's callbacks, on this executor.
    let tally = Rc::new(RefCell::new(Tally::new()));
    let size = plan.size as u64;
    let topic: std::sync::Arc<str> = plan.topic.as_str().into();
    let mut sequence = 0u64;
    let mut measured = 0u64;
    let outcome: Result<(), BenchError> = loop {
        if shared.abort.load(Ordering::Relaxed) {
            break Ok(());
        }
        if plan.measured_quota.is_some_and(|quota| measured >= quota) {
            break Ok(());
        }
        let due_ns = match plan.rate {
            Some(rate) => start_ns + (sequence as f64 * 1e9 / rate) as u64,
            None => shared.now_ns(),
        };
        if plan.end_ns.is_some_and(|end| due_ns >= start_ns + end) {
            break Ok(());
        }
        if plan.rate.is_some() {
            let now = shared.now_ns();
            if due_ns > now {
                runtime::sleep(Duration::from_nanos(due_ns - now)).await;
            }
        }
        let warmup = sequence < plan.warmup_quota || due_ns - start_ns < plan.warmup_ns;
        let offset = (sequence as usize).wrapping_mul(61) % PAYLOAD_POOL_EXTRA_BYTES;
        let value = if plan.stamp && plan.size >= STAMP_BYTES {
            let mut value = BytesMut::from(&pool[offset..offset + plan.size]);
            encode_stamp(&mut value, due_ns, warmup);
            value.freeze()
        } else {
            pool.slice(offset..offset + plan.size)
        };
        let key = plan.keyed.then(|| {
            Bytes::copy_from_slice(&(((plan.index as u64) << 40) | sequence).to_be_bytes())
        });
        let record = ProducerRecord {
            topic: topic.clone(),
            key,
            value: Some(value),
            ..Default::default()
        };
        let counted = tally.clone();
        let seen = shared.clone();
        let sent = producer
            .send_with_callback(record, move |outcome| {
                acknowledge(
                    &mut counted.borrow_mut(),
                    &seen,
                    size,
                    outcome,
                    due_ns,
                    warmup,
                )
            })
            .await;
        if let Err(e) = sent {
            break Err(e.into());
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
        sequence += 1;
        if !warmup {
            measured += 1;
        }
    };
    if outcome.is_err() {
        shared.abort.store(true, Ordering::SeqCst);
    }
    // Every callback has run once the producer is flushed.
    producer.flush().await;
    drop(producer);
    let tally = std::mem::replace(&mut *tally.borrow_mut(), Tally::new());
    outcome.map(|()| tally)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ConsumeMode {
    /// Read existing records; latency is per poll.
    Backlog,
    /// Read what producers send meanwhile; latency from each value's stamp.
    EndToEnd,
}

struct ConsumerPlan {
    topic: String,
    config: ConsumerConfig,
    mode: ConsumeMode,
    /// (partition, first offset to read, where to stop if known at the start).
    partitions: Vec<(i32, i64, Option<i64>)>,
    warmup_quota: u64,
    warmup_ns: u64,
    end_ns: Option<u64>,
    expected_size: Option<u64>,
}

struct PartitionProgress {
    partition: i32,
    start: i64,
    next: i64,
    target: Option<i64>,
    count: u64,
    paused: bool,
}

async fn run_consumer(plan: ConsumerPlan, shared: Arc<Shared>) -> Result<Tally, BenchError> {
    let bootstrap = plan.config.bootstrap.clone();
    let mut consumer = runtime::timeout(CONNECT_TIMEOUT, Consumer::connect(plan.config))
        .await
        .ok_or_else(|| BenchError::Unreachable(format!("no connection to {bootstrap}")))??;
    let assignment: Vec<(&str, i32)> = plan
        .partitions
        .iter()
        .map(|&(p, _, _)| (plan.topic.as_str(), p))
        .collect();
    consumer.assign(&assignment);
    let mut progress: Vec<PartitionProgress> = plan
        .partitions
        .iter()
        .map(|&(partition, start, target)| {
            consumer.seek(&plan.topic, partition, Offset::At(start));
            PartitionProgress {
                partition,
                start,
                next: start,
                target,
                count: 0,
                paused: false,
            }
        })
        .collect();
    let index: HashMap<i32, usize> = progress
        .iter()
        .enumerate()
        .map(|(i, p)| (p.partition, i))
        .collect();
    let start_ns = shared.wait_for_start().await;
    let mut tally = Tally::new();
    let mut last_progress_ns = start_ns;
    loop {
        if shared.abort.load(Ordering::Relaxed) {
            break;
        }
        if progress.iter().any(|p| p.target.is_none()) {
            let targets = shared
                .targets
                .lock()
                .map_err(|_| BenchError::Refused("a thread of the run failed".into()))?
                .clone();
            if let Some(targets) = targets {
                for p in &mut progress {
                    p.target = Some(targets.get(&p.partition).copied().unwrap_or(p.start));
                }
                last_progress_ns = shared.now_ns();
            }
        }
        for p in &mut progress {
            if !p.paused && p.target.is_some_and(|t| p.next >= t) {
                consumer.pause(&plan.topic, p.partition);
                p.paused = true;
            }
        }
        if progress.iter().all(|p| p.paused) {
            break;
        }
        let now = shared.now_ns();
        if plan.end_ns.is_some_and(|end| now - start_ns >= end) {
            break;
        }
        let told_where_to_stop = progress.iter().all(|p| p.target.is_some());
        if told_where_to_stop && now - last_progress_ns > CONSUMER_STALL_TIMEOUT.as_nanos() as u64 {
            let behind: Vec<String> = progress
                .iter()
                .filter(|p| !p.paused)
                .map(|p| {
                    format!(
                        "{}-{} at {} of {:?}",
                        plan.topic, p.partition, p.next, p.target
                    )
                })
                .collect();
            return Err(BenchError::Verification(format!(
                "consumer made no progress for {} s: {}",
                CONSUMER_STALL_TIMEOUT.as_secs(),
                behind.join(", ")
            )));
        }
        let before = shared.now_ns();
        let records = consumer.poll().await?;
        let after = shared.now_ns();
        let mut measured_in_poll = 0u64;
        let mut read_in_poll = 0u64;
        for record in records {
            let Some(&slot) = index.get(&record.partition) else {
                continue;
            };
            let p = &mut progress[slot];
            if record.offset < p.next || p.target.is_some_and(|t| record.offset >= t) {
                continue;
            }
            tally.gaps += (record.offset - p.next) as u64;
            p.next = record.offset + 1;
            p.count += 1;
            read_in_poll += 1;
            let value = record.value.as_deref().unwrap_or_default();
            let length = value.len() as u64;
            tally.total_messages += 1;
            tally.total_bytes += length;
            shared.received.fetch_add(1, Ordering::Relaxed);
            shared.received_bytes.fetch_add(length, Ordering::Relaxed);
            if plan.expected_size.is_some_and(|size| size != length) {
                tally.malformed += 1;
            }
            let warmup = match plan.mode {
                ConsumeMode::Backlog => {
                    tally.total_messages <= plan.warmup_quota || before - start_ns < plan.warmup_ns
                }
                ConsumeMode::EndToEnd => match decode_stamp(value) {
                    Some((sent_ns, warmup)) => {
                        if !warmup {
                            record_latency(&mut tally.latency, after.saturating_sub(sent_ns));
                            tally.widen(sent_ns, after);
                        }
                        warmup
                    }
                    None => {
                        tally.malformed += 1;
                        true
                    }
                },
            };
            if !warmup {
                tally.messages += 1;
                tally.bytes += length;
                measured_in_poll += 1;
            }
        }
        if read_in_poll > 0 {
            last_progress_ns = after;
        }
        if measured_in_poll > 0 && plan.mode == ConsumeMode::Backlog {
            record_latency(&mut tally.latency, after - before);
            tally.widen(before, after);
        }
    }
    tally.partitions = progress
        .iter()
        .map(|p| (p.partition, p.start, p.next, p.count))
        .collect();
    Ok(tally)
}

/// The live display: a bar on a terminal, a line per second otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    started: Instant,
    last_line: Instant,
    last_count: u64,
    last_bytes: u64,
}

impl Progress {
    fn new(total: Option<u64>, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}"
            } else {
                "{elapsed_precise} {spinner} {pos} {msg}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            quiet,
            started: now,
            last_line: now,
            last_count: 0,
            last_bytes: 0,
        }
    }

    fn update(&mut self, label: &str, count: u64, bytes: u64) {
        let now = Instant::now();
        if let Some(bar) = &self.bar {
            bar.set_position(count);
            let elapsed = now.duration_since(self.started).as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{label}, {:.0} msg/s, {:.1} MB/s",
                count as f64 / elapsed,
                bytes as f64 / 1e6 / elapsed
            ));
            return;
        }
        if self.quiet || now.duration_since(self.last_line) < PROGRESS_LINE_PERIOD {
            return;
        }
        let seconds = now.duration_since(self.last_line).as_secs_f64();
        eprintln!(
            "[{:6.1} s] {count} {label}: {:.0} msg/s, {:.2} MB/s",
            now.duration_since(self.started).as_secs_f64(),
            (count - self.last_count) as f64 / seconds,
            (bytes - self.last_bytes) as f64 / 1e6 / seconds,
        );
        self.last_line = now;
        self.last_count = count;
        self.last_bytes = bytes;
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
}

struct Finished {
    role: Role,
    result: Result<Tally, BenchError>,
}

/// Runs the workers on their own threads, starts them together once all are connected,
/// and shows progress until all are done. `producers_done` runs once every producer has
/// finished (e2e hands the consumers their stopping points there).
fn run_workers(
    shared: &Arc<Shared>,
    producers: Vec<ProducerPlan>,
    consumers: Vec<ConsumerPlan>,
    progress: &mut Progress,
    mut producers_done: impl FnMut() -> Result<(), BenchError>,
) -> Result<(Tally, Tally), BenchError> {
    let (events, finished) = mpsc::channel::<Finished>();
    let mut producers_left = producers.len();
    let workers = producers.len() + consumers.len();
    let spawn = |role: Role, body: Box<dyn FnOnce() -> Result<Tally, BenchError> + Send>| {
        let events = events.clone();
        std::thread::spawn(move || {
            let result = body();
            let _ = events.send(Finished { role, result });
        });
    };
    for plan in consumers {
        let shared = shared.clone();
        spawn(
            Role::Consumer,
            Box::new(move || {
                runtime::run_local(WORKER_IO_MEMORY_BYTES, move || run_consumer(plan, shared))
                    .unwrap_or_else(|e| Err(BenchError::Refused(e.to_string())))
            }),
        );
    }
    for plan in producers {
        let shared = shared.clone();
        spawn(
            Role::Producer,
            Box::new(move || {
                runtime::run_local(WORKER_IO_MEMORY_BYTES, move || run_producer(plan, shared))
                    .unwrap_or_else(|e| Err(BenchError::Refused(e.to_string())))
            }),
        );
    }
    drop(events);
    let mut produced = Tally::new();
    let mut consumed = Tally::new();
    let mut first_error: Option<BenchError> = None;
    let mut done = 0;
    let mut take =
        |f: Finished, first_error: &mut Option<BenchError>, producers_left: &mut usize| {
            if f.role == Role::Producer {
                *producers_left -= 1;
            }
            match f.result {
                Ok(tally) if f.role == Role::Producer => produced.merge(tally),
                Ok(tally) => consumed.merge(tally),
                Err(error) => {
                    shared.abort.store(true, Ordering::SeqCst);
                    first_error.get_or_insert(error);
                }
            }
        };
    // Everyone connects first, so connection set-up is not part of the measurement.
    while shared.ready.load(Ordering::SeqCst) + done < workers && first_error.is_none() {
        match finished.recv_timeout(START_POLL * 10) {
            Ok(f) => {
                done += 1;
                take(f, &mut first_error, &mut producers_left);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    shared.start_ns.store(shared.now_ns(), Ordering::SeqCst);
    shared.go.store(true, Ordering::SeqCst);
    let mut hook_ran = false;
    while done < workers {
        if producers_left == 0 && !hook_ran {
            hook_ran = true;
            if first_error.is_none() {
                if let Err(error) = producers_done() {
                    shared.abort.store(true, Ordering::SeqCst);
                    first_error.get_or_insert(error);
                }
            }
        }
        match finished.recv_timeout(PROGRESS_TICK) {
            Ok(f) => {
                done += 1;
                take(f, &mut first_error, &mut producers_left);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let acked = shared.acked.load(Ordering::Relaxed);
        let received = shared.received.load(Ordering::Relaxed);
        if received > 0 || (acked == 0 && shared.sent.load(Ordering::Relaxed) == 0) {
            let label = if acked > 0 {
                format!("received ({acked} acknowledged)")
            } else {
                "received".to_owned()
            };
            progress.update(
                &label,
                received,
                shared.received_bytes.load(Ordering::Relaxed),
            );
        } else {
            progress.update(
                "acknowledged",
                acked,
                shared.acked_bytes.load(Ordering::Relaxed),
            );
        }
    }
    progress.finish();
    match first_error {
        Some(error) => Err(error),
        None => Ok((produced, consumed)),
    }
}

/// Runs `body` on a fresh executor from this (non-runtime) thread.
fn on_executor<T, Fut>(body: impl FnOnce() -> Fut + Send + 'static) -> Result<T, BenchError>
where
    Fut: std::future::Future<Output = Result<T, BenchError>> + 'static,
    T: Send + 'static,
{
    runtime::run_local(WORKER_IO_MEMORY_BYTES, body)
        .unwrap_or_else(|e| Err(BenchError::Refused(e.to_string())))
}

fn fetch_offsets(bootstrap: &str, topic: &str) -> Result<Vec<PartitionOffsets>, BenchError> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    on_executor(move || async move { offsets::topic_offsets(&bootstrap, &topic).await })
}

fn prepare(bootstrap: &str, topic: &TopicArgs) -> Result<i32, BenchError> {
    let (bootstrap, args) = (bootstrap.to_owned(), topic.clone());
    let partitions = on_executor(move || async move {
        offsets::prepare_topic(
            &bootstrap,
            &args.topic,
            Some((args.partitions, args.replication_factor)),
        )
        .await
    })?;
    if partitions != topic.partitions {
        eprintln!(
            "shardlog bench: topic {} exists with {partitions} partitions; using them (not --partitions {})",
            topic.topic, topic.partitions
        );
    }
    Ok(partitions)
}

/// The end offsets after a run, waiting (up to `OFFSETS_SETTLE_TIMEOUT`) while they still
/// show fewer new records than `produced`.
fn settled_offsets(
    bootstrap: &str,
    topic: &str,
    before: &[PartitionOffsets],
    produced: i64,
) -> Result<Vec<PartitionOffsets>, BenchError> {
    let deadline = Instant::now() + OFFSETS_SETTLE_TIMEOUT;
    loop {
        let after = fetch_offsets(bootstrap, topic)?;
        if offsets::end_offsets_moved(before, &after) >= produced || Instant::now() >= deadline {
            return Ok(after);
        }
        std::thread::sleep(OFFSETS_SETTLE_POLL);
    }
}

fn cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn validate_producer(args: &ProducerArgs) -> Result<(), BenchError> {
    if args.idempotent && args.acks != -1 {
        return Err(BenchError::Usage(
            "--idempotent needs --acks all (Kafka's rule for idempotent producers)".into(),
        ));
    }
    if args.buffer_bytes < args.size + 64 {
        return Err(BenchError::Usage(format!(
            "--buffer-bytes {} cannot hold one message of --size {}",
            args.buffer_bytes, args.size
        )));
    }
    Ok(())
}

fn producer_plans(
    bootstrap: &str,
    topic: &str,
    length: &LengthArgs,
    args: &ProducerArgs,
    producers: u64,
    stamp: bool,
) -> Vec<ProducerPlan> {
    let measured = length
        .duration
        .is_none()
        .then(|| length.messages.unwrap_or(DEFAULT_MESSAGES));
    let measured_shares = measured.map(|m| split_evenly(m, producers as usize));
    let warmup_shares = split_evenly(length.warmup_messages, producers as usize);
    let rate = args
        .rate
        .or_else(|| args.rate_mb.map(|mb| mb * 1e6 / args.size as f64))
        .map(|total| total / producers as f64);
    (0..producers as usize)
        .map(|index| {
            let mut config = ProducerConfig::new(bootstrap);
            config.client_id = format!("shardlog-bench-producer-{index}");
            config.acks = args.acks;
            config.linger = Duration::from_millis(args.linger_ms);
            config.batch_size = args.batch_bytes as usize;
            config.compression = args.compression.compression();
            config.idempotence = args.idempotent;
            config.buffer_memory = args.buffer_bytes as usize;
            config.delivery_timeout = DELIVERY_TIMEOUT;
            ProducerPlan {
                index,
                topic: topic.to_owned(),
                config,
                partitioner: args.partitioner,
                size: args.size as usize,
                keyed: args.keyed,
                measured_quota: measured_shares.as_ref().map(|s| s[index]),
                warmup_quota: warmup_shares[index],
                warmup_ns: (length.warmup * 1e9) as u64,
                end_ns: length.duration.map(|d| ((length.warmup + d) * 1e9) as u64),
                rate,
                stamp,
            }
        })
        .collect()
}

fn consumer_config(bootstrap: &str, index: usize, args: &ConsumerArgs) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(bootstrap);
    config.client_id = format!("shardlog-bench-consumer-{index}");
    config.max_wait = Duration::from_millis(args.fetch_wait_ms);
    config.partition_max_bytes = args.fetch_partition_bytes as i32;
    config
}

fn producer_parameters(
    map: &mut serde_json::Map<String, serde_json::Value>,
    args: &ProducerArgs,
    producers: u64,
) {
    let mut put = |k: &str, v: serde_json::Value| {
        map.insert(k.to_owned(), v);
    };
    put("producers", producers.into());
    put("size_bytes", args.size.into());
    put("acks", acks_name(args.acks).into());
    put("compression", args.compression.name().into());
    put("linger_ms", args.linger_ms.into());
    put("batch_bytes", args.batch_bytes.into());
    put("buffer_bytes", args.buffer_bytes.into());
    put("idempotent", args.idempotent.into());
    put("keyed", args.keyed.into());
    put(
        "partitioner",
        match args.partitioner {
            PartitionerChoice::Default => "default",
            PartitionerChoice::RoundRobin => "round-robin",
        }
        .into(),
    );
    let rate = args
        .rate
        .or_else(|| args.rate_mb.map(|mb| mb * 1e6 / args.size as f64));
    put(
        "rate_msgs_per_s",
        rate.map_or(serde_json::Value::Null, Into::into),
    );
    put("open_loop", rate.is_some().into());
}

fn length_parameters(
    map: &mut serde_json::Map<String, serde_json::Value>,
    messages: Option<u64>,
    duration: Option<f64>,
    warmup: f64,
    warmup_messages: u64,
) {
    map.insert(
        "messages".into(),
        messages.map_or(serde_json::Value::Null, Into::into),
    );
    map.insert(
        "duration_s".into(),
        duration.map_or(serde_json::Value::Null, Into::into),
    );
    map.insert("warmup_s".into(), warmup.into());
    map.insert("warmup_messages".into(), warmup_messages.into());
}

/// `length_parameters` of a producing run: a count defaults to `DEFAULT_MESSAGES` unless a
/// duration is given.
fn run_length_parameters(
    map: &mut serde_json::Map<String, serde_json::Value>,
    length: &LengthArgs,
) {
    length_parameters(
        map,
        length
            .messages
            .or(length.duration.is_none().then_some(DEFAULT_MESSAGES)),
        length.duration,
        length.warmup,
        length.warmup_messages,
    );
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Outcome {
    workload: &'static str,
    parameters: serde_json::Map<String, serde_json::Value>,
    started_unix_ms: u64,
    measured: Tally,
    ack_latency: Option<Histogram<u64>>,
    latency_kind: &'static str,
    verification: Verification,
    failure: Option<String>,
}

/// Prints the summary, writes the result files, and fails if the run did.
fn finish(outcome: Outcome, output: &OutputArgs) -> Result<(), BenchError> {
    let Outcome {
        workload,
        parameters,
        started_unix_ms,
        measured,
        ack_latency,
        latency_kind,
        verification,
        failure,
    } = outcome;
    let duration_s = measured.duration_s();
    let per_second = |n: f64| {
        if duration_s > 0.0 {
            n / duration_s
        } else {
            0.0
        }
    };
    let latency =
        (!measured.latency.is_empty()).then(|| LatencySummary::of(latency_kind, &measured.latency));
    let report = RunReport {
        schema: report::SCHEMA.into(),
        workload: workload.into(),
        command_line: std::env::args().collect(),
        parameters,
        host: report::Host::this(),
        started_unix_ms,
        messages: measured.messages,
        bytes: measured.bytes,
        warmup_messages: measured.total_messages - measured.messages,
        total_messages: measured.total_messages,
        total_bytes: measured.total_bytes,
        duration_s: report::rounded(duration_s, 6),
        throughput_msgs_per_s: report::rounded(per_second(measured.messages as f64), 3),
        throughput_mb_per_s: report::rounded(per_second(measured.bytes as f64 / 1e6), 6),
        errors: measured.errors,
        latency,
        ack_latency: ack_latency
            .filter(|h| !h.is_empty())
            .map(|h| LatencySummary::of("ack", &h)),
        verification,
    };
    print_lossless(&format!("{}\n", report.summary()));
    let write = |path: &std::path::Path, text: &str| {
        std::fs::write(path, text)
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))
    };
    if let Some(path) = &output.json {
        write(path, &report.to_json())?;
    }
    if let Some(path) = &output.hgrm {
        write(path, &report::percentile_distribution(&measured.latency))?;
    }
    if let Some(path) = &output.svg {
        let topic = report
            .parameters
            .get("topic")
            .and_then(|t| t.as_str())
            .unwrap_or("");
        let title = format!("{workload} {latency_kind} latency, {topic}");
        let mut curves = Vec::new();
        if let Some(l) = &report.latency {
            curves.push(chart::Curve {
                label: format!("{latency_kind} ({} messages)", report.messages),
                points: &l.distribution,
            });
        }
        if let Some(l) = &report.ack_latency {
            curves.push(chart::Curve {
                label: "ack".into(),
                points: &l.distribution,
            });
        }
        chart::write(path, &title, &curves).map_err(BenchError::Output)?;
    }
    match failure {
        Some(reason) => Err(BenchError::Verification(reason)),
        None => Ok(()),
    }
}

fn topic_parameters(topic: &str, partitions: i32) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("topic".into(), topic.into());
    map.insert("partitions".into(), partitions.into());
    map
}

pub fn produce(bootstrap: &str, args: ProduceArgs) -> Result<(), BenchError> {
    validate_producer(&args.producer)?;
    let partitions = prepare(bootstrap, &args.topic)?;
    let topic = args.topic.topic.as_str();
    let before = fetch_offsets(bootstrap, topic)?;
    let producers = args.producer.producers.unwrap_or_else(cores);
    let mut parameters = topic_parameters(topic, partitions);
    parameters.insert("bootstrap".into(), bootstrap.into());
    parameters.insert(
        "replication_factor".into(),
        args.topic.replication_factor.into(),
    );
    producer_parameters(&mut parameters, &args.producer, producers);
    run_length_parameters(&mut parameters, &args.length);
    let plans = producer_plans(
        bootstrap,
        topic,
        &args.length,
        &args.producer,
        producers,
        false,
    );
    let total =
        args.length.duration.is_none().then(|| {
            args.length.messages.unwrap_or(DEFAULT_MESSAGES) + args.length.warmup_messages
        });
    let mut progress = Progress::new(total, args.output.quiet);
    let started_unix_ms = unix_ms();
    let shared = Arc::new(Shared::new());
    let (produced, _) = run_workers(&shared, plans, Vec::new(), &mut progress, || Ok(()))?;
    let counted = if args.producer.acks == 0 {
        // Nothing is acknowledged: what was handed to the connection is what counts.
        shared.sent.load(Ordering::SeqCst) as i64
    } else {
        produced.total_messages as i64
    };
    let after = settled_offsets(bootstrap, topic, &before, counted)?;
    let moved = offsets::end_offsets_moved(&before, &after);
    let mut failure = None;
    if produced.errors > 0 {
        failure = Some(format!(
            "{} messages failed; the first: {}",
            produced.errors,
            produced.first_error.clone().unwrap_or_default()
        ));
    } else if moved != counted {
        failure = Some(format!(
            "the topic's end offsets moved by {moved}, but the bench produced {counted}"
        ));
    }
    let verification = Verification {
        method: "sum over partitions of the end offset moved (ListOffsets)".into(),
        expected_messages: moved,
        counted_messages: counted,
        expected_bytes: None,
        counted_bytes: Some(produced.total_bytes),
        ok: failure.is_none(),
    };
    finish(
        Outcome {
            workload: "produce",
            parameters,
            started_unix_ms,
            measured: produced,
            ack_latency: None,
            latency_kind: "ack",
            verification,
            failure,
        },
        &args.output,
    )
}

pub fn consume(bootstrap: &str, args: ConsumeArgs) -> Result<(), BenchError> {
    let topic = args.topic.clone();
    let partitions = {
        let (bootstrap, topic) = (bootstrap.to_owned(), topic.clone());
        on_executor(move || async move { offsets::prepare_topic(&bootstrap, &topic, None).await })?
    };
    let offsets = fetch_offsets(bootstrap, &topic)?;
    let available: Vec<u64> = offsets
        .iter()
        .map(|p| (p.end - p.start).max(0) as u64)
        .collect();
    let everything: u64 = available.iter().sum();
    let wanted = args.messages.unwrap_or(everything);
    if wanted > everything {
        return Err(BenchError::Usage(format!(
            "--messages {wanted}, but {topic} holds {everything} records"
        )));
    }
    let quota = split_quota(&available, wanted);
    let consumers = args
        .consumer
        .consumers
        .unwrap_or_else(cores)
        .min(offsets.len().max(1) as u64);
    let ids: Vec<i32> = offsets.iter().map(|p| p.partition).collect();
    let by_partition: HashMap<i32, (i64, u64)> = offsets
        .iter()
        .zip(&quota)
        .map(|(p, q)| (p.partition, (p.start, *q)))
        .collect();
    let warmup_shares = split_evenly(args.warmup_messages, consumers as usize);
    let plans: Vec<ConsumerPlan> = deal(&ids, consumers as usize)
        .into_iter()
        .enumerate()
        .map(|(index, hand)| ConsumerPlan {
            topic: topic.clone(),
            config: consumer_config(bootstrap, index, &args.consumer),
            mode: ConsumeMode::Backlog,
            partitions: hand
                .iter()
                .map(|p| {
                    let (start, take) = by_partition[p];
                    (*p, start, Some(start + take as i64))
                })
                .collect(),
            warmup_quota: warmup_shares[index],
            warmup_ns: (args.warmup * 1e9) as u64,
            end_ns: args.duration.map(|d| ((args.warmup + d) * 1e9) as u64),
            expected_size: args.size,
        })
        .collect();
    let mut parameters = topic_parameters(&topic, partitions);
    parameters.insert("bootstrap".into(), bootstrap.into());
    parameters.insert("consumers".into(), consumers.into());
    parameters.insert("fetch_wait_ms".into(), args.consumer.fetch_wait_ms.into());
    parameters.insert(
        "fetch_partition_bytes".into(),
        args.consumer.fetch_partition_bytes.into(),
    );
    parameters.insert(
        "size_bytes".into(),
        args.size.map_or(serde_json::Value::Null, Into::into),
    );
    length_parameters(
        &mut parameters,
        Some(wanted),
        args.duration,
        args.warmup,
        args.warmup_messages,
    );
    let mut progress = Progress::new(Some(wanted), args.output.quiet);
    let started_unix_ms = unix_ms();
    let shared = Arc::new(Shared::new());
    let (_, consumed) = run_workers(&shared, Vec::new(), plans, &mut progress, || Ok(()))?;
    // The broker's count: the offsets each partition's reader went through.
    let read_through: i64 = consumed
        .partitions
        .iter()
        .map(|&(_, start, next, _)| next - start)
        .sum();
    let expected = if args.duration.is_some() {
        read_through
    } else {
        wanted as i64
    };
    let counted = consumed.total_messages as i64;
    let expected_bytes = args.size.map(|size| size * consumed.total_messages);
    let mut failure = None;
    if counted != expected || read_through != expected {
        failure = Some(format!(
            "read {counted} records through {read_through} offsets, expected {expected}"
        ));
    } else if consumed.gaps > 0 {
        failure = Some(format!(
            "{} offsets missing inside the ranges read",
            consumed.gaps
        ));
    } else if consumed.malformed > 0 || expected_bytes.is_some_and(|b| b != consumed.total_bytes) {
        failure = Some(format!(
            "{} values of the wrong size: {} bytes read, {} expected",
            consumed.malformed,
            consumed.total_bytes,
            expected_bytes.unwrap_or_default()
        ));
    }
    let verification = Verification {
        method: "records read against the offset ranges from ListOffsets".into(),
        expected_messages: expected,
        counted_messages: counted,
        expected_bytes,
        counted_bytes: Some(consumed.total_bytes),
        ok: failure.is_none(),
    };
    finish(
        Outcome {
            workload: "consume",
            parameters,
            started_unix_ms,
            measured: consumed,
            ack_latency: None,
            latency_kind: "poll",
            verification,
            failure,
        },
        &args.output,
    )
}

pub fn end_to_end(bootstrap: &str, args: E2eArgs) -> Result<(), BenchError> {
    validate_producer(&args.producer)?;
    if (args.producer.size as usize) < STAMP_BYTES {
        return Err(BenchError::Usage(format!(
            "e2e needs --size of at least {STAMP_BYTES} bytes: the send time travels in the value"
        )));
    }
    let partitions = prepare(bootstrap, &args.topic)?;
    let topic = args.topic.topic.clone();
    let before = fetch_offsets(bootstrap, &topic)?;
    let half_the_cores = (cores() / 2).max(1);
    let producers = args.producer.producers.unwrap_or(half_the_cores);
    let consumers = args
        .consumer
        .consumers
        .unwrap_or(half_the_cores)
        .min(before.len().max(1) as u64);
    let ids: Vec<i32> = before.iter().map(|p| p.partition).collect();
    let starts: HashMap<i32, i64> = before.iter().map(|p| (p.partition, p.end)).collect();
    let consumer_plans: Vec<ConsumerPlan> = deal(&ids, consumers as usize)
        .into_iter()
        .enumerate()
        .map(|(index, hand)| ConsumerPlan {
            topic: topic.clone(),
            config: consumer_config(bootstrap, index, &args.consumer),
            mode: ConsumeMode::EndToEnd,
            partitions: hand.iter().map(|p| (*p, starts[p], None)).collect(),
            warmup_quota: 0,
            warmup_ns: 0,
            end_ns: None,
            expected_size: Some(args.producer.size),
        })
        .collect();
    let producer_plans = producer_plans(
        bootstrap,
        &topic,
        &args.length,
        &args.producer,
        producers,
        true,
    );
    let mut parameters = topic_parameters(&topic, partitions);
    parameters.insert("bootstrap".into(), bootstrap.into());
    parameters.insert(
        "replication_factor".into(),
        args.topic.replication_factor.into(),
    );
    producer_parameters(&mut parameters, &args.producer, producers);
    parameters.insert("consumers".into(), consumers.into());
    parameters.insert("fetch_wait_ms".into(), args.consumer.fetch_wait_ms.into());
    parameters.insert(
        "fetch_partition_bytes".into(),
        args.consumer.fetch_partition_bytes.into(),
    );
    run_length_parameters(&mut parameters, &args.length);
    let total =
        args.length.duration.is_none().then(|| {
            args.length.messages.unwrap_or(DEFAULT_MESSAGES) + args.length.warmup_messages
        });
    let mut progress = Progress::new(total, args.output.quiet);
    let started_unix_ms = unix_ms();
    let shared = Arc::new(Shared::new());
    let mut after = Vec::new();
    let hook_shared = shared.clone();
    let (produced, consumed) = run_workers(
        &shared,
        producer_plans,
        consumer_plans,
        &mut progress,
        || {
            let counted = if args.producer.acks == 0 {
                hook_shared.sent.load(Ordering::SeqCst) as i64
            } else {
                hook_shared.acked.load(Ordering::SeqCst) as i64
            };
            after = settled_offsets(bootstrap, &topic, &before, counted)?;
            let targets = after.iter().map(|p| (p.partition, p.end)).collect();
            *hook_shared
                .targets
                .lock()
                .map_err(|_| BenchError::Refused("a thread of the run failed".into()))? =
                Some(targets);
            Ok(())
        },
    )?;
    let moved = offsets::end_offsets_moved(&before, &after);
    let acknowledged = if args.producer.acks == 0 {
        shared.sent.load(Ordering::SeqCst) as i64
    } else {
        produced.total_messages as i64
    };
    let received = consumed.total_messages as i64;
    let produced_bytes = acknowledged as u64 * args.producer.size;
    let mut failure = None;
    if produced.errors > 0 {
        failure = Some(format!(
            "{} messages failed; the first: {}",
            produced.errors,
            produced.first_error.clone().unwrap_or_default()
        ));
    } else if moved != acknowledged || received != acknowledged {
        failure = Some(format!(
            "produced {acknowledged}, the end offsets moved by {moved}, consumers received {received}"
        ));
    } else if consumed.gaps > 0 || consumed.malformed > 0 || consumed.total_bytes != produced_bytes
    {
        failure = Some(format!(
            "{} offsets skipped, {} malformed values, {} bytes received of {produced_bytes}",
            consumed.gaps, consumed.malformed, consumed.total_bytes
        ));
    }
    let verification = Verification {
        method: "end offsets moved (ListOffsets) against messages produced and received".into(),
        expected_messages: moved,
        counted_messages: received,
        expected_bytes: Some(produced_bytes),
        counted_bytes: Some(consumed.total_bytes),
        ok: failure.is_none(),
    };
    // Throughput of e2e is what the consumers received, over the measured window.
    finish(
        Outcome {
            workload: "e2e",
            parameters,
            started_unix_ms,
            measured: consumed,
            ack_latency: Some(produced.latency),
            latency_kind: "end_to_end",
            verification,
            failure,
        },
        &args.output,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_short_values_have_none() {
        let mut value = vec![0u8; 16];
        encode_stamp(&mut value, 123_456_789, false);
        assert_eq!(decode_stamp(&value), Some((123_456_789, false)));
        encode_stamp(&mut value, 42, true);
        assert_eq!(decode_stamp(&value), Some((42, true)));
        assert_eq!(decode_stamp(&value[..7]), None);
        assert_eq!(decode_stamp(&[]), None);
    }

    #[test]
    fn even_splits_add_up() {
        assert_eq!(split_evenly(10, 3), vec![4, 3, 3]);
        assert_eq!(split_evenly(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split_evenly(0, 1), vec![0]);
        assert_eq!(split_evenly(5, 0), vec![5]);
    }

    #[test]
    fn quotas_fill_evenly_and_never_exceed_a_partition() {
        assert_eq!(split_quota(&[10, 10, 10], 30), vec![10, 10, 10]);
        assert_eq!(split_quota(&[10, 10, 10], 9), vec![3, 3, 3]);
        assert_eq!(split_quota(&[1, 100, 100], 51), vec![1, 25, 25]);
        assert_eq!(split_quota(&[0, 5], 3), vec![0, 3]);
        for wanted in 0..=30 {
            let quota = split_quota(&[2, 7, 0, 20], wanted.min(29));
            assert_eq!(quota.iter().sum::<u64>(), wanted.min(29));
            assert!(quota.iter().zip([2, 7, 0, 20]).all(|(q, a)| *q <= a));
        }
    }

    #[test]
    fn partitions_are_dealt_in_turn() {
        assert_eq!(deal(&[0, 1, 2, 3, 4], 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(deal(&[0], 3), vec![vec![0], vec![], vec![]]);
    }
}

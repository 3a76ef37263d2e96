//! The broker's metrics: what each shard counts ([`ShardMetrics`]), the copy of it that
//! crosses the mesh ([`ShardSnapshot`]), and the `metrics.listener` HTTP endpoint.
//!
//! Recording happens on every shard, on its own thread, into `Cell`s it alone owns (see
//! `crate::metrics` for why not atomics): a request costs a table lookup, a few plain adds, a
//! histogram bucket search and one clock read per socket read plus one per response. No
//! allocation, no formatting, nothing shared between cores.
//!
//! The endpoint runs on shard 0 only. A scrape asks every shard (itself included) for a
//! snapshot with `ShardRequest::Metrics`, waits at most `METRICS_SHARD_TIMEOUT_MS` for each,
//! renders the text and closes the connection. A shard that does not answer in time is shown
//! as `shardlog_shard_up{shard} 0` rather than holding the scrape hostage.
//!
//! Invariants: nothing here touches a log, a partition or a Kafka connection's state, so the
//! endpoint cannot change what clients see; a scrape's memory is bounded by
//! `REQUEST_HEAD_BYTES_MAX` per connection and `METRICS_CONNECTIONS_MAX` connections.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use kafka_protocol::messages::ApiKey;

use super::shard::{Shard, ShardReply, ShardRequest};
use crate::metrics::exposition::{self, Exposition, Kind, Scale};
use crate::metrics::http::{self, Reply, Route};
use crate::metrics::{Counter, HistogramSnapshot, LatencyHistogram};
use crate::protocol::SUPPORTED_APIS;
use crate::runtime::net::{Listener, Stream, StreamReader};
use crate::runtime::{self, ShardId};

/// Scrapes served at once; more are closed at accept. Prometheus sends one at a time.
pub const METRICS_CONNECTIONS_MAX: usize = 8;
/// How long a scraper has to send its request head, so an idle connection cannot hold a slot.
pub const METRICS_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long a scrape waits for each shard's snapshot.
pub const METRICS_SHARD_TIMEOUT_MS: u64 = 2_000;
/// API keys above this have no slot (none is served today; Kafka's highest is below 100).
const API_KEY_LIMIT: usize = 128;
const NO_SLOT: u8 = u8::MAX;

/// The slot of each served API key in `ShardMetrics::apis`, built at compile time, so the
/// per-request lookup is one indexed load.
const SLOT_BY_API_KEY: [u8; API_KEY_LIMIT] = {
    let mut table = [NO_SLOT; API_KEY_LIMIT];
    let mut index = 0;
    while index < SUPPORTED_APIS.len() {
        table[SUPPORTED_APIS[index].0 as usize] = index as u8;
        index += 1;
    }
    table
};

/// Per-API measurements of one shard: the shard where the request arrived (its connection),
/// not the shards that own its partitions.
#[derive(Default)]
pub struct ApiMetrics {
    pub requests: Counter,
    /// Responses that carry an error code (Produce, Fetch), or requests that closed the
    /// connection (malformed body, unsupported version, a response that cannot be encoded).
    pub errors: Counter,
    /// From the socket read that completed the request's frame to its response being ready to
    /// write, in order (a response waits for the ones before it on its connection, as the
    /// client does). A fetch's long-poll wait is included, as in Kafka's request metrics.
    pub latency_us: LatencyHistogram,
}

/// What one shard counts. Owned by its `Shard`; written only on that shard's thread.
pub struct ShardMetrics {
    apis: [ApiMetrics; SUPPORTED_APIS.len()],
    /// Frames that closed the connection before a served API could be named: bad size prefix,
    /// unparseable header, unknown or unserved API key.
    pub frame_errors: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    /// Records and bytes appended to logs this shard owns (retried duplicates not counted).
    pub produce_records: Counter,
    pub produce_bytes: Counter,
    /// Record bytes in fetch responses sent from this shard's connections.
    pub fetch_bytes: Counter,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            apis: std::array::from_fn(|_| ApiMetrics::default()),
            frame_errors: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            produce_records: Counter::default(),
            produce_bytes: Counter::default(),
            fetch_bytes: Counter::default(),
        }
    }
}

impl ShardMetrics {
    /// The measurements of a served API; `None` for any other key.
    #[inline]
    pub fn api(&self, api_key: i16) -> Option<&ApiMetrics> {
        let slot = *SLOT_BY_API_KEY.get(usize::try_from(api_key).ok()?)?;
        self.apis.get(usize::from(slot))
    }
}

/// One served API's measurements, copied.
#[derive(Debug, Clone)]
pub struct ApiSnapshot {
    pub api: ApiKey,
    pub requests: u64,
    pub errors: u64,
    pub latency_us: HistogramSnapshot,
}

/// A copy of everything one shard measures, taken on that shard; `Send`, for the mesh.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: ShardId,
    pub apis: Vec<ApiSnapshot>,
    pub frame_errors: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub produce_records: u64,
    pub produce_bytes: u64,
    pub fetch_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub sync_latency_us: HistogramSnapshot,
    pub sync_bytes: HistogramSnapshot,
    pub partitions: u64,
    pub connections: u64,
    /// The cleaner's state of each compacted partition this shard owns.
    pub cleaner: Vec<CleanerView>,
}

/// One compacted partition's cleaner state, for the metrics page.
#[derive(Debug, Clone)]
pub struct CleanerView {
    pub topic: String,
    pub partition: i32,
    pub status: crate::storage::CleanerStatus,
}

/// Takes this shard's snapshot (on this shard, so nothing changes under it).
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let metrics = &shard.metrics;
    let storage = &shard.storage.metrics;
    ShardSnapshot {
        shard: shard.id,
        apis: SUPPORTED_APIS
            .iter()
            .zip(&metrics.apis)
            .map(|(&(api, _, _), measured)| ApiSnapshot {
                api,
                requests: measured.requests.get(),
                errors: measured.errors.get(),
                latency_us: measured.latency_us.snapshot(),
            })
            .collect(),
        frame_errors: metrics.frame_errors.get(),
        bytes_received: metrics.bytes_received.get(),
        bytes_sent: metrics.bytes_sent.get(),
        produce_records: metrics.produce_records.get(),
        produce_bytes: metrics.produce_bytes.get(),
        fetch_bytes: metrics.fetch_bytes.get(),
        cache_hits: storage.cache_hits.get(),
        cache_misses: storage.cache_misses.get(),
        cache_bytes: shard.storage.cache_used_bytes(),
        sync_latency_us: storage.sync_latency_us.snapshot(),
        sync_bytes: storage.sync_bytes.snapshot(),
        partitions: shard.logs.borrow().len() as u64,
        connections: shard.connections.get() as u64,
        cleaner: {
            let mut views: Vec<CleanerView> = shard
                .logs
                .borrow()
                .iter()
                .filter(|(_, log)| log.config().cleanup_policy.compact)
                .map(|((topic, partition), log)| CleanerView {
                    topic: topic.clone(),
                    partition: *partition,
                    status: log.cleaner_status(),
                })
                .collect();
            views.sort_unstable_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            views
        },
    }
}

/// The exposition document for the snapshots that came back; `silent` shards did not answer.
pub fn render(snapshots: &[ShardSnapshot], silent: &[ShardId]) -> String {
    let mut out = Exposition::new();
    out.family(
        "shardlog_build_info",
        Kind::Gauge,
        "The running shardlog version; always 1.",
    );
    out.sample(
        "shardlog_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.family(
        "shardlog_shard_up",
        Kind::Gauge,
        "1 if the shard answered this scrape in time, 0 if it did not (a stalled shard).",
    );
    let mut shards: Vec<(ShardId, u8)> = snapshots
        .iter()
        .map(|s| (s.shard, 1))
        .chain(silent.iter().map(|&s| (s, 0)))
        .collect();
    shards.sort_unstable();
    for (shard, up) in shards {
        out.sample("shardlog_shard_up", &[("shard", &shard.to_string())], up);
    }

    let labelled: Vec<(String, &ShardSnapshot)> =
        snapshots.iter().map(|s| (s.shard.to_string(), s)).collect();
    let per_api = |out: &mut Exposition, name: &str, value: fn(&ApiSnapshot) -> u64| {
        for (shard, snapshot) in &labelled {
            for api in &snapshot.apis {
                let api_name = format!("{:?}", api.api);
                out.sample(name, &[("shard", shard), ("api", &api_name)], value(api));
            }
        }
    };
    out.family(
        "shardlog_requests_total",
        Kind::Counter,
        "Kafka requests received, by the shard whose connection received them.",
    );
    per_api(&mut out, "shardlog_requests_total", |api| api.requests);
    out.family(
        "shardlog_request_errors_total",
        Kind::Counter,
        "Produce and Fetch responses carrying an error code, and requests that closed their connection.",
    );
    per_api(&mut out, "shardlog_request_errors_total", |api| api.errors);
    out.family(
        "shardlog_request_latency_seconds",
        Kind::Histogram,
        "From the read completing a request to its response being ready to send, in order.",
    );
    for (shard, snapshot) in &labelled {
        for api in &snapshot.apis {
            // Produce and Fetch always, so dashboards have series from the start; the rest
            // once used, to keep the page short.
            if api.requests == 0 && !matches!(api.api, ApiKey::Produce | ApiKey::Fetch) {
                continue;
            }
            let api_name = format!("{:?}", api.api);
            out.histogram(
                "shardlog_request_latency_seconds",
                &[("shard", shard), ("api", &api_name)],
                &api.latency_us,
                Scale::MICROSECONDS_TO_SECONDS,
            );
        }
    }

    let per_shard = |out: &mut Exposition,
                     name: &str,
                     kind: Kind,
                     help: &str,
                     value: fn(&ShardSnapshot) -> u64| {
        out.family(name, kind, help);
        for (shard, snapshot) in &labelled {
            out.sample(name, &[("shard", shard)], value(snapshot));
        }
    };
    per_shard(
        &mut out,
        "shardlog_frame_errors_total",
        Kind::Counter,
        "Kafka frames that closed their connection before an API was known (size, header, unknown API).",
        |s| s.frame_errors,
    );
    per_shard(
        &mut out,
        "shardlog_bytes_received_total",
        Kind::Counter,
        "Bytes read from Kafka client sockets.",
        |s| s.bytes_received,
    );
    per_shard(
        &mut out,
        "shardlog_bytes_sent_total",
        Kind::Counter,
        "Bytes written to Kafka client sockets.",
        |s| s.bytes_sent,
    );
    per_shard(
        &mut out,
        "shardlog_produce_records_total",
        Kind::Counter,
        "Records appended to the partitions this shard owns.",
        |s| s.produce_records,
    );
    per_shard(
        &mut out,
        "shardlog_produce_bytes_total",
        Kind::Counter,
        "Record batch bytes appended to the partitions this shard owns.",
        |s| s.produce_bytes,
    );
    per_shard(
        &mut out,
        "shardlog_fetch_bytes_total",
        Kind::Counter,
        "Record batch bytes in fetch responses sent by this shard's connections.",
        |s| s.fetch_bytes,
    );
    per_shard(
        &mut out,
        "shardlog_batch_cache_hits_total",
        Kind::Counter,
        "Partition reads served from the tail cache.",
        |s| s.cache_hits,
    );
    per_shard(
        &mut out,
        "shardlog_batch_cache_misses_total",
        Kind::Counter,
        "Partition reads that went to disk (O_DIRECT).",
        |s| s.cache_misses,
    );
    per_shard(
        &mut out,
        "shardlog_batch_cache_bytes",
        Kind::Gauge,
        "Bytes held by the tail cache (batch.cache.bytes is the budget).",
        |s| s.cache_bytes,
    );
    per_shard(
        &mut out,
        "shardlog_partitions",
        Kind::Gauge,
        "Partitions this shard owns (internal topics included).",
        |s| s.partitions,
    );
    per_shard(
        &mut out,
        "shardlog_connections",
        Kind::Gauge,
        "Open Kafka client connections on this shard.",
        |s| s.connections,
    );

    render_cleaner(&mut out, snapshots);

    out.family(
        "shardlog_log_sync_latency_seconds",
        Kind::Histogram,
        "Each partition log's fdatasync in a group commit.",
    );
    for (shard, snapshot) in &labelled {
        out.histogram(
            "shardlog_log_sync_latency_seconds",
            &[("shard", shard)],
            &snapshot.sync_latency_us,
            Scale::MICROSECONDS_TO_SECONDS,
        );
    }
    out.family(
        "shardlog_log_sync_bytes",
        Kind::Histogram,
        "Bytes made durable by each partition log's fdatasync: the size of a group commit.",
    );
    for (shard, snapshot) in &labelled {
        out.histogram(
            "shardlog_log_sync_bytes",
            &[("shard", shard)],
            &snapshot.sync_bytes,
            Scale::NONE,
        );
    }
    out.finish()
}

/// Asks every shard for its snapshot and renders them.
async fn collect(shard: &Rc<Shard>) -> String {
    let calls = (0..shard.count).map(|to| {
        let shard = shard.clone();
        async move {
            let wait = Duration::from_millis(METRICS_SHARD_TIMEOUT_MS);
            let reply = runtime::timeout(wait, shard.call(to, ShardRequest::Metrics)).await;
            (to, reply)
        }
    });
    let mut snapshots = Vec::with_capacity(shard.count);
    let mut silent = Vec::new();
    for (to, reply) in futures::future::join_all(calls).await {
        match reply {
            Some(ShardReply::Metrics(snapshot)) => snapshots.push(*snapshot),
            _ => {
                tracing::warn!(shard = to, "shard did not answer the metrics scrape");
                silent.push(to);
            }
        }
    }
    render(&snapshots, &silent)
}

/// The endpoint's accept loop, on shard 0, until shutdown.
pub async fn run_endpoint(shard: Rc<Shard>, listener: Listener) {
    let active = Rc::new(Cell::new(0usize));
    let mut shutdown = shard.shutdown_signal().fuse();
    loop {
        let accept = listener.accept().fuse();
        futures::pin_mut!(accept);
        let stream = futures::select_biased! {
            _ = shutdown => return,
            stream = accept => stream,
        };
        match stream {
            Ok(stream) if active.get() >= METRICS_CONNECTIONS_MAX => {
                tracing::debug!("metrics connection refused: too many at once");
                drop(stream);
            }
            Ok(stream) => {
                active.set(active.get() + 1);
                let active = active.clone();
                let shard = shard.clone();
                runtime::spawn(async move {
                    serve_scrape(&shard, stream).await;
                    active.set(active.get() - 1);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection: one request head, one response, close.
async fn serve_scrape(shard: &Rc<Shard>, stream: Stream) {
    let (mut reader, mut writer) = stream.split();
    let wait = Duration::from_millis(METRICS_REQUEST_TIMEOUT_MS);
    let route = match runtime::timeout(wait, read_route(&mut reader)).await {
        Some(Some(route)) => route,
        // The peer left before finishing its request: nobody to answer.
        Some(None) => return,
        None => Route::Answer(Reply {
            status: 408,
            content_type: "text/plain; charset=utf-8",
            body: "request head not received in time\n".into(),
        }),
    };
    let reply = match route {
        Route::Metrics => Reply {
            status: 200,
            content_type: exposition::CONTENT_TYPE,
            body: collect(shard).await,
        },
        Route::Answer(reply) => reply,
    };
    if let Err(e) = writer
        .write_vectored_all(&[http::encode_reply(&reply)])
        .await
    {
        tracing::debug!(error = %e, "metrics response not written");
    }
    writer.shutdown().await;
}

/// Reads until the request head is complete or known to be bad; `None` if the peer closed
/// before sending anything.
async fn read_route(reader: &mut StreamReader) -> Option<Route> {
    let mut buffer: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match http::parse_request_head(&buffer) {
            Ok(Some(line)) => return Some(http::route(Ok(line))),
            Ok(None) => {}
            Err(e) => return Some(http::route(Err(e))),
        }
        // Never buffer past the cap: the parser refuses a head at the cap.
        let room = (http::REQUEST_HEAD_BYTES_MAX - buffer.len()).min(chunk.len());
        match reader.read(&mut chunk[..room]).await {
            // A peer that half-closed mid-head can still read why it gets nothing.
            Ok(0) if !buffer.is_empty() => {
                return Some(http::route(Err(http::HeadError::Malformed(
                    "connection closed before the end of the request head",
                ))))
            }
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// The cleaner's counters per shard and its state per compacted partition.
fn render_cleaner(out: &mut Exposition, snapshots: &[ShardSnapshot]) {
    type Value = fn(&crate::storage::CleanerStatus) -> Option<String>;
    let families: [(&str, Kind, &str, Value); 6] = [
        (
            "shardlog_cleaner_passes_total",
            Kind::Counter,
            "Compaction passes run over the partition, failed ones included.",
            |s| Some(s.passes.to_string()),
        ),
        (
            "shardlog_cleaner_passes_failed_total",
            Kind::Counter,
            "Compaction passes that failed (the broker log says why; the log is left as it was).",
            |s| Some(s.passes_failed.to_string()),
        ),
        (
            "shardlog_cleaner_dirty_ratio",
            Kind::Gauge,
            "Bytes written since the last pass over the cleanable bytes, as the cleaner last saw them.",
            |s| Some(format!("{:.4}", s.dirty_ratio)),
        ),
        (
            "shardlog_cleaner_last_pass_timestamp_seconds",
            Kind::Gauge,
            "When the last pass ended.",
            |s| s.last_pass_ms.map(|ms| format!("{:.3}", ms as f64 / 1000.0)),
        ),
        (
            "shardlog_cleaner_last_pass_bytes_in",
            Kind::Gauge,
            "Bytes of the segments the last successful pass read.",
            |s| s.last_stats.map(|t| t.bytes_in.to_string()),
        ),
        (
            "shardlog_cleaner_last_pass_bytes_out",
            Kind::Gauge,
            "Bytes of the segments the last successful pass wrote in their place.",
            |s| s.last_stats.map(|t| t.bytes_out.to_string()),
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for snapshot in snapshots {
            for view in &snapshot.cleaner {
                if let Some(value) = value(&view.status) {
                    let partition = view.partition.to_string();
                    let labels = [("topic", view.topic.as_str()), ("partition", &partition)];
                    out.sample(name, &labels, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::tests::{parse_exposition, Sample};
    use crate::metrics::{LatencyHistogram, SyncBytesHistogram};

    fn sample_snapshot(
        shard: ShardId,
        metrics: &ShardMetrics,
        sync: &LatencyHistogram,
    ) -> ShardSnapshot {
        let bytes = SyncBytesHistogram::default();
        bytes.record(10_000);
        ShardSnapshot {
            shard,
            apis: SUPPORTED_APIS
                .iter()
                .zip(&metrics.apis)
                .map(|(&(api, _, _), m)| ApiSnapshot {
                    api,
                    requests: m.requests.get(),
                    errors: m.errors.get(),
                    latency_us: m.latency_us.snapshot(),
                })
                .collect(),
            frame_errors: metrics.frame_errors.get(),
            bytes_received: metrics.bytes_received.get(),
            bytes_sent: metrics.bytes_sent.get(),
            produce_records: metrics.produce_records.get(),
            produce_bytes: metrics.produce_bytes.get(),
            fetch_bytes: metrics.fetch_bytes.get(),
            cache_hits: 3,
            cache_misses: 1,
            cache_bytes: 4096,
            sync_latency_us: sync.snapshot(),
            sync_bytes: bytes.snapshot(),
            partitions: 4,
            connections: 2,
            cleaner: vec![CleanerView {
                topic: "changelog".into(),
                partition: 3,
                status: crate::storage::CleanerStatus {
                    passes: 2,
                    passes_failed: 1,
                    dirty_ratio: 0.25,
                    last_pass_ms: Some(1_700_000_000_000),
                    ..Default::default()
                },
            }],
        }
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    #[test]
    fn every_served_api_has_a_slot_and_others_none() {
        let metrics = ShardMetrics::default();
        for &(api, _, _) in SUPPORTED_APIS {
            assert!(metrics.api(api as i16).is_some(), "{api:?}");
        }
        assert!(metrics.api(-1).is_none());
        assert!(metrics.api(i16::MAX).is_none());
        assert!(metrics.api(ApiKey::SaslHandshake as i16).is_none());
        let produce = metrics.api(0).expect("produce") as *const ApiMetrics;
        let fetch = metrics.api(1).expect("fetch") as *const ApiMetrics;
        assert_ne!(produce, fetch);
    }

    #[test]
    fn a_scrape_renders_valid_text_and_counters_only_grow() {
        let metrics = ShardMetrics::default();
        let sync = LatencyHistogram::default();
        let produce = metrics.api(ApiKey::Produce as i16).expect("served");
        produce.requests.add(5);
        produce.latency_us.record(700);
        metrics.bytes_received.add(1_000);
        metrics.produce_bytes.add(900);
        sync.record(300);
        let first = render(
            &[
                sample_snapshot(0, &metrics, &sync),
                sample_snapshot(1, &ShardMetrics::default(), &sync),
            ],
            &[2],
        );
        let before = parse_exposition(&first);
        let changelog = [("topic", "changelog"), ("partition", "3")];
        assert_eq!(
            value(&before, "shardlog_cleaner_passes_failed_total", &changelog),
            1.0
        );
        assert_eq!(
            value(&before, "shardlog_cleaner_dirty_ratio", &changelog),
            0.25
        );
        assert_eq!(value(&before, "shardlog_shard_up", &[("shard", "2")]), 0.0);
        assert_eq!(value(&before, "shardlog_shard_up", &[("shard", "0")]), 1.0);
        assert_eq!(
            value(
                &before,
                "shardlog_requests_total",
                &[("shard", "0"), ("api", "Produce")]
            ),
            5.0
        );
        assert_eq!(
            value(
                &before,
                "shardlog_request_latency_seconds_bucket",
                &[("shard", "0"), ("api", "Produce"), ("le", "0.001")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &before,
                "shardlog_log_sync_latency_seconds_count",
                &[("shard", "1")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &before,
                "shardlog_log_sync_bytes_bucket",
                &[("shard", "0"), ("le", "16384")]
            ),
            1.0
        );
        assert_eq!(
            value(&before, "shardlog_partitions", &[("shard", "1")]),
            4.0
        );
        assert!(first.contains("shardlog_build_info{version=\""));

        produce.requests.increment();
        produce.latency_us.record(2_000_000);
        metrics.bytes_sent.add(10);
        let second = render(&[sample_snapshot(0, &metrics, &sync)], &[]);
        let after = parse_exposition(&second);
        for (name, labels, old) in &before {
            if !name.ends_with("_total") && !name.ends_with("_count") && !name.ends_with("_bucket")
            {
                continue;
            }
            if !labels.iter().any(|(k, v)| k == "shard" && v == "0") {
                continue;
            }
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert!(
                value(&after, name, &labels) >= *old,
                "{name} {labels:?} went down"
            );
        }
        assert_eq!(
            value(
                &after,
                "shardlog_request_latency_seconds_count",
                &[("shard", "0"), ("api", "Produce")]
            ),
            2.0
        );
    }
}

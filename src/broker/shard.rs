//! One shard: the partitions it owns, its view of the cluster, and its end of the mesh.
//!
//! Everything here is touched by exactly one thread. Requests for partitions owned elsewhere
//! travel as `ShardRequest`s; the owner answers with a `ShardReply`.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::StreamExt;

use super::fetch_session::FetchSessionCache;
use super::group;
use super::metadata::{self, Image, SharedImage};
use super::metrics::{self, ShardMetrics, ShardSnapshot};
use super::ops;
use crate::config::BrokerConfig;
use crate::runtime::mesh::Mesh;
use crate::runtime::{self, ShardId};
use crate::storage::{PartitionLog, ShardStorage};

/// Logs a shard opens (recovers) or closes concurrently.
const LOGS_OPENED_AT_ONCE: usize = 32;

/// A seed for a shard's fetch-session ids: different on every start and every shard, so a
/// client that kept an id from a broker's earlier run does not find a stranger's session.
fn session_id_seed(shard: ShardId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((shard as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ u64::from(std::process::id())
}

/// A partition of a topic, by name.
pub type TopicPartition = (String, i32);

/// Work one shard asks of another. Everything in it is `Send`; record bytes travel as views of
/// the request buffer, not copies.
pub enum ShardRequest {
    Produce(ops::ProduceBatch),
    /// Reads in item order within a response's `max_bytes` (`ops::fetch_local`).
    Fetch {
        items: Vec<ops::FetchItem>,
        response_max_bytes: usize,
    },
    WaitForData {
        items: Vec<(TopicPartition, i64)>,
        timeout: Duration,
    },
    ListOffsets(Vec<ops::ListOffsetsItem>),
    /// For the controller (shard 0).
    Control(ops::ControlRequest),
    /// From the controller: a new cluster image to apply.
    Apply(SharedImage),
    /// From shard 0 at start: listen on this port.
    Listen(u16),
    /// For shard 0: a producer id that was never given out before.
    AllocateProducerId,
    /// For shard 0: Raft messages from a peer voter, with the quorum it believes in (checked
    /// against this node's before they are stepped).
    Quorum(
        crate::cluster::wire::QuorumHeader,
        Vec<raft::eraftpb::Message>,
    ),
    /// For shard 0: a call to make on the active controller, wherever it is.
    CallController(Box<crate::cluster::wire::ControllerCall>),
    /// For shard 0: a broker's call on the active controller.
    Controller(Box<crate::cluster::wire::ControllerCall>),
    /// For the shard that coordinates the group.
    Group(Box<group::GroupCall>),
    /// From the metrics endpoint (shard 0): a copy of this shard's metrics.
    Metrics,
    /// From a peer that saw the process's stop request: stop too. The message wakes this
    /// shard's reactor however it is parked.
    Stop,
    /// From a peer during shutdown: its connections are drained, so it will call on no one
    /// again. A shard closes its logs and exits only once every peer has said so, because until
    /// then a peer's in-flight request may still need it.
    Drained,
}

pub enum ShardReply {
    Produce(Vec<ops::ProduceResult>),
    Fetch(Vec<ops::FetchResult<Bytes>>),
    ListOffsets(Vec<ops::ListOffsetsResult>),
    Control(ops::ControlReply),
    ProducerId(Result<i64, String>),
    Group(group::GroupAnswer),
    Metrics(Box<ShardSnapshot>),
    Controller(Box<crate::cluster::wire::ControllerAnswer>),
    Done,
    Failed(String),
}

pub struct Shard {
    pub id: ShardId,
    pub count: usize,
    pub config: Arc<BrokerConfig>,
    pub mesh: OnceCell<Mesh<ShardRequest, ShardReply>>,
    pub image: RefCell<SharedImage>,
    pub logs: RefCell<HashMap<TopicPartition, Rc<PartitionLog>>>,
    pub storage: Rc<ShardStorage>,
    /// The port this broker actually listens on (differs from the config when it asked for 0).
    pub port: Cell<u16>,
    pub shutting_down: Cell<bool>,
    /// Peers that have drained their connections during shutdown (`ShardRequest::Drained`).
    pub drained_peers: Cell<usize>,
    shutdown_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// The port shard 0 listens on, sent once it is bound. Made with the shard, so that a
    /// `Listen` that arrives before the shard's start-up asks for it is kept, not lost.
    listen_tx: RefCell<Option<oneshot::Sender<u16>>>,
    listen_rx: RefCell<Option<oneshot::Receiver<u16>>>,
    pub connections: Cell<usize>,
    /// Serialises controller operations on shard 0.
    pub control_lock: runtime::LocalLock,
    /// The cluster node (shard 0 only): quorum voter, controller, this broker's registration.
    pub cluster: OnceCell<Rc<crate::cluster::Node>>,
    /// The consumer groups this shard coordinates.
    pub coordinator: group::Coordinator,
    /// What this shard counts for the metrics endpoint (storage counts its own part).
    pub metrics: ShardMetrics,
    /// The fetch sessions of this shard's connections.
    pub fetch_sessions: RefCell<FetchSessionCache>,
    /// Where this shard's monotonic milliseconds (`now_ms_monotonic`) start.
    started: Instant,
}

impl Shard {
    pub fn new(id: ShardId, count: usize, config: Arc<BrokerConfig>) -> Rc<Shard> {
        let storage = ShardStorage::new(config.batch_cache_bytes);
        storage
            .cleaner_io_bytes_per_second
            .set(config.log_cleaner_io_max_bytes_per_second);
        let (listen_tx, listen_rx) = oneshot::channel();
        Rc::new(Shard {
            id,
            count,
            mesh: OnceCell::new(),
            image: RefCell::new(Arc::new(Image::default())),
            logs: RefCell::new(HashMap::new()),
            storage,
            port: Cell::new(0),
            shutting_down: Cell::new(false),
            drained_peers: Cell::new(0),
            shutdown_waiters: RefCell::new(Vec::new()),
            listen_tx: RefCell::new(Some(listen_tx)),
            listen_rx: RefCell::new(Some(listen_rx)),
            connections: Cell::new(0),
            control_lock: runtime::LocalLock::new(1),
            cluster: OnceCell::new(),
            coordinator: group::Coordinator::default(),
            metrics: ShardMetrics::default(),
            fetch_sessions: RefCell::new(FetchSessionCache::new(
                config.fetch_session_slots_per_shard(),
                config.fetch_session_eviction_ms,
                id as u32,
                count as u32,
                session_id_seed(id),
            )),
            started: Instant::now(),
            config,
        })
    }

    /// Milliseconds since this shard started, never going back (fetch-session ages).
    pub fn monotonic_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn mesh(&self) -> &Mesh<ShardRequest, ShardReply> {
        self.mesh.get().expect("mesh joined at start")
    }

    pub fn image(&self) -> SharedImage {
        self.image.borrow().clone()
    }

    pub fn owner(&self, topic: &str, partition: i32) -> ShardId {
        metadata::owner_shard(topic, partition, self.count)
    }

    pub fn log(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.logs
            .borrow()
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    /// Sends `request` to `to`, or runs it here if `to` is this shard.
    pub async fn call(self: &Rc<Self>, to: ShardId, request: ShardRequest) -> ShardReply {
        if to == self.id {
            return self.clone().serve(self.id, request).await;
        }
        match self.mesh().call(to, request).await {
            Ok(reply) => reply
                .await
                .unwrap_or_else(|e| ShardReply::Failed(e.to_string())),
            Err(e) => ShardReply::Failed(e.to_string()),
        }
    }

    /// Serves a request from a peer (or from this shard). The synchronous part (appends) runs
    /// before the first await, so requests from one sender are applied in order.
    pub fn serve(
        self: Rc<Self>,
        _from: ShardId,
        request: ShardRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ShardReply>>> {
        match request {
            ShardRequest::Produce(batch) => {
                let pending = ops::produce_local(&self, batch);
                Box::pin(async move { ShardReply::Produce(pending.await) })
            }
            ShardRequest::Fetch {
                items,
                response_max_bytes,
            } => Box::pin(async move {
                let results = ops::fetch_local(&self, items, response_max_bytes).await;
                ShardReply::Fetch(
                    results
                        .into_iter()
                        .map(|r| r.map_records(|c| c.into_bytes()))
                        .collect(),
                )
            }),
            ShardRequest::WaitForData { items, timeout } => Box::pin(async move {
                ops::wait_for_data_local(&self, &items, timeout).await;
                ShardReply::Done
            }),
            ShardRequest::ListOffsets(items) => Box::pin(async move {
                ShardReply::ListOffsets(ops::list_offsets_local(&self, items).await)
            }),
            ShardRequest::Control(request) => {
                Box::pin(async move { ShardReply::Control(ops::control(&self, request).await) })
            }
            ShardRequest::Apply(image) => Box::pin(async move {
                match self.apply_image(image).await {
                    Ok(()) => ShardReply::Done,
                    Err(e) => ShardReply::Failed(e.to_string()),
                }
            }),
            ShardRequest::AllocateProducerId => Box::pin(async move {
                ShardReply::ProducerId(match self.cluster.get() {
                    Some(node) => node.allocate_producer_id().await,
                    None => Err("producer ids are handed out by shard 0".into()),
                })
            }),
            ShardRequest::Quorum(header, messages) => {
                let checked = match self.cluster.get() {
                    Some(node) => node.check_peer(&header).map(|()| node.step(messages)),
                    None => Err("this shard runs no cluster node".into()),
                };
                Box::pin(async move {
                    match checked {
                        Ok(()) => ShardReply::Done,
                        Err(why) => ShardReply::Failed(why),
                    }
                })
            }
            ShardRequest::CallController(call) => Box::pin(async move {
                let answer = match self.cluster.get() {
                    Some(node) => node.clone().call_controller(*call).await,
                    None => crate::cluster::wire::ControllerAnswer::Failed(
                        "controller calls are made by shard 0".into(),
                    ),
                };
                ShardReply::Controller(Box::new(answer))
            }),
            ShardRequest::Controller(call) => Box::pin(async move {
                let answer = match self.cluster.get() {
                    Some(node) => {
                        let node = node.clone();
                        match *call {
                            crate::cluster::wire::ControllerCall::Control(request) => {
                                let (outcomes, index) =
                                    ops::control_as_controller(&self, &node, request).await;
                                crate::cluster::wire::ControllerAnswer::Control(outcomes, index)
                            }
                            call => node.handle_call(call).await,
                        }
                    }
                    None => crate::cluster::wire::ControllerAnswer::Failed(
                        "controller calls are served by shard 0".into(),
                    ),
                };
                ShardReply::Controller(Box::new(answer))
            }),
            ShardRequest::Group(call) => {
                Box::pin(async move { ShardReply::Group(group::serve(&self, *call).await) })
            }
            ShardRequest::Metrics => {
                let snapshot = Box::new(metrics::snapshot(&self));
                Box::pin(async move { ShardReply::Metrics(snapshot) })
            }
            ShardRequest::Listen(port) => {
                if let Some(tx) = self.listen_tx.borrow_mut().take() {
                    let _ = tx.send(port);
                }
                Box::pin(async { ShardReply::Done })
            }
            ShardRequest::Stop => {
                self.begin_shutdown();
                Box::pin(async { ShardReply::Done })
            }
            ShardRequest::Drained => {
                self.drained_peers.set(self.drained_peers.get() + 1);
                Box::pin(async { ShardReply::Done })
            }
        }
    }

    /// Opens the logs this shard owns in `image` that it does not have yet, closes and deletes
    /// the ones whose topic is gone, and updates configs.
    pub async fn apply_image(self: &Rc<Self>, image: SharedImage) -> anyhow::Result<()> {
        let old = self.image.replace(image.clone());
        // A dynamic log.cleaner.io.max.bytes.per.second: the next cleaner pass reads at it.
        self.storage
            .cleaner_io_bytes_per_second
            .set(image.broker.log_cleaner_io_max_bytes_per_second);
        let data_dir = self.config.data_dir().to_path_buf();
        // Topics removed (or re-created with a new id): delete their partitions.
        let doomed: Vec<(TopicPartition, Rc<PartitionLog>)> = self
            .logs
            .borrow()
            .iter()
            .filter(|((topic, _), _)| {
                let now = image.topic(topic).map(|t| t.record.id);
                let before = old.topic(topic).map(|t| t.record.id);
                now.is_none() || now != before
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, log) in doomed {
            self.logs.borrow_mut().remove(&key);
            let dir = log.dir().to_path_buf();
            drop(log);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot delete partition");
            }
        }
        let mut to_open = Vec::new();
        for (name, topic) in &image.topics {
            for partition in 0..topic.record.partitions as i32 {
                if self.owner(name, partition) != self.id || !image.hosts(name, partition) {
                    continue;
                }
                let key = (name.clone(), partition);
                let epoch = topic.partition(partition).map_or(0, |p| p.leader_epoch);
                let existing = self.logs.borrow().get(&key).cloned();
                match existing {
                    Some(log) => {
                        log.set_config(topic.config.clone());
                        log.set_leader_epoch(epoch);
                    }
                    None => to_open.push((key, topic.config.clone(), epoch)),
                }
            }
        }
        // Several logs open at once: recovery is mostly waiting for reads, and a start with
        // thousands of partitions should not wait for them one after another.
        let opens = to_open.into_iter().map(|(key, config, epoch)| {
            let dir = metadata::partition_dir(&data_dir, &key.0, key.1);
            let storage = self.storage.clone();
            async move { (key, PartitionLog::open(dir, config, epoch, storage).await) }
        });
        let mut opened = futures::stream::iter(opens).buffer_unordered(LOGS_OPENED_AT_ONCE);
        while let Some(((name, partition), log)) = opened.next().await {
            let log = log?;
            self.logs
                .borrow_mut()
                .insert((name.clone(), partition), log.clone());
            if name == group::OFFSETS_TOPIC {
                group::start_load(self, partition, log);
            }
        }
        Ok(())
    }

    /// Sends the image to every shard (this one included) and waits until all applied it.
    pub async fn publish_image(self: &Rc<Self>, image: SharedImage) -> anyhow::Result<()> {
        let calls = (0..self.count).map(|to| self.call(to, ShardRequest::Apply(image.clone())));
        for reply in futures::future::join_all(calls).await {
            if let ShardReply::Failed(e) = reply {
                anyhow::bail!("a shard failed to apply the cluster image: {e}");
            }
        }
        Ok(())
    }

    /// The port shard 0 will send (or has sent) with `Listen`. Called once, at start-up.
    pub fn wait_listen(&self) -> oneshot::Receiver<u16> {
        self.listen_rx
            .borrow_mut()
            .take()
            .expect("wait_listen is called once")
    }

    pub fn shutdown_signal(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.shutting_down.get() {
            let _ = tx.send(());
        } else {
            self.shutdown_waiters.borrow_mut().push(tx);
        }
        rx
    }

    pub fn begin_shutdown(&self) {
        if !self.shutting_down.replace(true) {
            for tx in self.shutdown_waiters.borrow_mut().drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// Periodic work: retention, time-based segment rolls, idle producer ids.
    pub async fn run_housekeeping(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.log_retention_check_interval_ms.max(1));
        loop {
            if runtime::timeout(interval, self.shutdown_signal())
                .await
                .is_some()
            {
                return;
            }
            let now = ops::now_ms();
            let logs: Vec<Rc<PartitionLog>> = self.logs.borrow().values().cloned().collect();
            for log in logs {
                log.roll_if_old();
                // The effective value: producer.id.expiration.ms may be changed dynamically.
                let expiration_ms = self.image().broker.producer_id_expiration_ms;
                log.expire_producers(now, expiration_ms);
                if let Err(e) = log.enforce_retention(now).await {
                    tracing::warn!(log = %log.dir().display(), error = %e, "retention failed");
                }
                runtime::yield_now().await;
            }
        }
    }

    /// Compaction: a pass over each compacted log this shard owns, every `log.cleaner.backoff.ms`.
    /// Passes yield between batches, so produce and fetch on this shard go on meanwhile. The
    /// pause is read from the image before each one, so a dynamic change applies from the next.
    pub async fn run_cleaner(self: Rc<Self>) {
        loop {
            let interval = Duration::from_millis(self.image().broker.log_cleaner_backoff_ms.max(1));
            if runtime::timeout(interval, self.shutdown_signal())
                .await
                .is_some()
            {
                return;
            }
            let logs: Vec<Rc<PartitionLog>> = self
                .logs
                .borrow()
                .values()
                .filter(|log| log.config().cleanup_policy.compact)
                .cloned()
                .collect();
            for log in logs {
                if self.shutting_down.get() {
                    return;
                }
                let started = std::time::Instant::now();
                match log.clean(ops::now_ms()).await {
                    Ok(Some(stats)) => tracing::info!(
                        log = %log.dir().display(),
                        segments_in = stats.segments_in,
                        segments_out = stats.segments_out,
                        bytes_in = stats.bytes_in,
                        bytes_out = stats.bytes_out,
                        records_removed = stats.records_removed,
                        tombstones_removed = stats.tombstones_removed,
                        ms = started.elapsed().as_millis() as u64,
                        "compacted"
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(log = %log.dir().display(), error = %e, "compaction failed")
                    }
                }
            }
        }
    }

    /// Flushes, syncs and closes every log this shard owns, several at once.
    pub async fn close_logs(&self) {
        let logs: Vec<Rc<PartitionLog>> = self.logs.borrow().values().cloned().collect();
        let closes = logs.into_iter().map(|log| async move {
            if let Err(e) = log.close().await {
                tracing::error!(log = %log.dir().display(), error = %e, "close failed");
            }
        });
        futures::stream::iter(closes)
            .buffer_unordered(LOGS_OPENED_AT_ONCE)
            .for_each(|()| async {})
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shard 0 may send the port before this shard's start-up asks for it (the mesh serves a
    /// shard from the moment it joins): the port is kept, not dropped.
    #[test]
    fn a_listen_that_comes_before_start_up_asks_is_kept() {
        let port = crate::runtime::run_local(1 << 20, || async {
            let shard = Shard::new(1, 2, Arc::new(BrokerConfig::default()));
            assert!(matches!(
                shard.clone().serve(0, ShardRequest::Listen(9093)).await,
                ShardReply::Done
            ));
            shard.wait_listen().await
        })
        .expect("executor");
        assert_eq!(port, Ok(9093));
    }
}

//! The producer: records are partitioned (Kafka's partitioners), gathered into one open batch
//! per partition, and a batch is sent when it reaches `batch_size` or has waited `linger`.
//! Memory is bounded (`buffer_memory`): `send` waits for room instead of queueing without end.
//! Idempotence is on by default: the producer gets an id and epoch (InitProducerId), numbers
//! each partition's batches, and retries a failed batch with the same sequence, so the broker
//! drops a duplicate; batches of one partition go one at a time, which keeps them in order.
//! Each record is encoded into its partition's batch as it is sent (`protocol::builder`), so
//! closing a batch costs a header, a CRC and, with a codec, one compression. Each record's
//! future resolves to its partition and offset, or to its error.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::messages::{self as m, ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;
pub use kafka_protocol::records::Compression;

use super::connection::Connection;
use super::partitioner::{DefaultPartitioner, Partitioner};
use super::ClientError;
use crate::protocol::batch;
use crate::protocol::builder::BatchBuilder;
use crate::runtime::{self, LocalLock};

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub bootstrap: String,
    pub client_id: String,
    /// 0, 1 or -1 (all). Idempotence needs -1.
    pub acks: i16,
    pub linger: Duration,
    pub batch_size: usize,
    pub compression: Compression,
    pub idempotence: bool,
    pub buffer_memory: usize,
    /// How long a record may take, retries included, before its future fails.
    pub delivery_timeout: Duration,
    /// Batches of one partition sent and not yet answered (Java's
    /// `max.in.flight.requests.per.connection`, default 5). Idempotence keeps them in order
    /// through retries; it allows at most 5, the batches a broker remembers per producer.
    pub max_in_flight: usize,
}

impl ProducerConfig {
    pub fn new(bootstrap: &str) -> Self {
        ProducerConfig {
            bootstrap: bootstrap.to_owned(),
            client_id: "shardlog-producer".into(),
            acks: -1,
            linger: Duration::from_millis(5),
            batch_size: 16 << 10,
            compression: Compression::None,
            idempotence: true,
            buffer_memory: 32 << 20,
            delivery_timeout: Duration::from_secs(120),
            max_in_flight: IDEMPOTENT_IN_FLIGHT_MAX,
        }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 with acks=0 (the broker does not answer).
    pub offset: i64,
}

pub type Delivery = oneshot::Receiver<Result<RecordMetadata, ClientError>>;

/// A record to send: `send_record`'s argument, for what `send` has no parameter for.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Shared, so a program sending many records to one topic clones a pointer, not a name.
    pub topic: std::sync::Arc<str>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: batch::Headers,
    /// Chosen by the partitioner when `None`.
    pub partition: Option<i32>,
    /// Creation time in ms since the epoch; now when `None`.
    pub timestamp: Option<i64>,
}

type DeliverySender = oneshot::Sender<Result<RecordMetadata, ClientError>>;

/// A callback `send_with_callback` runs with the record's outcome.
pub type DeliveryCallback = Box<dyn FnOnce(Result<RecordMetadata, ClientError>)>;

/// Who hears of a record's outcome: its future, or the application's callback (cheaper: no
/// channel, nothing to poll).
enum Notify {
    Future(DeliverySender),
    Callback(DeliveryCallback),
}

impl Notify {
    fn tell(self, outcome: Result<RecordMetadata, ClientError>) {
        match self {
            Notify::Future(sender) => {
                let _ = sender.send(outcome);
            }
            Notify::Callback(callback) => callback(outcome),
        }
    }
}

/// The records of one partition gathered so far, already encoded (`BatchBuilder`), and who
/// waits for each.
/// A record without its topic: key, value, headers, partition, timestamp.
type RecordParts = (
    Option<Bytes>,
    Option<Bytes>,
    batch::Headers,
    Option<i32>,
    Option<i64>,
);

impl ProducerRecord {
    fn into_parts(self) -> (std::sync::Arc<str>, RecordParts) {
        (
            self.topic,
            (
                self.key,
                self.value,
                self.headers,
                self.partition,
                self.timestamp,
            ),
        )
    }
}

struct OpenBatch {
    id: u64,
    builder: BatchBuilder,
    deliveries: Vec<Notify>,
    /// What the records count against `buffer_memory`.
    bytes: usize,
    /// Its linger has passed while the partition had no room on the wire: it keeps taking
    /// records until the sender has room for it (as Java's accumulator does), rather than
    /// queueing as a run of small batches behind the full window.
    due: bool,
}

#[derive(Default)]
struct PartitionQueue {
    waiting: std::collections::VecDeque<OpenBatch>,
    /// The sender has `max_in_flight` batches on the wire.
    window_full: bool,
    /// Set while the partition's sender runs: a batch closed meanwhile wakes it.
    sender: Option<futures::channel::mpsc::UnboundedSender<()>>,
}

/// A batch on the wire (or about to be resent), with what its answer resolves.
struct Sending {
    batch: OpenBatch,
    /// First sequence (-1 without idempotence).
    sequence: i32,
    /// The producer epoch the sequence was given under: after an epoch bump the batch is
    /// numbered again, from the partition's new sequence, before it is sent again.
    epoch: i16,
    encoded: Bytes,
    first_sent: Instant,
    response: ProduceResponseFuture,
}

type ProduceResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64, ClientError>>>>;

fn ready(result: Result<i64, ClientError>) -> ProduceResponseFuture {
    Box::pin(std::future::ready(result))
}

/// Batches per partition and producer a broker remembers to recognise a retried one.
pub const IDEMPOTENT_IN_FLIGHT_MAX: usize = 5;
/// OUT_OF_ORDER_SEQUENCE_NUMBER: a batch that follows one the broker did not write.
const OUT_OF_ORDER_SEQUENCE: i16 = 45;
/// How long the broker may take to meet `acks` before it answers REQUEST_TIMED_OUT.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Produce requests on the wire to one broker at once, each holding at most one batch of a
/// partition; batches that close while they are out go together in the next request. More
/// than Java's 5 (`max.in.flight.requests.per.connection`): each partition's own window
/// (`max_in_flight`) already bounds its batches, and with 5 a 64-partition producer ran
/// 12-18% slower than with 32 (`perf/bench.sh 1k-64p`).
const REQUESTS_IN_FLIGHT_PER_BROKER: usize = 32;
/// The record bytes one Produce request gathers at most (Java's `max.request.size`): a broker
/// starts on a request only once all of it has arrived, so a huge one delays every batch in it.
/// A single larger batch still goes, alone.
const REQUEST_BYTES_MAX: usize = 1 << 20;

/// A partition's batch waiting for a place in a Produce request to its leader.
struct Queued {
    slot: (String, i32),
    records: Bytes,
    answer: oneshot::Sender<Result<i64, ClientError>>,
}

/// The batches bound for one broker, and its request sender while one runs.
#[derive(Default)]
struct BrokerQueue {
    waiting: std::collections::VecDeque<Queued>,
    requests_in_flight: usize,
    wake: Option<futures::channel::mpsc::UnboundedSender<()>>,
}

/// The most a new batch's buffer reserves up front, whatever `batch_size` says.
const BATCH_RESERVE_BYTES_MAX: usize = 1 << 20;

#[derive(Default)]
struct Cluster {
    brokers: HashMap<i32, String>,
    /// topic → leader of each partition.
    topics: HashMap<String, Vec<i32>>,
}

struct Inner {
    config: ProducerConfig,
    bootstrap: RefCell<Rc<Connection>>,
    cluster: RefCell<Cluster>,
    connections: RefCell<HashMap<i32, Rc<Connection>>>,
    partitioner: RefCell<Box<dyn Partitioner>>,
    /// topic → partition → the batch being filled; looked up by `&str`, so a send allocates
    /// nothing for it.
    open: RefCell<HashMap<String, HashMap<i32, OpenBatch>>>,
    next_batch: Cell<u64>,
    memory: Rc<LocalLock>,
    /// Closed batches per partition waiting to be sent, in the order of `send`, and the wake-up
    /// of the partition's sender task while one runs.
    queued: RefCell<HashMap<(String, i32), PartitionQueue>>,
    sequences: RefCell<HashMap<(String, i32), i32>>,
    producer: Cell<(i64, i16)>,
    pending: Cell<usize>,
    idle: RefCell<Vec<oneshot::Sender<()>>>,
    /// Per leader: batches waiting for a Produce request, and that request's sender.
    broker_queues: RefCell<HashMap<i32, BrokerQueue>>,
    /// Batches handed to a broker queue and not answered yet, over every partition.
    batches_in_flight: Cell<usize>,
    /// Woken when `batches_in_flight` drops to zero.
    quiet: RefCell<Vec<oneshot::Sender<()>>>,
    /// A batch failed in a way that leaves its sequences in doubt (it may or may not have
    /// been written): the next batch waits for the epoch to be bumped (KIP-360), after which
    /// every partition's sequences start again at 0, so no later batch fails on the gap.
    bump_epoch: Cell<bool>,
}

#[derive(Clone)]
pub struct Producer {
    inner: Rc<Inner>,
}

fn record_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &batch::Headers) -> usize {
    // Record overhead in a batch is about 20 bytes; this is what counts against the budget.
    20 + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|(name, value)| 2 + name.len() + value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}

impl Producer {
    pub async fn connect(config: ProducerConfig) -> Result<Producer, ClientError> {
        if config.idempotence && config.acks != -1 {
            return Err(ClientError::Config(
                "idempotence needs acks=all (-1)".into(),
            ));
        }
        if config.max_in_flight == 0
            || (config.idempotence && config.max_in_flight > IDEMPOTENT_IN_FLIGHT_MAX)
        {
            return Err(ClientError::Config(format!(
                "max_in_flight={} (expected 1 to {IDEMPOTENT_IN_FLIGHT_MAX} with idempotence, at least 1 without)",
                config.max_in_flight
            )));
        }
        if !(-1..=1).contains(&config.acks) {
            return Err(ClientError::Config(format!(
                "acks={} (expected -1, 0 or 1)",
                config.acks
            )));
        }
        let bootstrap = Connection::connect(&config.bootstrap, &config.client_id).await?;
        let inner = Rc::new(Inner {
            memory: Rc::new(LocalLock::new(config.buffer_memory as u64)),
            config,
            bootstrap: RefCell::new(bootstrap),
            cluster: RefCell::new(Cluster::default()),
            connections: RefCell::new(HashMap::new()),
            partitioner: RefCell::new(Box::new(DefaultPartitioner::default())),
            open: RefCell::new(HashMap::new()),
            next_batch: Cell::new(0),
            queued: RefCell::new(HashMap::new()),
            sequences: RefCell::new(HashMap::new()),
            producer: Cell::new((-1, -1)),
            pending: Cell::new(0),
            idle: RefCell::new(Vec::new()),
            broker_queues: RefCell::new(HashMap::new()),
            batches_in_flight: Cell::new(0),
            quiet: RefCell::new(Vec::new()),
            bump_epoch: Cell::new(false),
        });
        if inner.config.idempotence {
            inner.init_producer_id().await?;
        }
        Ok(Producer { inner })
    }

    /// Replaces the default partitioner (murmur2 for keys, sticky otherwise).
    pub fn set_partitioner(&self, partitioner: Box<dyn Partitioner>) {
        *self.inner.partitioner.borrow_mut() = partitioner;
    }

    /// Queues a record; waits only while the producer's memory budget is used up. The returned
    /// future resolves when the broker has acknowledged it (as `acks` says).
    pub async fn send(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        partition: Option<i32>,
    ) -> Result<Delivery, ClientError> {
        let (tx, rx) = oneshot::channel();
        let parts = (key, value, Vec::new(), partition, None);
        self.send_parts(topic, parts, Notify::Future(tx)).await?;
        Ok(rx)
    }

    /// `send` for a record with headers or a timestamp of its own.
    pub async fn send_record(&self, record: ProducerRecord) -> Result<Delivery, ClientError> {
        let (tx, rx) = oneshot::channel();
        let (topic, parts) = record.into_parts();
        self.send_parts(&topic, parts, Notify::Future(tx)).await?;
        Ok(rx)
    }

    /// `send_record`, with `callback` run on the producer's executor when the record is
    /// acknowledged or has failed, instead of a future (as the Java client's callbacks). The
    /// callback must not block.
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata, ClientError>) + 'static,
    ) -> Result<(), ClientError> {
        let (topic, parts) = record.into_parts();
        self.send_parts(&topic, parts, Notify::Callback(Box::new(callback)))
            .await
    }

    async fn send_parts(
        &self,
        topic: &str,
        (key, value, headers, partition, timestamp): RecordParts,
        notify: Notify,
    ) -> Result<(), ClientError> {
        let inner = &self.inner;
        let partitions = inner.partition_count(topic).await?;
        let partition = match partition {
            Some(p) if (0..partitions).contains(&p) => p,
            Some(p) => {
                return Err(ClientError::Config(format!(
                    "{topic} has {partitions} partitions; there is no partition {p}"
                )))
            }
            None => inner
                .partitioner
                .borrow_mut()
                .partition(topic, key.as_deref(), partitions),
        };
        let size = record_size(key.as_deref(), value.as_deref(), &headers);
        if size > inner.config.buffer_memory {
            return Err(ClientError::Config(format!(
                "a record of {size} bytes is larger than buffer_memory"
            )));
        }
        inner
            .memory
            .acquire(size as u64)
            .await
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let timestamp = timestamp.unwrap_or_else(crate::broker::ops::now_ms);
        inner.pending.set(inner.pending.get() + 1);
        let (full, new_batch) = {
            let mut open = inner.open.borrow_mut();
            if !open.contains_key(topic) {
                open.insert(topic.to_owned(), HashMap::new());
            }
            let partitions = open.get_mut(topic).expect("inserted above");
            let new_batch = !partitions.contains_key(&partition);
            let batch = partitions.entry(partition).or_insert_with(|| {
                let id = inner.next_batch.get();
                inner.next_batch.set(id + 1);
                OpenBatch {
                    id,
                    builder: BatchBuilder::with_capacity(
                        inner.config.batch_size.min(BATCH_RESERVE_BYTES_MAX),
                    ),
                    deliveries: Vec::new(),
                    bytes: 0,
                    due: false,
                }
            });
            batch
                .builder
                .push(timestamp, key.as_deref(), value.as_deref(), &headers);
            batch.deliveries.push(notify);
            batch.bytes += size;
            (
                batch.builder.size_bytes() >= inner.config.batch_size,
                new_batch.then_some(batch.id),
            )
        };
        if full {
            inner.close_batch(&(topic.to_owned(), partition));
        } else if let Some(id) = new_batch {
            // The batch goes when `linger` has passed, unless it filled up first.
            let inner = self.inner.clone();
            let slot = (topic.to_owned(), partition);
            runtime::spawn(async move {
                runtime::sleep(inner.config.linger).await;
                if inner.open_batch_id(&slot) == Some(id) {
                    inner.close_batch_when_room(&slot);
                }
            });
        }
        Ok(())
    }

    /// Sends every open batch now and waits until every record sent so far is answered.
    pub async fn flush(&self) {
        let slots: Vec<(String, i32)> = self
            .inner
            .open
            .borrow()
            .iter()
            .flat_map(|(topic, partitions)| partitions.keys().map(|p| (topic.clone(), *p)))
            .collect();
        for slot in slots {
            self.inner.close_batch(&slot);
        }
        if self.inner.pending.get() == 0 {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.inner.idle.borrow_mut().push(tx);
        let _ = rx.await;
    }
}

impl Inner {
    fn open_batch_id(&self, (topic, partition): &(String, i32)) -> Option<u64> {
        self.open
            .borrow()
            .get(topic)
            .and_then(|p| p.get(partition))
            .map(|b| b.id)
    }

    /// Gets a new producer id and epoch (InitProducerId).
    async fn init_producer_id(&self) -> Result<(), ClientError> {
        let connection = self.metadata_connection().await?;
        let version = connection.version(ApiKey::InitProducerId, (0, 4))?;
        let mut request = m::InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = 60_000;
        let response: m::InitProducerIdResponse = connection
            .send(ApiKey::InitProducerId, version, &request)
            .await?;
        if let Some(error) = ClientError::from_code(response.error_code, None) {
            return Err(error);
        }
        self.producer
            .set((response.producer_id.0, response.producer_epoch));
        Ok(())
    }

    /// If a batch left its sequences in doubt, bumps the epoch once nothing is on the wire:
    /// as Java's idempotent producer does (KIP-360), the epoch goes up by one on the client
    /// (the broker takes a higher epoch that starts at sequence 0), or, when the epoch is used
    /// up, a new producer id is fetched. Every partition's sequences restart at 0.
    async fn bump_epoch_if_needed(&self) -> Result<(), ClientError> {
        while self.bump_epoch.get() && self.batches_in_flight.get() > 0 {
            let (tx, rx) = oneshot::channel();
            self.quiet.borrow_mut().push(tx);
            let _ = rx.await;
        }
        if !self.bump_epoch.replace(false) {
            return Ok(());
        }
        let (id, epoch) = self.producer.get();
        if epoch == i16::MAX {
            self.init_producer_id().await?;
        } else {
            self.producer.set((id, epoch + 1));
        }
        self.sequences.borrow_mut().clear();
        let (id, epoch) = self.producer.get();
        tracing::info!(
            producer_id = id,
            epoch,
            "bumped the producer epoch after a batch whose delivery is in doubt"
        );
        Ok(())
    }

    /// Gives `sending` a sequence under the current epoch: the partition's next one.
    fn assign_sequence(&self, slot: &(String, i32), sending: &mut Sending) {
        let (producer_id, epoch) = self.producer.get();
        sending.epoch = epoch;
        sending.sequence = if producer_id >= 0 {
            let mut sequences = self.sequences.borrow_mut();
            let next = sequences.entry(slot.clone()).or_insert(0);
            let sequence = *next;
            *next = next.wrapping_add(sending.batch.deliveries.len() as i32) & i32::MAX;
            sequence
        } else {
            -1
        };
    }

    /// The connection for metadata: the bootstrap broker, reconnected if it was lost.
    async fn metadata_connection(&self) -> Result<Rc<Connection>, ClientError> {
        let current = self.bootstrap.borrow().clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let fresh = Connection::connect(&self.config.bootstrap, &self.config.client_id).await?;
        *self.bootstrap.borrow_mut() = fresh.clone();
        Ok(fresh)
    }

    async fn refresh_metadata(&self, topics: &[&str]) -> Result<(), ClientError> {
        let connection = self.metadata_connection().await?;
        let version = connection.version(ApiKey::Metadata, (4, 12))?;
        let mut request = m::MetadataRequest::default();
        request.topics = Some(
            topics
                .iter()
                .map(|t| {
                    let mut topic = m::metadata_request::MetadataRequestTopic::default();
                    topic.name = Some(TopicName(StrBytes::from_string((*t).to_owned())));
                    topic
                })
                .collect(),
        );
        request.allow_auto_topic_creation = true;
        let response: m::MetadataResponse =
            connection.send(ApiKey::Metadata, version, &request).await?;
        let mut cluster = self.cluster.borrow_mut();
        for b in &response.brokers {
            cluster
                .brokers
                .insert(b.node_id.0, format!("{}:{}", b.host, b.port));
        }
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            if topic.error_code != 0 {
                cluster.topics.remove(name.0.as_str());
                continue;
            }
            let mut leaders = vec![-1; topic.partitions.len()];
            for p in &topic.partitions {
                if let Some(slot) = leaders.get_mut(p.partition_index as usize) {
                    *slot = p.leader_id.0;
                }
            }
            cluster.topics.insert(name.0.to_string(), leaders);
        }
        Ok(())
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, ClientError> {
        if let Some(leaders) = self.cluster.borrow().topics.get(topic) {
            return Ok(leaders.len() as i32);
        }
        self.refresh_metadata(&[topic]).await?;
        self.cluster
            .borrow()
            .topics
            .get(topic)
            .map(|l| l.len() as i32)
            .ok_or_else(|| ClientError::from_code(3, Some(topic.to_owned())).expect("non-zero"))
    }

    /// The leader of a partition as the producer last heard, -1 if none.
    fn leader(&self, topic: &str, partition: i32) -> i32 {
        self.cluster
            .borrow()
            .topics
            .get(topic)
            .and_then(|l| l.get(partition as usize).copied())
            .unwrap_or(-1)
    }

    async fn broker_connection(&self, broker: i32) -> Result<Rc<Connection>, ClientError> {
        if let Some(c) = self.connections.borrow().get(&broker) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let address = self.cluster.borrow().brokers.get(&broker).cloned();
        let Some(address) = address else {
            return Err(
                ClientError::from_code(5, Some(format!("broker {broker}"))).expect("non-zero")
            );
        };
        let connection = Connection::connect(&address, &self.config.client_id).await?;
        self.connections
            .borrow_mut()
            .insert(broker, connection.clone());
        Ok(connection)
    }

    /// Takes the open batch of `slot` and sends it in the background.
    /// Closes the partition's open batch if the sender has room for it; otherwise marks it
    /// due, and the sender closes it when it has room.
    fn close_batch_when_room(self: &Rc<Self>, slot: &(String, i32)) {
        let busy = self
            .queued
            .borrow()
            .get(slot)
            .is_some_and(|q| q.window_full || !q.waiting.is_empty());
        if !busy {
            return self.close_batch(slot);
        }
        if let Some(batch) = self
            .open
            .borrow_mut()
            .get_mut(&slot.0)
            .and_then(|p| p.get_mut(&slot.1))
        {
            batch.due = true;
        }
    }

    fn close_batch(self: &Rc<Self>, slot: &(String, i32)) {
        let Some(batch) = self
            .open
            .borrow_mut()
            .get_mut(&slot.0)
            .and_then(|p| p.remove(&slot.1))
        else {
            return;
        };
        self.partitioner.borrow_mut().on_new_batch(
            &slot.0,
            self.cluster
                .borrow()
                .topics
                .get(&slot.0)
                .map_or(1, |l| l.len() as i32),
        );
        let wake = {
            let mut queued = self.queued.borrow_mut();
            let queue = queued.entry(slot.clone()).or_default();
            queue.waiting.push_back(batch);
            match &queue.sender {
                Some(sender) => {
                    let _ = sender.unbounded_send(());
                    None
                }
                None => {
                    let (tx, rx) = futures::channel::mpsc::unbounded();
                    queue.sender = Some(tx);
                    Some(rx)
                }
            }
        };
        if let Some(wake) = wake {
            let inner = self.clone();
            let slot = slot.clone();
            runtime::spawn(async move { inner.drain(slot, wake).await });
        }
    }

    /// Sends a partition's closed batches in order until its queue is empty, with up to
    /// `max_in_flight` of them on the wire at once. Answers come back in order (one connection,
    /// which the broker serves in order); the first failure stops the window: every batch
    /// after it is answered first, then the ones to retry go again in their order, with the
    /// same sequences, so the broker recognises any it had already written. A batch refused
    /// for good (a Kafka error that retrying cannot mend) was not written, nor was anything
    /// after it, so those after it are renumbered to close the gap.
    async fn drain(
        self: Rc<Self>,
        slot: (String, i32),
        mut wake: futures::channel::mpsc::UnboundedReceiver<()>,
    ) {
        use futures::StreamExt;
        let mut window: std::collections::VecDeque<Sending> = std::collections::VecDeque::new();
        let mut backoff = RETRY_BACKOFF_FIRST;
        loop {
            while window.len() < self.config.max_in_flight {
                let next = self
                    .queued
                    .borrow_mut()
                    .get_mut(&slot)
                    .and_then(|q| q.waiting.pop_front());
                let Some(batch) = next else {
                    // Room, and nothing closed: the open batch goes if its linger is over.
                    let due = self
                        .open
                        .borrow()
                        .get(&slot.0)
                        .and_then(|p| p.get(&slot.1))
                        .is_some_and(|b| b.due);
                    if !due {
                        break;
                    }
                    self.close_batch(&slot);
                    continue;
                };
                let sending = self.send_first(&slot, batch).await;
                window.push_back(sending);
            }
            let room = window.len() < self.config.max_in_flight;
            if let Some(queue) = self.queued.borrow_mut().get_mut(&slot) {
                queue.window_full = !room;
            }
            let Some(head) = window.front_mut() else {
                let mut queued = self.queued.borrow_mut();
                let queue = queued.get_mut(&slot).expect("a queue with a sender");
                if queue.waiting.is_empty() {
                    queued.remove(&slot);
                    return;
                }
                continue;
            };
            let result = if room {
                // Room for more: a batch closed meanwhile goes out without waiting for this
                // answer.
                match futures::future::select(head.response.as_mut(), wake.next()).await {
                    futures::future::Either::Left((result, _)) => result,
                    futures::future::Either::Right(_) => continue,
                }
            } else {
                head.response.as_mut().await
            };
            match result {
                Ok(base) => {
                    let done = window.pop_front().expect("the head");
                    self.resolve(&slot, done.batch, Ok(base));
                    backoff = RETRY_BACKOFF_FIRST;
                }
                Err(error) => {
                    let refresh =
                        error.needs_metadata_refresh() || matches!(error, ClientError::Io { .. });
                    let retry = self.settle_failed_window(&slot, &mut window, error).await;
                    if retry {
                        if refresh {
                            let _ = self.refresh_metadata(&[slot.0.as_str()]).await;
                        }
                        runtime::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                        let bumped = self.bump_epoch_if_needed().await;
                        for sending in window.iter_mut() {
                            if let Err(e) = &bumped {
                                sending.response = ready(Err(e.duplicate()));
                                continue;
                            }
                            if self.producer.get().0 >= 0 && sending.epoch != self.producer.get().1
                            {
                                // Numbered under the epoch before a bump: renumbered under
                                // the new one, in the window's order.
                                self.assign_sequence(&slot, sending);
                                match self.encode(sending) {
                                    Ok(encoded) => sending.encoded = encoded,
                                    Err(e) => {
                                        sending.response = ready(Err(e));
                                        continue;
                                    }
                                }
                            }
                            sending.response = self.start_produce(&slot, sending.encoded.clone());
                        }
                    }
                }
            }
        }
    }

    /// Gives a closed batch its sequence, encodes it and puts it on the wire.
    async fn send_first(self: &Rc<Self>, slot: &(String, i32), batch: OpenBatch) -> Sending {
        let mut sending = Sending {
            batch,
            sequence: -1,
            epoch: -1,
            encoded: Bytes::new(),
            first_sent: Instant::now(),
            response: ready(Ok(-1)),
        };
        if let Err(e) = self.bump_epoch_if_needed().await {
            sending.response = ready(Err(e));
            return sending;
        }
        self.assign_sequence(slot, &mut sending);
        match self.encode(&sending) {
            Ok(encoded) => {
                sending.encoded = encoded.clone();
                sending.response = self.start_produce(slot, encoded);
            }
            Err(e) => sending.response = ready(Err(e)),
        }
        sending
    }

    fn encode(&self, sending: &Sending) -> Result<Bytes, ClientError> {
        let (producer_id, _) = self.producer.get();
        sending
            .batch
            .builder
            .finish(
                (producer_id, sending.epoch, sending.sequence),
                self.config.compression,
            )
            .map_err(ClientError::Config)
    }

    /// After the head of `window` failed with `first`: waits for the answers of the rest,
    /// resolves what is done (written, or refused for good), and leaves in `window` what is to
    /// be sent again, renumbered past any batch refused for good. Returns whether anything is
    /// left to retry.
    async fn settle_failed_window(
        &self,
        slot: &(String, i32),
        window: &mut std::collections::VecDeque<Sending>,
        first: ClientError,
    ) -> bool {
        let mut results = vec![Err(first)];
        for sending in window.iter_mut().skip(1) {
            results.push(sending.response.as_mut().await);
        }
        let mut kept = std::collections::VecDeque::new();
        // Records of batches before this point that the broker refused for good: their
        // sequences are free again.
        let mut gap: i32 = 0;
        let mut earlier_failed = false;
        for (mut sending, result) in window.drain(..).zip(results) {
            match result {
                Ok(base) => self.resolve(slot, sending.batch, Ok(base)),
                Err(error) => {
                    let follows_a_failure =
                        earlier_failed && matches!(error.code(), Some(OUT_OF_ORDER_SEQUENCE));
                    earlier_failed = true;
                    let in_time = sending.first_sent.elapsed() < self.config.delivery_timeout;
                    if (error.is_retriable() || follows_a_failure) && in_time {
                        if gap > 0 && sending.sequence >= 0 {
                            sending.sequence = sending.sequence.wrapping_sub(gap) & i32::MAX;
                            match self.encode(&sending) {
                                Ok(encoded) => sending.encoded = encoded,
                                Err(e) => {
                                    self.resolve(slot, sending.batch, Err(e));
                                    continue;
                                }
                            }
                        }
                        kept.push_back(sending);
                    } else {
                        // A Kafka error that is not retriable means the broker did not write
                        // the batch; a timed-out network failure may have been written, so its
                        // sequences are in doubt: the epoch is bumped before the next batch.
                        if matches!(error, ClientError::Kafka { .. }) && !error.is_retriable() {
                            gap = gap.wrapping_add(sending.batch.deliveries.len() as i32);
                        } else if sending.sequence >= 0 {
                            self.bump_epoch.set(true);
                        }
                        self.resolve(slot, sending.batch, Err(error));
                    }
                }
            }
        }
        if gap > 0 && self.producer.get().0 >= 0 {
            if let Some(next) = self.sequences.borrow_mut().get_mut(slot) {
                *next = next.wrapping_sub(gap) & i32::MAX;
            }
        }
        *window = kept;
        !window.is_empty()
    }

    /// Answers every record of a batch and gives its memory back.
    fn resolve(&self, slot: &(String, i32), batch: OpenBatch, result: Result<i64, ClientError>) {
        let count = batch.deliveries.len();
        for (i, notify) in batch.deliveries.into_iter().enumerate() {
            let outcome = match &result {
                Ok(base) => Ok(RecordMetadata {
                    partition: slot.1,
                    offset: if *base < 0 { -1 } else { base + i as i64 },
                }),
                Err(e) => Err(e.duplicate()),
            };
            notify.tell(outcome);
        }
        self.memory.signal(batch.bytes as u64);
        self.pending.set(self.pending.get() - count);
        if self.pending.get() == 0 {
            for tx in self.idle.borrow_mut().drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// Hands one batch to its leader's request sender; the future answers with its base
    /// offset (-1 with acks=0).
    fn start_produce(
        self: &Rc<Self>,
        slot: &(String, i32),
        records: Bytes,
    ) -> ProduceResponseFuture {
        let leader = self.leader(&slot.0, slot.1);
        if leader < 0 {
            let partition = format!("{}-{}", slot.0, slot.1);
            return ready(Err(
                ClientError::from_code(5, Some(partition)).expect("non-zero")
            ));
        }
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queues = self.broker_queues.borrow_mut();
            let queue = queues.entry(leader).or_default();
            queue.waiting.push_back(Queued {
                slot: slot.clone(),
                records,
                answer,
            });
            match &queue.wake {
                Some(wake) => {
                    let _ = wake.unbounded_send(());
                    None
                }
                None => {
                    let (tx, rx) = futures::channel::mpsc::unbounded();
                    queue.wake = Some(tx);
                    Some(rx)
                }
            }
        };
        self.batches_in_flight.set(self.batches_in_flight.get() + 1);
        if let Some(wake) = start {
            runtime::spawn(self.clone().send_to_broker(leader, wake));
        }
        Box::pin(async move {
            answered.await.unwrap_or_else(|_| {
                Err(ClientError::Config(
                    "the producer stopped before the answer".into(),
                ))
            })
        })
    }

    /// One batch was answered (or failed before it was): wakes an epoch bump waiting for quiet.
    fn batch_settled(&self) {
        let left = self.batches_in_flight.get() - 1;
        self.batches_in_flight.set(left);
        if left == 0 {
            for tx in self.quiet.borrow_mut().drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// A broker's request sender: takes every batch waiting for that broker (one per
    /// partition, in order; a partition's next batch goes in a later request, on the same
    /// connection, which the broker answers in order) into one Produce request, with up to
    /// `REQUESTS_IN_FLIGHT_PER_BROKER` requests out at once. Ends when nothing is waiting or
    /// in flight.
    async fn send_to_broker(
        self: Rc<Self>,
        broker: i32,
        mut wake: futures::channel::mpsc::UnboundedReceiver<()>,
    ) {
        use futures::StreamExt;
        let in_flight_max = REQUESTS_IN_FLIGHT_PER_BROKER.max(self.config.max_in_flight);
        loop {
            // Batches closed in this same turn of the executor (a flush, lingers that ran out
            // together) join the request.
            runtime::yield_to_requests().await;
            let taken: Vec<Queued> = {
                let mut queues = self.broker_queues.borrow_mut();
                let queue = queues.get_mut(&broker).expect("a queue with a sender");
                if queue.requests_in_flight >= in_flight_max {
                    Vec::new()
                } else {
                    let mut taken: Vec<Queued> = Vec::new();
                    let mut rest = std::collections::VecDeque::new();
                    let mut bytes = 0;
                    for queued in queue.waiting.drain(..) {
                        let full =
                            !taken.is_empty() && bytes + queued.records.len() > REQUEST_BYTES_MAX;
                        if full || taken.iter().any(|t| t.slot == queued.slot) {
                            rest.push_back(queued);
                        } else {
                            bytes += queued.records.len();
                            taken.push(queued);
                        }
                    }
                    queue.waiting = rest;
                    if taken.is_empty() && queue.requests_in_flight == 0 {
                        queues.remove(&broker);
                        return;
                    }
                    taken
                }
            };
            if taken.is_empty() {
                let _ = wake.next().await;
                continue;
            }
            if let Err(error) = self.write_request(broker, taken).await {
                tracing::debug!(broker, %error, "a produce request could not be sent");
            }
        }
    }

    /// Writes one Produce request with `taken` to `broker`, and answers each batch when the
    /// response comes (in a task of its own, so the sender goes on meanwhile).
    async fn write_request(
        self: &Rc<Self>,
        broker: i32,
        taken: Vec<Queued>,
    ) -> Result<(), ClientError> {
        let fail = |taken: Vec<Queued>, error: &ClientError| {
            for queued in taken {
                let _ = queued.answer.send(Err(error.duplicate()));
                self.batch_settled();
            }
        };
        let connection = match self.broker_connection(broker).await {
            Ok(connection) => connection,
            Err(error) => {
                fail(taken, &error);
                return Err(error);
            }
        };
        let version = match connection.version(ApiKey::Produce, (3, 9)) {
            Ok(version) => version,
            Err(error) => {
                fail(taken, &error);
                return Err(error);
            }
        };
        let mut topics: Vec<(&str, Vec<(i32, Bytes)>)> = Vec::new();
        for queued in &taken {
            let (topic, partition) = (&queued.slot.0, queued.slot.1);
            match topics.iter_mut().find(|(t, _)| *t == topic.as_str()) {
                Some((_, partitions)) => partitions.push((partition, queued.records.clone())),
                None => topics.push((topic, vec![(partition, queued.records.clone())])),
            }
        }
        let body = crate::protocol::produce::encode_request_parts(
            version,
            self.config.acks,
            PRODUCE_TIMEOUT_MS,
            &topics,
        );
        let answered = self.config.acks != 0;
        let pending = match connection
            .start_parts(ApiKey::Produce, version, body, answered)
            .await
        {
            Ok(pending) => pending,
            Err(error) => {
                fail(taken, &error);
                return Err(error);
            }
        };
        let Some(pending) = pending else {
            for queued in taken {
                let _ = queued.answer.send(Ok(-1));
                self.batch_settled();
            }
            return Ok(());
        };
        if let Some(queue) = self.broker_queues.borrow_mut().get_mut(&broker) {
            queue.requests_in_flight += 1;
        }
        let inner = self.clone();
        let name = connection.broker().to_owned();
        runtime::spawn(async move {
            let response: Result<m::ProduceResponse, ClientError> = pending.response().await;
            for queued in taken {
                let answer = match &response {
                    Err(error) => Err(error.duplicate()),
                    Ok(response) => response
                        .responses
                        .iter()
                        .filter(|t| t.name.0.as_str() == queued.slot.0)
                        .flat_map(|t| t.partition_responses.iter())
                        .find(|p| p.index == queued.slot.1)
                        .ok_or_else(|| ClientError::missing_partition(&name, "Produce"))
                        .and_then(|p| {
                            match ClientError::from_code(
                                p.error_code,
                                p.error_message.as_ref().map(|s| s.to_string()),
                            ) {
                                Some(error) => Err(error),
                                None => Ok(p.base_offset),
                            }
                        }),
                };
                let _ = queued.answer.send(answer);
                inner.batch_settled();
            }
            let mut queues = inner.broker_queues.borrow_mut();
            if let Some(queue) = queues.get_mut(&broker) {
                queue.requests_in_flight -= 1;
                if let Some(wake) = &queue.wake {
                    let _ = wake.unbounded_send(());
                }
            }
        });
        Ok(())
    }
}

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
    pub topic: String,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: batch::Headers,
    /// Chosen by the partitioner when `None`.
    pub partition: Option<i32>,
    /// Creation time in ms since the epoch; now when `None`.
    pub timestamp: Option<i64>,
}

type DeliverySender = oneshot::Sender<Result<RecordMetadata, ClientError>>;

/// The records of one partition gathered so far, already encoded (`BatchBuilder`), and who
/// waits for each.
struct OpenBatch {
    id: u64,
    builder: BatchBuilder,
    deliveries: Vec<DeliverySender>,
    /// What the records count against `buffer_memory`.
    bytes: usize,
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
    /// Closed batches per partition, sent one at a time and in order by one task per partition,
    /// so sequences and offsets follow the order of `send`.
    queued: RefCell<HashMap<(String, i32), std::collections::VecDeque<OpenBatch>>>,
    sequences: RefCell<HashMap<(String, i32), i32>>,
    producer: Cell<(i64, i16)>,
    pending: Cell<usize>,
    idle: RefCell<Vec<oneshot::Sender<()>>>,
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
        });
        if inner.config.idempotence {
            let connection = inner.metadata_connection().await?;
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
            inner
                .producer
                .set((response.producer_id.0, response.producer_epoch));
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
        self.send_parts(topic, key, value, Vec::new(), partition, None)
            .await
    }

    /// `send` for a record with headers or a timestamp of its own.
    pub async fn send_record(&self, record: ProducerRecord) -> Result<Delivery, ClientError> {
        self.send_parts(
            &record.topic,
            record.key,
            record.value,
            record.headers,
            record.partition,
            record.timestamp,
        )
        .await
    }

    async fn send_parts(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: batch::Headers,
        partition: Option<i32>,
        timestamp: Option<i64>,
    ) -> Result<Delivery, ClientError> {
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
        let (tx, rx) = oneshot::channel();
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
                }
            });
            batch
                .builder
                .push(timestamp, key.as_deref(), value.as_deref(), &headers);
            batch.deliveries.push(tx);
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
                    inner.close_batch(&slot);
                }
            });
        }
        Ok(rx)
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

    async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Rc<Connection>, ClientError> {
        let leader = self
            .cluster
            .borrow()
            .topics
            .get(topic)
            .and_then(|l| l.get(partition as usize).copied())
            .unwrap_or(-1);
        if let Some(c) = self.connections.borrow().get(&leader) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let address = self.cluster.borrow().brokers.get(&leader).cloned();
        let Some(address) = address else {
            return Err(
                ClientError::from_code(5, Some(format!("{topic}-{partition}"))).expect("non-zero"),
            );
        };
        let connection = Connection::connect(&address, &self.config.client_id).await?;
        self.connections
            .borrow_mut()
            .insert(leader, connection.clone());
        Ok(connection)
    }

    /// Takes the open batch of `slot` and sends it in the background.
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
        let start_sender = {
            let mut queued = self.queued.borrow_mut();
            let queue = queued.entry(slot.clone()).or_default();
            queue.push_back(batch);
            queue.len() == 1
        };
        if start_sender {
            let inner = self.clone();
            let slot = slot.clone();
            runtime::spawn(async move { inner.drain(slot).await });
        }
    }

    /// Sends a partition's closed batches in order until its queue is empty. The batch being
    /// sent stays at the head of the queue, so a new one only starts a sender when none runs.
    async fn drain(self: Rc<Self>, slot: (String, i32)) {
        loop {
            let batch = {
                let mut queued = self.queued.borrow_mut();
                let queue = queued.get_mut(&slot).expect("a queue with a sender");
                queue.front_mut().map(|b| OpenBatch {
                    id: b.id,
                    builder: std::mem::replace(&mut b.builder, BatchBuilder::with_capacity(0)),
                    deliveries: std::mem::take(&mut b.deliveries),
                    bytes: b.bytes,
                })
            };
            let Some(batch) = batch else { return };
            self.deliver(&slot, batch).await;
            let mut queued = self.queued.borrow_mut();
            let queue = queued.get_mut(&slot).expect("a queue with a sender");
            queue.pop_front();
            if queue.is_empty() {
                queued.remove(&slot);
                return;
            }
        }
    }

    async fn deliver(&self, slot: &(String, i32), batch: OpenBatch) {
        let slot = slot.clone();
        let count = batch.deliveries.len() as i32;
        let (producer_id, epoch) = self.producer.get();
        let sequence = if producer_id >= 0 {
            *self.sequences.borrow().get(&slot).unwrap_or(&0)
        } else {
            -1
        };
        let result = self
            .produce_with_retries(&slot, &batch.builder, (producer_id, epoch, sequence))
            .await;
        if result.is_ok() && producer_id >= 0 {
            self.sequences
                .borrow_mut()
                .insert(slot.clone(), sequence.wrapping_add(count) & i32::MAX);
        }
        for (i, delivery) in batch.deliveries.into_iter().enumerate() {
            let outcome = match &result {
                Ok(base) => Ok(RecordMetadata {
                    partition: slot.1,
                    offset: if *base < 0 { -1 } else { base + i as i64 },
                }),
                Err(e) => Err(e.duplicate()),
            };
            let _ = delivery.send(outcome);
        }
        self.memory.signal(batch.bytes as u64);
        self.pending.set(self.pending.get() - count as usize);
        if self.pending.get() == 0 {
            for tx in self.idle.borrow_mut().drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// Sends one batch until it is acknowledged, a non-retriable error comes back, or the
    /// delivery timeout passes. Returns the base offset.
    async fn produce_with_retries(
        &self,
        slot: &(String, i32),
        records: &BatchBuilder,
        producer: (i64, i16, i32),
    ) -> Result<i64, ClientError> {
        // Encoded once: a retry sends the same bytes, sequence included, so the broker can
        // recognise a duplicate.
        let encoded = records
            .finish(producer, self.config.compression)
            .map_err(ClientError::Config)?;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            let attempt = self.produce_once(slot, encoded.clone()).await;
            match attempt {
                Ok(base) => return Ok(base),
                Err(e) if e.is_retriable() && started.elapsed() < self.config.delivery_timeout => {
                    if e.needs_metadata_refresh() || matches!(e, ClientError::Io { .. }) {
                        let _ = self.refresh_metadata(&[slot.0.as_str()]).await;
                    }
                    runtime::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn produce_once(&self, slot: &(String, i32), records: Bytes) -> Result<i64, ClientError> {
        let connection = self.leader_connection(&slot.0, slot.1).await?;
        let version = connection.version(ApiKey::Produce, (3, 9))?;
        let mut partition = m::produce_request::PartitionProduceData::default();
        partition.index = slot.1;
        partition.records = Some(records);
        let mut topic = m::produce_request::TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_string(slot.0.clone()));
        topic.partition_data.push(partition);
        let mut request = m::ProduceRequest::default();
        request.acks = self.config.acks;
        request.timeout_ms = 30_000;
        request.topic_data.push(topic);
        if self.config.acks == 0 {
            connection
                .send_no_response(ApiKey::Produce, version, &request)
                .await?;
            return Ok(-1);
        }
        let response: m::ProduceResponse =
            connection.send(ApiKey::Produce, version, &request).await?;
        let answer = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| ClientError::missing_partition(connection.broker(), "Produce"))?;
        match ClientError::from_code(
            answer.error_code,
            answer.error_message.as_ref().map(|s| s.to_string()),
        ) {
            Some(error) => Err(error),
            None => Ok(answer.base_offset),
        }
    }
}

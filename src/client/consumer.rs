//! The consumer, partition assignment by the application (`assign`): positions per partition,
//! `seek` (to an offset, the beginning, the end or a timestamp), `pause`/`resume`, and `poll`,
//! which decodes the batches (any codec). A fetch that starts inside a batch gets the whole
//! batch; records before the position are skipped, as Kafka's clients do.
//!
//! Fetches are pipelined: each leader broker with assigned partitions has one fetch in flight,
//! and as soon as an answer is taken in the next fetch goes out, so the broker reads ahead
//! while the application works on the records `poll` returned. Data for a partition that was
//! seeked, paused or unassigned while its fetch travelled is dropped on arrival.
//!
//! Invariant: a partition's position is the offset after the last record `poll` returned
//! (records are decoded only when they are about to be handed out), so committing positions
//! commits exactly what the application has seen.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::messages::{self as m, ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::connection::Connection;
use super::ClientError;
use crate::protocol::{batch, records};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub bootstrap: String,
    pub client_id: String,
    /// Where a partition without a position starts: `Offset::Beginning` or `Offset::End`.
    pub auto_offset_reset: Offset,
    pub max_wait: Duration,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// 0: read uncommitted, 1: read committed.
    pub isolation_level: i8,
}

impl ConsumerConfig {
    pub fn new(bootstrap: &str) -> Self {
        ConsumerConfig {
            bootstrap: bootstrap.to_owned(),
            client_id: "shardlog-consumer".into(),
            auto_offset_reset: Offset::End,
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 << 20,
            partition_max_bytes: 1 << 20,
            isolation_level: 0,
        }
    }
}

/// A position to seek to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Beginning,
    End,
    At(i64),
    /// The first record with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

type Slot = (String, i32);

pub struct Consumer {
    config: ConsumerConfig,
    bootstrap: Rc<Connection>,
    brokers: HashMap<i32, String>,
    leaders: HashMap<Slot, i32>,
    connections: HashMap<i32, Rc<Connection>>,
    /// Assigned partitions and their next offset (`None`: to be looked up).
    positions: BTreeMap<Slot, Option<Offset>>,
    paused: BTreeSet<Slot>,
    buffered: VecDeque<ConsumerRecord>,
    /// At most one fetch per leader broker in flight, by broker id: each answer is bounded
    /// by `max_bytes`, so this bounds what is buffered ahead of the application.
    in_flight: BTreeMap<i32, InFlightFetch>,
    /// An error met while records were taken in: reported once those are handed out, so a
    /// position never runs ahead of what `poll` returned.
    failure: Option<ClientError>,
}

/// A fetch sent to a leader and not yet taken in: the offsets it asked for (to tell stale
/// data), and its answer, which arrives whether or not anyone is polling.
struct InFlightFetch {
    requested: BTreeMap<Slot, i64>,
    response: Pin<Box<dyn Future<Output = Result<m::FetchResponse, ClientError>>>>,
}

impl Consumer {
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let bootstrap = Connection::connect(&config.bootstrap, &config.client_id).await?;
        Ok(Consumer {
            config,
            bootstrap,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            connections: HashMap::new(),
            positions: BTreeMap::new(),
            paused: BTreeSet::new(),
            buffered: VecDeque::new(),
            in_flight: BTreeMap::new(),
            failure: None,
        })
    }

    /// Replaces the assignment. New partitions start where `auto_offset_reset` says unless
    /// `seek` says otherwise.
    pub fn assign(&mut self, partitions: &[(&str, i32)]) {
        let wanted: BTreeSet<Slot> = partitions
            .iter()
            .map(|(t, p)| ((*t).to_owned(), *p))
            .collect();
        self.positions.retain(|slot, _| wanted.contains(slot));
        // As in Kafka's clients, a partition given up forgets that it was paused.
        self.paused.retain(|slot| wanted.contains(slot));
        for slot in wanted {
            self.positions.entry(slot).or_insert(None);
        }
        self.buffered
            .retain(|r| self.positions.contains_key(&(r.topic.clone(), r.partition)));
    }

    pub fn seek(&mut self, topic: &str, partition: i32, to: Offset) {
        let slot = (topic.to_owned(), partition);
        self.buffered
            .retain(|r| !(r.topic == topic && r.partition == partition));
        self.positions.insert(slot, Some(to));
    }

    /// The next offset to be returned, once known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        match self.positions.get(&(topic.to_owned(), partition)) {
            Some(Some(Offset::At(o))) => Some(*o),
            _ => None,
        }
    }

    pub fn pause(&mut self, topic: &str, partition: i32) {
        self.paused.insert((topic.to_owned(), partition));
        self.buffered
            .retain(|r| !(r.topic == topic && r.partition == partition));
    }

    pub fn resume(&mut self, topic: &str, partition: i32) {
        self.paused.remove(&(topic.to_owned(), partition));
    }

    /// Returns the records fetched next (possibly none once `max_wait` passes).
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.buffered.is_empty() {
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            self.fetch().await?;
        }
        Ok(self.buffered.drain(..).collect())
    }

    /// Partition counts of `topics` (those that exist).
    pub async fn partition_counts(
        &mut self,
        topics: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, i32>, ClientError> {
        self.metadata_for(topics).await?;
        let mut counts = BTreeMap::new();
        for (topic, partition) in self.leaders.keys() {
            if topics.contains(topic) {
                let count = counts.entry(topic.clone()).or_insert(0);
                *count = (*count).max(partition + 1);
            }
        }
        Ok(counts)
    }

    async fn refresh_metadata(&mut self) -> Result<(), ClientError> {
        let topics: BTreeSet<String> = self.positions.keys().map(|(t, _)| t.clone()).collect();
        self.metadata_for(&topics).await
    }

    async fn metadata_for(&mut self, topics: &BTreeSet<String>) -> Result<(), ClientError> {
        let version = self.bootstrap.version(ApiKey::Metadata, (4, 12))?;
        let mut request = m::MetadataRequest::default();
        request.topics = Some(
            topics
                .iter()
                .map(|t| {
                    let mut topic = m::metadata_request::MetadataRequestTopic::default();
                    topic.name = Some(TopicName(StrBytes::from_string(t.clone())));
                    topic
                })
                .collect(),
        );
        let response: m::MetadataResponse = self
            .bootstrap
            .send(ApiKey::Metadata, version, &request)
            .await?;
        for b in &response.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host, b.port));
        }
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            for p in &topic.partitions {
                self.leaders
                    .insert((name.0.to_string(), p.partition_index), p.leader_id.0);
            }
        }
        Ok(())
    }

    async fn connection(&mut self, leader: i32) -> Result<Rc<Connection>, ClientError> {
        if let Some(c) = self.connections.get(&leader).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let address = self.brokers.get(&leader).cloned().ok_or_else(|| {
            ClientError::from_code(5, Some(format!("no address for broker {leader}")))
                .expect("non-zero")
        })?;
        let connection = Connection::connect(&address, &self.config.client_id).await?;
        self.connections.insert(leader, connection.clone());
        Ok(connection)
    }

    /// Turns `Beginning`/`End`/`Timestamp` (and unset) positions into offsets (ListOffsets);
    /// a timestamp past the last record resolves to the end, in a second round.
    async fn resolve_positions(&mut self) -> Result<(), ClientError> {
        for _ in 0..2 {
            self.resolve_round().await?;
        }
        Ok(())
    }

    async fn resolve_round(&mut self) -> Result<(), ClientError> {
        let unresolved: Vec<(Slot, Offset)> = self
            .positions
            .iter()
            .filter_map(|(slot, at)| match at {
                Some(Offset::At(_)) => None,
                Some(other) => Some((slot.clone(), *other)),
                None => Some((slot.clone(), self.config.auto_offset_reset)),
            })
            .collect();
        for (slot, target) in unresolved {
            let timestamp = match target {
                Offset::Beginning => -2,
                Offset::End => -1,
                Offset::Timestamp(t) => t,
                Offset::At(_) => continue,
            };
            let leader = *self.leaders.get(&slot).unwrap_or(&-1);
            let connection = self.connection(leader).await?;
            let version = connection.version(ApiKey::ListOffsets, (1, 7))?;
            let mut partition = m::list_offsets_request::ListOffsetsPartition::default();
            partition.partition_index = slot.1;
            partition.timestamp = timestamp;
            let mut topic = m::list_offsets_request::ListOffsetsTopic::default();
            topic.name = TopicName(StrBytes::from_string(slot.0.clone()));
            topic.partitions.push(partition);
            let mut request = m::ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            request.isolation_level = self.config.isolation_level;
            request.topics.push(topic);
            let response: m::ListOffsetsResponse = connection
                .send(ApiKey::ListOffsets, version, &request)
                .await?;
            let answer = response
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| {
                    ClientError::missing_partition(connection.broker(), "ListOffsets")
                })?;
            if let Some(error) = ClientError::from_code(answer.error_code, None) {
                return Err(error);
            }
            // No record at or after the timestamp: the end of the log (looked up next).
            let position = if answer.offset < 0 {
                Offset::End
            } else {
                Offset::At(answer.offset)
            };
            self.positions.insert(slot, Some(position));
        }
        Ok(())
    }

    /// Sends a fetch to every leader that has partitions to read and no fetch in flight,
    /// waits for the first answer (unless one is ready already), takes in every answer that
    /// has arrived, and sends the next fetch to those leaders at once: their next records
    /// travel while the application works on these.
    async fn fetch(&mut self) -> Result<(), ClientError> {
        if self
            .positions
            .keys()
            .any(|slot| !self.leaders.contains_key(slot))
        {
            self.refresh_metadata().await?;
        }
        self.resolve_positions().await?;
        self.send_fetches().await?;
        if self.in_flight.is_empty() {
            crate::runtime::sleep(self.config.max_wait).await;
            return Ok(());
        }
        // Nothing below this await point waits again until the answers are taken in, so a
        // caller may drop this future at any await (GroupConsumer races it against a
        // rebalance): unanswered fetches stay in flight, taken answers are in `buffered`.
        let leaders: Vec<i32> = self.in_flight.keys().copied().collect();
        let (first, index, _) = futures::future::select_all(
            self.in_flight
                .values_mut()
                .map(|in_flight| in_flight.response.as_mut()),
        )
        .await;
        let mut answers = vec![(
            self.in_flight
                .remove(&leaders[index])
                .expect("the answering leader is in flight")
                .requested,
            first,
        )];
        for leader in leaders {
            let Some(in_flight) = self.in_flight.get_mut(&leader) else {
                continue;
            };
            if let Some(answer) = in_flight.response.as_mut().now_or_never() {
                let requested = self
                    .in_flight
                    .remove(&leader)
                    .expect("just looked up")
                    .requested;
                answers.push((requested, answer));
            }
        }
        let mut failure = None;
        for (requested, answer) in answers {
            let taken = match answer {
                Ok(response) => self.take_in(&requested, response),
                Err(e) => Err(e),
            };
            if let Err(e) = taken {
                failure.get_or_insert(e);
            }
        }
        if let Some(e) = failure {
            if self.buffered.is_empty() {
                return Err(e);
            }
            // Records taken in from other answers go out first; the error with the next poll.
            self.failure = Some(e);
            return Ok(());
        }
        // The pipelining: fetch the next records now, before handing these out, on the
        // connections already open (no await: see above). Leaders without one get theirs with
        // the next poll.
        self.send_fetches_on_open_connections();
        Ok(())
    }

    /// The partitions to fetch from each leader, at their positions: assigned, not paused,
    /// with a known offset and not already in a fetch in flight.
    fn fetchable(&self) -> BTreeMap<i32, BTreeMap<Slot, i64>> {
        let mut by_leader: BTreeMap<i32, BTreeMap<Slot, i64>> = BTreeMap::new();
        for (slot, at) in &self.positions {
            if self.paused.contains(slot)
                || self
                    .in_flight
                    .values()
                    .any(|f| f.requested.contains_key(slot))
            {
                continue;
            }
            if let Some(Offset::At(offset)) = at {
                let leader = *self.leaders.get(slot).unwrap_or(&-1);
                by_leader
                    .entry(leader)
                    .or_default()
                    .insert(slot.clone(), *offset);
            }
        }
        by_leader.retain(|leader, _| !self.in_flight.contains_key(leader));
        by_leader
    }

    async fn send_fetches(&mut self) -> Result<(), ClientError> {
        for leader in self.fetchable().into_keys() {
            self.connection(leader).await?;
        }
        self.send_fetches_on_open_connections();
        Ok(())
    }

    fn send_fetches_on_open_connections(&mut self) {
        for (leader, partitions) in self.fetchable() {
            let Some(connection) = self.connections.get(&leader).filter(|c| !c.is_closed()) else {
                continue;
            };
            let connection = connection.clone();
            let version = match connection.version(ApiKey::Fetch, (4, 12)) {
                Ok(version) => version,
                Err(e) => {
                    self.failure.get_or_insert(e);
                    continue;
                }
            };
            let request = self.fetch_request(&partitions);
            let response = crate::runtime::spawn_task(async move {
                connection
                    .send::<_, m::FetchResponse>(ApiKey::Fetch, version, &request)
                    .await
            });
            self.in_flight.insert(
                leader,
                InFlightFetch {
                    requested: partitions,
                    response: Box::pin(response),
                },
            );
        }
    }

    fn fetch_request(&self, partitions: &BTreeMap<Slot, i64>) -> m::FetchRequest {
        let mut request = m::FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = self.config.max_wait.as_millis() as i32;
        request.min_bytes = self.config.min_bytes;
        request.max_bytes = self.config.max_bytes;
        request.isolation_level = self.config.isolation_level;
        let mut topics: BTreeMap<&str, Vec<m::fetch_request::FetchPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in partitions {
            let mut p = m::fetch_request::FetchPartition::default();
            p.partition = *partition;
            p.fetch_offset = *offset;
            p.partition_max_bytes = self.config.partition_max_bytes;
            topics.entry(topic.as_str()).or_default().push(p);
        }
        request.topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = m::fetch_request::FetchTopic::default();
                t.topic = TopicName(StrBytes::from_string(name.to_owned()));
                t.partitions = partitions;
                t
            })
            .collect();
        request
    }

    /// Takes in one fetch answer. A partition's data counts only if the partition is still
    /// assigned, not paused, and at the offset the fetch asked for: a seek, pause or new
    /// assignment while the fetch travelled makes its data stale.
    fn take_in(
        &mut self,
        requested: &BTreeMap<Slot, i64>,
        response: m::FetchResponse,
    ) -> Result<(), ClientError> {
        let mut stale_metadata = false;
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for p in topic.partitions {
                let slot = (name.clone(), p.partition_index);
                let Some(asked) = requested.get(&slot).copied() else {
                    continue;
                };
                if self.paused.contains(&slot)
                    || self.positions.get(&slot) != Some(&Some(Offset::At(asked)))
                {
                    continue;
                }
                match p.error_code {
                    0 => {}
                    1 => {
                        // OFFSET_OUT_OF_RANGE: start over where the reset policy says.
                        self.positions
                            .insert(slot, Some(self.config.auto_offset_reset));
                        continue;
                    }
                    code => {
                        let error = ClientError::from_code(code, None).expect("non-zero");
                        if error.needs_metadata_refresh() {
                            stale_metadata = true;
                            continue;
                        }
                        return Err(error);
                    }
                }
                let next = decode_records(
                    &name,
                    p.partition_index,
                    asked,
                    p.records,
                    &mut self.buffered,
                )?;
                self.positions.insert(slot, Some(Offset::At(next)));
            }
        }
        if stale_metadata {
            self.leaders.clear();
        }
        Ok(())
    }
}

/// Decodes the whole batches in `records` into `out`, skipping records before `position`;
/// returns the next position.
fn decode_records(
    topic: &str,
    partition: i32,
    mut position: i64,
    records: Option<Bytes>,
    out: &mut VecDeque<ConsumerRecord>,
) -> Result<i64, ClientError> {
    let Some(mut data) = records else {
        return Ok(position);
    };
    let corrupt = |detail: String| ClientError::Protocol {
        broker: String::new(),
        detail: format!("{topic}-{partition}: {detail}"),
    };
    while !data.is_empty() {
        let header = match batch::parse_header(&data) {
            Ok(header) => header,
            // A partial batch at the end of a response: it comes whole with the next fetch.
            Err(batch::BatchError::Truncated(_)) => break,
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let one = data.split_to(header.size);
        if header.last_offset() < position {
            continue;
        }
        // The CRC once; then the records in place: views of the response when the batch is
        // uncompressed, of its decompressed section otherwise.
        records::validate_stored(&one).map_err(|e| corrupt(e.to_string()))?;
        if !header.is_control() {
            let section = records::section(&one, &header).map_err(|e| corrupt(e.to_string()))?;
            let mut failure = None;
            batch::walk_records(&section, &header, |record| {
                if record.offset < position || failure.is_some() {
                    return;
                }
                let headers = match record.headers() {
                    Ok(headers) => headers,
                    Err(e) => {
                        failure = Some(e);
                        return;
                    }
                };
                out.push_back(ConsumerRecord {
                    topic: topic.to_owned(),
                    partition,
                    offset: record.offset,
                    timestamp: if header.is_log_append_time() {
                        header.max_timestamp
                    } else {
                        record.timestamp
                    },
                    key: record.key.map(|k| section.slice_ref(k)),
                    value: record.value.map(|v| section.slice_ref(v)),
                    headers: headers
                        .into_iter()
                        .map(|(name, value)| {
                            (
                                String::from_utf8_lossy(name).into_owned(),
                                value.map(|v| section.slice_ref(v)),
                            )
                        })
                        .collect(),
                });
            })
            .map_err(|e| corrupt(e.to_string()))?;
            if let Some(e) = failure {
                return Err(corrupt(e.to_string()));
            }
        }
        position = header.last_offset() + 1;
    }
    Ok(position)
}

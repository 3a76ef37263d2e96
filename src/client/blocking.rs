//! The client for programs that are not async. `run` runs any client future to completion on
//! an executor thread of its own; `BlockingProducer` and `BlockingConsumer` keep such a thread
//! for their lifetime and take calls over channels, so a plain program sends, polls and
//! commits with ordinary function calls. The client itself stays async, on the same runtime
//! as the broker.

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};

use super::consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset};
use super::group::{GroupConfig, GroupConsumer};
use super::producer::{Delivery, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use super::ClientError;
use crate::runtime;

/// Registered-buffer memory of the client's executor; a client does little direct I/O.
const CLIENT_IO_MEMORY_BYTES: usize = 512 << 10;
/// Calls queued to a facade's executor before the caller waits.
const CALLS_QUEUED_MAX: usize = 256;

/// Runs `body` (which builds the future on the executor thread) and returns its output.
pub fn run<F, Fut, T>(body: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    runtime::run_local(CLIENT_IO_MEMORY_BYTES, body)
}

fn stopped() -> ClientError {
    ClientError::Config("the client's executor thread has stopped".into())
}

fn wait<T>(reply: oneshot::Receiver<Result<T, ClientError>>) -> Result<T, ClientError> {
    futures::executor::block_on(reply).unwrap_or_else(|_| Err(stopped()))
}

/// Starts an executor thread that runs `serve` over the calls sent on the returned channel,
/// once `connect` has succeeded (its error is returned here otherwise).
fn start<C, S, Conn, ConnFut, Serve, ServeFut>(
    connect: Conn,
    serve: Serve,
) -> Result<(mpsc::Sender<C>, runtime::LocalThread<()>), ClientError>
where
    C: Send + 'static,
    S: 'static,
    Conn: FnOnce() -> ConnFut + Send + 'static,
    ConnFut: std::future::Future<Output = Result<S, ClientError>> + 'static,
    Serve: FnOnce(S, mpsc::Receiver<C>) -> ServeFut + Send + 'static,
    ServeFut: std::future::Future<Output = ()> + 'static,
{
    let (calls, receiver) = mpsc::channel(CALLS_QUEUED_MAX);
    let (ready, connected) = oneshot::channel();
    let thread = runtime::start_local(CLIENT_IO_MEMORY_BYTES, move || async move {
        match connect().await {
            Ok(client) => {
                let _ = ready.send(Ok(()));
                serve(client, receiver).await;
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    })
    .map_err(|e| ClientError::Config(e.to_string()))?;
    match wait(connected) {
        Ok(()) => Ok((calls, thread)),
        Err(e) => {
            let _ = thread.join();
            Err(e)
        }
    }
}

/// A record's acknowledgement, to wait for when the program wants it.
pub struct DeliveryHandle(Delivery);

impl DeliveryHandle {
    /// Waits until the broker has acknowledged the record (as `acks` says) or it failed.
    pub fn wait(self) -> Result<RecordMetadata, ClientError> {
        futures::executor::block_on(self.0).unwrap_or_else(|_| Err(stopped()))
    }
}

enum ProducerCall {
    Send(
        ProducerRecord,
        oneshot::Sender<Result<Delivery, ClientError>>,
    ),
    Flush(oneshot::Sender<Result<(), ClientError>>),
}

/// The producer with plain calls. Dropping it sends what is queued and waits for the answers.
pub struct BlockingProducer {
    calls: mpsc::Sender<ProducerCall>,
    thread: Option<runtime::LocalThread<()>>,
}

impl BlockingProducer {
    pub fn connect(config: ProducerConfig) -> Result<BlockingProducer, ClientError> {
        let (calls, thread) = start(
            move || Producer::connect(config),
            |producer: Producer, mut calls: mpsc::Receiver<ProducerCall>| async move {
                while let Some(call) = calls.next().await {
                    match call {
                        ProducerCall::Send(record, reply) => {
                            let _ = reply.send(producer.send_record(record).await);
                        }
                        ProducerCall::Flush(reply) => {
                            producer.flush().await;
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
                producer.flush().await;
            },
        )?;
        Ok(BlockingProducer {
            calls,
            thread: Some(thread),
        })
    }

    fn call<T>(
        &mut self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> ProducerCall,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        futures::executor::block_on(self.calls.send(make(reply))).map_err(|_| stopped())?;
        wait(answer)
    }

    /// Queues a record; blocks only while the producer's memory budget is used up.
    pub fn send(&mut self, record: ProducerRecord) -> Result<DeliveryHandle, ClientError> {
        self.call(|reply| ProducerCall::Send(record, reply))
            .map(DeliveryHandle)
    }

    /// Sends a record and waits for its acknowledgement.
    pub fn send_and_wait(&mut self, record: ProducerRecord) -> Result<RecordMetadata, ClientError> {
        self.send(record)?.wait()
    }

    /// Sends every open batch now and waits until every record sent so far is answered.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.call(ProducerCall::Flush)
    }
}

impl Drop for BlockingProducer {
    fn drop(&mut self) {
        self.calls.close_channel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum ConsumerCall {
    Assign(Vec<(String, i32)>),
    Seek(String, i32, Offset),
    Poll(oneshot::Sender<Result<Vec<ConsumerRecord>, ClientError>>),
    Commit(oneshot::Sender<Result<(), ClientError>>),
}

enum AnyConsumer {
    Partitions(Box<Consumer>),
    Group(Box<GroupConsumer>),
}

/// The consumer with plain calls: partitions chosen by the program (`connect`, `assign`,
/// `seek`) or by a group (`subscribe`, `commit`). Dropping a group member leaves the group.
pub struct BlockingConsumer {
    calls: mpsc::Sender<ConsumerCall>,
    thread: Option<runtime::LocalThread<()>>,
    group: bool,
}

async fn serve_consumer(mut consumer: AnyConsumer, mut calls: mpsc::Receiver<ConsumerCall>) {
    while let Some(call) = calls.next().await {
        match (call, &mut consumer) {
            (ConsumerCall::Assign(slots), AnyConsumer::Partitions(c)) => {
                let slots: Vec<(&str, i32)> = slots.iter().map(|(t, p)| (t.as_str(), *p)).collect();
                c.assign(&slots);
            }
            (ConsumerCall::Seek(topic, partition, to), AnyConsumer::Partitions(c)) => {
                c.seek(&topic, partition, to)
            }
            (ConsumerCall::Seek(topic, partition, to), AnyConsumer::Group(g)) => {
                g.seek(&topic, partition, to)
            }
            (ConsumerCall::Assign(_), AnyConsumer::Group(_)) => {}
            (ConsumerCall::Poll(reply), AnyConsumer::Partitions(c)) => {
                let _ = reply.send(c.poll().await);
            }
            (ConsumerCall::Poll(reply), AnyConsumer::Group(g)) => {
                let _ = reply.send(g.poll().await);
            }
            (ConsumerCall::Commit(reply), AnyConsumer::Group(g)) => {
                let _ = reply.send(g.commit().await);
            }
            (ConsumerCall::Commit(reply), AnyConsumer::Partitions(_)) => {
                let _ = reply.send(Err(ClientError::Config(
                    "commit needs a group (BlockingConsumer::subscribe)".into(),
                )));
            }
        }
    }
    if let AnyConsumer::Group(group) = consumer {
        if let Err(e) = group.close().await {
            tracing::warn!("leaving the group failed: {e}");
        }
    }
}

impl BlockingConsumer {
    /// A consumer of partitions the program assigns.
    pub fn connect(config: ConsumerConfig) -> Result<BlockingConsumer, ClientError> {
        let (calls, thread) = start(
            move || async move {
                Consumer::connect(config)
                    .await
                    .map(|c| AnyConsumer::Partitions(Box::new(c)))
            },
            serve_consumer,
        )?;
        Ok(BlockingConsumer {
            calls,
            thread: Some(thread),
            group: false,
        })
    }

    /// A member of `group`, consuming `topics`.
    pub fn subscribe(
        config: ConsumerConfig,
        group: GroupConfig,
        topics: &[&str],
    ) -> Result<BlockingConsumer, ClientError> {
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let (calls, thread) = start(
            move || async move {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                GroupConsumer::connect(config, group, &topics)
                    .await
                    .map(|g| AnyConsumer::Group(Box::new(g)))
            },
            serve_consumer,
        )?;
        Ok(BlockingConsumer {
            calls,
            thread: Some(thread),
            group: true,
        })
    }

    fn not_for_members(&self, what: &str) -> Result<(), ClientError> {
        if self.group {
            return Err(ClientError::Config(format!(
                "{what}: a group member's partitions are the group's to assign"
            )));
        }
        Ok(())
    }

    fn tell(&mut self, call: ConsumerCall) -> Result<(), ClientError> {
        futures::executor::block_on(self.calls.send(call)).map_err(|_| stopped())
    }

    fn call<T>(
        &mut self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> ConsumerCall,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.tell(make(reply))?;
        wait(answer)
    }

    /// Replaces the assignment (not for group members, whose group assigns).
    pub fn assign(&mut self, partitions: &[(&str, i32)]) -> Result<(), ClientError> {
        self.not_for_members("assign")?;
        let slots = partitions
            .iter()
            .map(|(t, p)| ((*t).to_owned(), *p))
            .collect();
        self.tell(ConsumerCall::Assign(slots))
    }

    /// Moves the position of an assigned partition (of the member's own, for a group member).
    pub fn seek(&mut self, topic: &str, partition: i32, to: Offset) -> Result<(), ClientError> {
        self.tell(ConsumerCall::Seek(topic.to_owned(), partition, to))
    }

    /// The next records (possibly none once the consumer's `max_wait` passes).
    pub fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.call(ConsumerCall::Poll)
    }

    /// Commits the positions of what `poll` returned (group members only).
    pub fn commit(&mut self) -> Result<(), ClientError> {
        self.call(ConsumerCall::Commit)
    }
}

impl Drop for BlockingConsumer {
    fn drop(&mut self) {
        self.calls.close_channel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

//! Moving the cluster's requests between nodes: a sender per peer voter that batches queued
//! Raft messages into one frame per write over a connection it keeps open (dropping what it
//! cannot deliver: Raft retries on its own), and one-shot controller calls. The only code in
//! `cluster` that touches sockets.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures::channel::mpsc;
use futures::StreamExt;
use raft::eraftpb::Message;

use super::wire::{self, ControllerAnswer, ControllerCall, QuorumHeader};
use crate::runtime;
use crate::runtime::net::{Stream, StreamReader};

/// Raft messages queued for one peer at most; older ones are dropped past it (a paused peer
/// must not make the queue grow without bound; Raft sends again what matters).
const PEER_QUEUE_MAX: usize = 4096;
/// A write that takes longer than this drops the connection (a paused or cut-off peer).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// The largest answer a peer may send.
const ANSWER_MAX_BYTES: usize = 64 << 20;

/// Resolves `host:port`, IPv4 addresses first (a wildcard listener is IPv4).
pub fn resolve(address: &str) -> std::io::Result<Vec<SocketAddr>> {
    let mut all: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    all.sort_by_key(|a| !a.is_ipv4());
    Ok(all)
}

pub async fn connect(address: &str) -> std::io::Result<Stream> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{address} resolves to nothing"),
    );
    for candidate in resolve(address)? {
        match Stream::connect(candidate).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads one size-prefixed frame (the size not included).
pub async fn read_frame(reader: &mut StreamReader) -> std::io::Result<BytesMut> {
    let mut size = [0u8; 4];
    read_exact(reader, &mut size).await?;
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > ANSWER_MAX_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {size} bytes"),
        ));
    }
    let mut frame = BytesMut::zeroed(size as usize);
    read_exact(reader, &mut frame).await?;
    Ok(frame)
}

async fn read_exact(reader: &mut StreamReader, mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = reader.read(buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

/// One call on a controller: connect, send, read the answer.
pub async fn call(
    address: &str,
    call: &ControllerCall,
    timeout: Duration,
) -> Result<ControllerAnswer, String> {
    let exchange = async {
        let stream = connect(address)
            .await
            .map_err(|e| format!("cannot reach {address}: {e}"))?;
        let (mut reader, mut writer) = stream.split();
        let frame = wire::request_frame(wire::CONTROLLER_API_KEY, 1, &wire::encode_json(call));
        writer
            .write_vectored_all(&[&frame])
            .await
            .map_err(|e| format!("cannot send to {address}: {e}"))?;
        let answer = read_frame(&mut reader)
            .await
            .map_err(|e| format!("no answer from {address}: {e}"))?;
        if answer.len() < 4 {
            return Err(format!("short answer from {address}"));
        }
        wire::decode_json(&answer[4..])
    };
    runtime::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|| Err(format!("{address} did not answer within {timeout:?}")))
}

/// What a peer sender reports back to its node.
pub trait PeerEvents {
    /// The peer could not be reached: Raft should stop pipelining to it.
    fn unreachable(&self, peer: i32);
    /// The peer refused this node's messages (another cluster id or voter list).
    fn refused(&self, peer: i32, why: String);
}

/// The queue of Raft messages for one peer voter and the task that sends them.
pub struct Peer {
    pub id: i32,
    pub address: String,
    queue: RefCell<Vec<Message>>,
    wake: mpsc::UnboundedSender<()>,
    woken: RefCell<Option<mpsc::UnboundedReceiver<()>>>,
    /// Why the last attempt failed, until one succeeds.
    pub last_error: RefCell<Option<String>>,
    correlation: Cell<i32>,
}

impl Peer {
    pub fn new(id: i32, address: String) -> Rc<Peer> {
        let (wake, woken) = mpsc::unbounded();
        Rc::new(Peer {
            id,
            address,
            queue: RefCell::new(Vec::new()),
            wake,
            woken: RefCell::new(Some(woken)),
            last_error: RefCell::new(None),
            correlation: Cell::new(0),
        })
    }

    pub fn push(&self, message: Message) {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= PEER_QUEUE_MAX {
            queue.remove(0);
        }
        queue.push(message);
        let _ = self.wake.unbounded_send(());
    }

    fn fail(&self, events: &dyn PeerEvents, error: String) {
        if self.last_error.borrow().is_none() {
            tracing::debug!(peer = self.id, address = %self.address, %error, "voter unreachable");
        }
        *self.last_error.borrow_mut() = Some(error);
        self.queue.borrow_mut().clear();
        events.unreachable(self.id);
    }

    /// Sends queued messages until `stop` fires; each write carries everything queued.
    pub async fn run(self: Rc<Self>, header: QuorumHeader, events: Rc<dyn PeerEvents>) {
        let Some(mut woken) = self.woken.borrow_mut().take() else {
            return;
        };
        let mut connection: Option<crate::runtime::net::StreamWriter> = None;
        while woken.next().await.is_some() {
            while woken.try_recv().is_ok() {}
            if self.queue.borrow().is_empty() {
                continue;
            }
            if connection.is_none() {
                match connect(&self.address).await {
                    Ok(stream) => {
                        let (reader, writer) = stream.split();
                        connection = Some(writer);
                        runtime::spawn(read_answers(self.clone(), reader, events.clone()));
                    }
                    Err(e) => {
                        self.fail(&*events, e.to_string());
                        runtime::sleep(RECONNECT_BACKOFF).await;
                        continue;
                    }
                }
            }
            let batch = std::mem::take(&mut *self.queue.borrow_mut());
            let correlation = self.correlation.get().wrapping_add(1);
            self.correlation.set(correlation);
            let frame = wire::request_frame(
                wire::QUORUM_API_KEY,
                correlation,
                &wire::encode_messages(&header, &batch),
            );
            let writer = connection.as_mut().expect("connected above");
            match runtime::timeout(WRITE_TIMEOUT, writer.write_vectored_all(&[&frame])).await {
                Some(Ok(())) => {
                    *self.last_error.borrow_mut() = None;
                }
                Some(Err(e)) => {
                    connection = None;
                    self.fail(&*events, e.to_string());
                }
                None => {
                    connection = None;
                    self.fail(&*events, "write timed out".into());
                }
            }
        }
    }
}

async fn read_answers(peer: Rc<Peer>, mut reader: StreamReader, events: Rc<dyn PeerEvents>) {
    while let Ok(frame) = read_frame(&mut reader).await {
        if frame.len() < 4 {
            return;
        }
        if let Ok((code, why)) = wire::decode_quorum_answer(&frame[4..]) {
            if code != wire::ANSWER_OK {
                events.refused(peer.id, why);
            }
        }
    }
}

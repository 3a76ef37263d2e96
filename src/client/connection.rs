//! One connection to one broker: requests are pipelined (each gets a correlation id and its
//! own reply channel), a reader task matches responses to them, and the API versions are
//! negotiated once at connect (ApiVersions) so each request goes out in the highest version
//! both sides speak.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::ClientError;
use crate::runtime::net::{Stream, StreamWriter};
use crate::runtime::{self, LocalLock};

/// How long connecting (TCP, then ApiVersions) may take before the broker counts as
/// unreachable: an address that drops packets must not hang the client.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest response frame accepted (Kafka's default `fetch.max.bytes` is 50 MiB).
pub const RESPONSE_MAX_BYTES: usize = 256 << 20;

/// Bytes asked of the socket per read: at least this much, and up to this much of a frame
/// known to be coming.
const READ_CHUNK_BYTES_MIN: usize = 64 << 10;
const READ_CHUNK_BYTES_MAX: usize = 4 << 20;

type Waiters = RefCell<HashMap<i32, (ApiKey, i16, oneshot::Sender<Result<Bytes, ClientError>>)>>;

pub struct Connection {
    broker: String,
    client_id: StrBytes,
    writer: RefCell<Option<StreamWriter>>,
    write_lock: LocalLock,
    next_correlation: Cell<i32>,
    waiters: Rc<Waiters>,
    /// Versions the broker serves: key → (min, max).
    versions: RefCell<HashMap<i16, (i16, i16)>>,
    /// Set when the reader stops: the connection is dead and a new one is needed.
    closed: Rc<Cell<bool>>,
}

impl Connection {
    /// Connects to `address` (`host:port`) and negotiates API versions, within
    /// `CONNECT_TIMEOUT`.
    pub async fn connect(address: &str, client_id: &str) -> Result<Rc<Connection>, ClientError> {
        runtime::timeout(CONNECT_TIMEOUT, Self::connect_now(address, client_id))
            .await
            .unwrap_or(Err(ClientError::Timeout(CONNECT_TIMEOUT)))
    }

    async fn connect_now(address: &str, client_id: &str) -> Result<Rc<Connection>, ClientError> {
        let io = |source| ClientError::Io {
            broker: address.to_owned(),
            source,
        };
        let addr: SocketAddr = address
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| ClientError::Config(format!("{address} resolves to nothing")))?;
        let stream = Stream::connect(addr).await.map_err(io)?;
        let (reader, writer) = stream.split();
        let connection = Rc::new(Connection {
            broker: address.to_owned(),
            client_id: StrBytes::from_string(client_id.to_owned()),
            writer: RefCell::new(Some(writer)),
            write_lock: LocalLock::new(1),
            next_correlation: Cell::new(0),
            waiters: Rc::new(RefCell::new(HashMap::new())),
            versions: RefCell::new(HashMap::new()),
            closed: Rc::new(Cell::new(false)),
        });
        runtime::spawn(read_responses(
            reader,
            connection.waiters.clone(),
            address.to_owned(),
            connection.closed.clone(),
        ));
        // ApiVersions v3 has tagged fields both ways; a broker that does not know it answers
        // in v0 with UNSUPPORTED_VERSION and its list, which is all we need.
        let mut request = m::ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("shardlog");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let response: m::ApiVersionsResponse =
            connection.send(ApiKey::ApiVersions, 3, &request).await?;
        if response.error_code != 0 && response.api_keys.is_empty() {
            return Err(ClientError::from_code(response.error_code, None).expect("non-zero"));
        }
        *connection.versions.borrow_mut() = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(connection)
    }

    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// The broker closed the connection (or it broke): requests on it fail.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// The highest version of `key` both we (`ours`: the range this client implements) and the
    /// broker speak.
    pub fn version(&self, key: ApiKey, ours: (i16, i16)) -> Result<i16, ClientError> {
        let theirs = self.versions.borrow().get(&(key as i16)).copied();
        match theirs {
            Some((min, max)) if min <= ours.1 && ours.0 <= max => Ok(max.min(ours.1)),
            _ => Err(ClientError::Config(format!(
                "broker {} does not serve {key:?} in versions {}..={}",
                self.broker, ours.0, ours.1
            ))),
        }
    }

    /// Sends a request in version `version` and waits for its response.
    pub async fn send<Req: Encodable, Resp: Decodable>(
        &self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        self.start(key, version, request).await?.response().await
    }

    /// Writes a request and returns once it is on the wire, with the response to wait for
    /// later: requests started one after another reach the broker in that order, which is
    /// what lets a producer keep several batches of one partition in flight.
    pub async fn start<Req: Encodable>(
        &self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<PendingResponse, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.write_request(key, version, request, Some(tx)).await?;
        Ok(PendingResponse {
            reply: rx,
            key,
            version,
            broker: self.broker.clone(),
        })
    }

    /// `start` for a body already encoded as buffers (`protocol::produce::encode_request_parts`):
    /// they are written as they are, after the header, with no copy.
    pub async fn start_parts(
        &self,
        key: ApiKey,
        version: i16,
        body: Vec<Bytes>,
        answered: bool,
    ) -> Result<Option<PendingResponse>, ClientError> {
        let (tx, rx) = oneshot::channel();
        let reply = answered.then_some(tx);
        self.write_frame(key, version, |_| Ok(()), body, reply)
            .await?;
        Ok(answered.then(|| PendingResponse {
            reply: rx,
            key,
            version,
            broker: self.broker.clone(),
        }))
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub async fn send_no_response<Req: Encodable>(
        &self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<(), ClientError> {
        self.write_request(key, version, request, None).await
    }

    async fn write_request<Req: Encodable>(
        &self,
        key: ApiKey,
        version: i16,
        request: &Req,
        reply: Option<oneshot::Sender<Result<Bytes, ClientError>>>,
    ) -> Result<(), ClientError> {
        let encode = |frame: &mut BytesMut| {
            request
                .encode(frame, version)
                .map_err(|e| format!("cannot encode {key:?} v{version}: {e}"))
        };
        self.write_frame(key, version, encode, Vec::new(), reply)
            .await
    }

    /// Writes one request: the header, what `encode` puts after it, then the buffers of `rest`.
    async fn write_frame(
        &self,
        key: ApiKey,
        version: i16,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), String>,
        rest: Vec<Bytes>,
        reply: Option<oneshot::Sender<Result<Bytes, ClientError>>>,
    ) -> Result<(), ClientError> {
        let protocol = |detail: String| ClientError::Protocol {
            broker: self.broker.clone(),
            detail,
        };
        let correlation = self.next_correlation.get();
        self.next_correlation.set(correlation.wrapping_add(1));
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = correlation;
        header.client_id = Some(self.client_id.clone());
        let mut frame = BytesMut::with_capacity(64);
        frame.put_i32(0);
        header
            .encode(&mut frame, key.request_header_version(version))
            .map_err(|e| protocol(format!("cannot encode {key:?} header: {e}")))?;
        encode(&mut frame).map_err(protocol)?;
        let length = frame.len() - 4 + rest.iter().map(Bytes::len).sum::<usize>();
        let length = i32::try_from(length)
            .map_err(|_| protocol(format!("a {key:?} request of {length} bytes")))?;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let mut buffers = Vec::with_capacity(1 + rest.len());
        buffers.push(frame.freeze());
        buffers.extend(rest);
        if let Some(tx) = reply {
            self.waiters
                .borrow_mut()
                .insert(correlation, (key, version, tx));
        }
        if self.closed.get() {
            self.waiters.borrow_mut().remove(&correlation);
            return Err(ClientError::Io {
                broker: self.broker.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotConnected),
            });
        }
        let _permit = self.write_lock.acquire_permit(1).await;
        let mut writer = self.writer.borrow_mut().take();
        let result = match writer.as_mut() {
            Some(w) => w.write_vectored_all(&buffers).await,
            None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
        };
        *self.writer.borrow_mut() = writer;
        result.map_err(|source| {
            self.waiters.borrow_mut().remove(&correlation);
            ClientError::Io {
                broker: self.broker.clone(),
                source,
            }
        })
    }
}

/// A request on the wire whose response has not been read yet.
pub struct PendingResponse {
    reply: oneshot::Receiver<Result<Bytes, ClientError>>,
    key: ApiKey,
    version: i16,
    broker: String,
}

impl PendingResponse {
    pub async fn response<Resp: Decodable>(self) -> Result<Resp, ClientError> {
        let mut body = self.reply.await.map_err(|_| ClientError::Io {
            broker: self.broker.clone(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionAborted),
        })??;
        Resp::decode(&mut body, self.version).map_err(|e| ClientError::Protocol {
            broker: self.broker,
            detail: format!("{:?} v{}: {e}", self.key, self.version),
        })
    }
}

/// Reads response frames and hands each body (after its header) to the request waiting for it.
async fn read_responses(
    mut reader: crate::runtime::net::StreamReader,
    waiters: Rc<Waiters>,
    broker: String,
    closed: Rc<Cell<bool>>,
) {
    let mut buffer = BytesMut::with_capacity(64 << 10);
    let failure = loop {
        while buffer.len() >= 4 {
            let size = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes"));
            if size < 4 || size as usize > RESPONSE_MAX_BYTES {
                break;
            }
            if buffer.len() < 4 + size as usize {
                break;
            }
            buffer.advance(4);
            let mut frame = buffer.split_to(size as usize).freeze();
            let correlation = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
            let Some((key, version, tx)) = waiters.borrow_mut().remove(&correlation) else {
                continue;
            };
            let body = ResponseHeader::decode(&mut frame, key.response_header_version(version))
                .map(|_| frame)
                .map_err(|e| ClientError::Protocol {
                    broker: broker.clone(),
                    detail: format!("{key:?} response header: {e}"),
                });
            let _ = tx.send(body);
        }
        if buffer.len() >= 4 {
            let size = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes"));
            if size < 4 || size as usize > RESPONSE_MAX_BYTES {
                break format!("response frame of {size} bytes");
            }
        }
        // Room for the rest of the frame being read, at once: a large fetch response grows
        // the buffer once instead of doubling (and copying) its way up.
        let missing = match buffer.get(..4) {
            Some(prefix) => {
                let size = i32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
                (4 + size).saturating_sub(buffer.len())
            }
            None => 0,
        };
        let chunk = missing.clamp(READ_CHUNK_BYTES_MIN, READ_CHUNK_BYTES_MAX);
        let start = buffer.len();
        buffer.reserve(chunk.max(missing));
        buffer.resize(start + chunk, 0);
        match reader.read(&mut buffer[start..]).await {
            Ok(0) => {
                buffer.truncate(start);
                break "connection closed by the broker".to_owned();
            }
            Ok(n) => buffer.truncate(start + n),
            Err(e) => break e.to_string(),
        }
    };
    closed.set(true);
    for (_, (_, _, tx)) in waiters.borrow_mut().drain() {
        let _ = tx.send(Err(ClientError::Io {
            broker: broker.clone(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, failure.clone()),
        }));
    }
}

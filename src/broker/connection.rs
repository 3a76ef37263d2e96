//! One client connection: read frames, dispatch them in order, write responses in order.
//!
//! Requests are pipelined: the reader starts each request as soon as it is framed (a produce's
//! appends happen right there, so their order is the wire order) and hands a handle on its
//! response to the writer, which sends responses in request order, as Kafka requires.
//!
//! Metrics (`shard.metrics`): socket bytes both ways, requests and errors per API, and each
//! request's latency from the read that completed its frame to its response being ready. The
//! clock is read once per socket read and once per response, not per frame.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use futures::FutureExt;

use super::api::{self, Response};
use super::shard::Shard;
use crate::protocol::frame::{self, HeaderError};
use crate::runtime::net::{Stream, StreamReader};
use crate::runtime::{self, local_channel};

/// Requests a connection may have in flight before the reader stops reading.
pub const CONNECTION_INFLIGHT_MAX: usize = 1024;
/// Request bytes a connection may have in flight before the reader stops reading. A produce
/// waits for the group commit, so this bounds the bytes a client keeps on their way to disk:
/// enough that a client with many partitions keeps the log busy while a sync is in flight,
/// little enough that a thousand connections cannot exhaust memory quickly.
pub const CONNECTION_INFLIGHT_BYTES: u64 = 64 << 20;
/// Read granularity when no frame size is known yet.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Room made at once for a connection whose last read filled all the room it had: frames of
/// a busy producer then share large buffers, and a partial frame is moved to a new buffer
/// (the one copy a read buffer costs) once per this many bytes instead of once per frame.
const BUSY_READ_BYTES: usize = 1 << 20;

/// A started request on its way to the writer.
struct InFlight {
    response: runtime::Task<Response>,
    /// The request's share of `CONNECTION_INFLIGHT_BYTES`, returned once its response is sent.
    _budget: runtime::StaticPermit,
    api_key: i16,
    /// When the read that completed this request's frame returned.
    read_at: Instant,
}

pub async fn serve(shard: Rc<Shard>, stream: Stream) {
    let address = stream.peer_addr().ok();
    let peer = address.map(|a| a.to_string()).unwrap_or_default();
    // Kafka's spelling of a client's host in group descriptions.
    let client_host: Rc<str> = address.map_or("/".into(), |a| format!("/{}", a.ip()).into());
    shard.connections.set(shard.connections.get() + 1);
    tracing::debug!(%peer, shard = shard.id, "connection opened");
    let (mut reader, mut writer_half) = stream.split();
    let (sender, receiver) = local_channel::new_bounded::<InFlight>(CONNECTION_INFLIGHT_MAX);
    let writer = {
        let shard = shard.clone();
        runtime::spawn_task(async move {
            while let Some(in_flight) = receiver.recv().await {
                let response = in_flight.response.await;
                let api = shard.metrics.api(in_flight.api_key);
                if let Some(api) = api {
                    api.latency_us
                        .record(in_flight.read_at.elapsed().as_micros() as u64);
                }
                let (result, bytes) = match response {
                    Response::None => (Ok(()), 0),
                    Response::Frame(bytes) => {
                        (writer_half.write_vectored_all(&[&bytes]).await, bytes.len())
                    }
                    Response::Parts(parts) => (
                        writer_half.write_vectored_all(&parts).await,
                        parts.iter().map(|part| part.as_ref().len()).sum(),
                    ),
                    Response::Close(reason) => {
                        if let Some(api) = api {
                            api.errors.increment();
                        }
                        tracing::warn!(%reason, "closing connection");
                        writer_half.shutdown().await;
                        return;
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "write failed");
                    return;
                }
                shard.metrics.bytes_sent.add(bytes as u64);
            }
            writer_half.shutdown().await;
        })
    };
    let budget = Rc::new(runtime::LocalLock::new(CONNECTION_INFLIGHT_BYTES));
    let result = read_loop(&shard, &client_host, &mut reader, &sender, &budget).await;
    if let Err(reason) = result {
        tracing::warn!(%peer, %reason, "closing connection");
    }
    drop(sender);
    writer.await;
    shard.connections.set(shard.connections.get() - 1);
    tracing::debug!(%peer, "connection closed");
}

async fn read_loop(
    shard: &Rc<Shard>,
    client_host: &Rc<str>,
    stream: &mut StreamReader,
    sender: &local_channel::LocalSender<InFlight>,
    budget: &Rc<runtime::LocalLock>,
) -> Result<(), String> {
    let limit = shard.config.socket_request_max_bytes as usize;
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut shutdown = shard.shutdown_signal().fuse();
    let mut read_at = Instant::now();
    let mut busy = false;
    loop {
        // Take every whole frame already buffered.
        loop {
            match frame::split_frame(&mut buffer, limit) {
                Ok(Some(frame)) => {
                    // A request larger than the whole budget waits for the connection to drain.
                    let units = (frame.len() as u64).min(CONNECTION_INFLIGHT_BYTES);
                    let Ok(permit) = budget.acquire_static_permit(units).await else {
                        return Ok(());
                    };
                    let (response, api_key) = dispatch(shard, client_host, frame).await?;
                    let in_flight = InFlight {
                        response,
                        _budget: permit,
                        api_key,
                        read_at,
                    };
                    if sender.send(in_flight).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shard.metrics.frame_errors.increment();
                    return Err(e.to_string());
                }
            }
        }
        if shard.shutting_down.get() {
            return Ok(());
        }
        let want = frame::bytes_wanted(&buffer).unwrap_or(0).max(if busy {
            BUSY_READ_BYTES
        } else {
            READ_CHUNK_BYTES
        });
        let start = buffer.len();
        let room = buffer.capacity() - start;
        let read = {
            let read = stream.read_into(&mut buffer, want).fuse();
            futures::pin_mut!(read);
            futures::select_biased! {
                result = read => result,
                _ = shutdown => return Ok(()),
            }
        };
        match read {
            Ok(0) => {
                if !buffer.is_empty() {
                    return Err(format!(
                        "connection closed mid-frame ({} bytes buffered)",
                        buffer.len()
                    ));
                }
                return Ok(());
            }
            Ok(n) => {
                read_at = Instant::now();
                shard.metrics.bytes_received.add(n as u64);
                debug_assert_eq!(buffer.len(), start + n);
                busy = n >= room.max(want);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                // The client went away; nothing to complain about.
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Starts one request; returns its response and API key. Returns `Err` when the connection
/// must be closed (Kafka closes on an unknown API key or an unparseable header: there is no
/// response schema to answer with).
async fn dispatch(
    shard: &Rc<Shard>,
    client_host: &Rc<str>,
    frame: BytesMut,
) -> Result<(runtime::Task<Response>, i16), String> {
    let header = match frame::parse_request_header(&frame) {
        Ok(header) => header,
        Err(HeaderError::UnknownApi {
            api_key,
            correlation_id,
        }) => {
            shard.metrics.frame_errors.increment();
            return Err(format!(
                "unknown API key {api_key} (correlation id {correlation_id})"
            ));
        }
        Err(e) => {
            shard.metrics.frame_errors.increment();
            return Err(e.to_string());
        }
    };
    let api_key = header.api_key;
    let api = shard.metrics.api(api_key);
    match api {
        Some(api) => api.requests.increment(),
        // A known key this broker does not serve: `api::start` refuses it below.
        None => shard.metrics.frame_errors.increment(),
    }
    match api::start(shard, client_host, header, frame).await {
        Ok(response) => Ok((response, api_key)),
        Err(reason) => {
            if let Some(api) = api {
                api.errors.increment();
            }
            Err(reason)
        }
    }
}

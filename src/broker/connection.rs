//! One client connection: read frames, dispatch them in order, write responses in order.
//!
//! Requests are pipelined: the reader starts each request as soon as it is framed (a produce's
//! appends happen right there, so their order is the wire order) and hands a handle on its
//! response to the writer, which sends responses in request order, as Kafka requires.

use std::rc::Rc;

use bytes::BytesMut;
use futures::FutureExt;

use super::api::{self, Response};
use super::shard::Shard;
use crate::protocol::frame::{self, HeaderError};
use crate::runtime::net::{Stream, StreamReader};
use crate::runtime::{self, local_channel};

/// Responses a connection may have in flight before the reader stops reading.
pub const CONNECTION_INFLIGHT_MAX: usize = 64;
/// Read granularity when no frame size is known yet.
const READ_CHUNK_BYTES: usize = 64 << 10;

pub async fn serve(shard: Rc<Shard>, stream: Stream) {
    let address = stream.peer_addr().ok();
    let peer = address.map(|a| a.to_string()).unwrap_or_default();
    // Kafka's spelling of a client's host in group descriptions.
    let client_host: Rc<str> = address.map_or("/".into(), |a| format!("/{}", a.ip()).into());
    shard.connections.set(shard.connections.get() + 1);
    tracing::debug!(%peer, shard = shard.id, "connection opened");
    let (mut reader, mut writer_half) = stream.split();
    let (sender, receiver) =
        local_channel::new_bounded::<runtime::Task<Response>>(CONNECTION_INFLIGHT_MAX);
    let writer = {
        runtime::spawn_task(async move {
            while let Some(task) = receiver.recv().await {
                let response = task.await;
                let result = match response {
                    Response::None => Ok(()),
                    Response::Frame(bytes) => writer_half.write_vectored_all(&[bytes]).await,
                    Response::Parts(parts) => writer_half.write_vectored_all(&parts).await,
                    Response::Close(reason) => {
                        tracing::warn!(%reason, "closing connection");
                        writer_half.shutdown().await;
                        return;
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "write failed");
                    return;
                }
            }
            writer_half.shutdown().await;
        })
    };
    let result = read_loop(&shard, &client_host, &mut reader, &sender).await;
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
    sender: &local_channel::LocalSender<runtime::Task<Response>>,
) -> Result<(), String> {
    let limit = shard.config.socket_request_max_bytes as usize;
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut shutdown = shard.shutdown_signal().fuse();
    loop {
        // Take every whole frame already buffered.
        loop {
            match frame::split_frame(&mut buffer, limit) {
                Ok(Some(frame)) => {
                    let task = dispatch(shard, client_host, frame).await?;
                    if sender.send(task).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if shard.shutting_down.get() {
            return Ok(());
        }
        let want = frame::bytes_wanted(&buffer)
            .unwrap_or(0)
            .max(READ_CHUNK_BYTES);
        let start = buffer.len();
        buffer.resize(start + want, 0);
        let read = {
            let read = stream.read(&mut buffer[start..]).fuse();
            futures::pin_mut!(read);
            futures::select_biased! {
                result = read => result,
                _ = shutdown => return Ok(()),
            }
        };
        match read {
            Ok(0) => {
                buffer.truncate(start);
                if !buffer.is_empty() {
                    return Err(format!(
                        "connection closed mid-frame ({} bytes buffered)",
                        buffer.len()
                    ));
                }
                return Ok(());
            }
            Ok(n) => buffer.truncate(start + n),
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

/// Starts one request. Returns `Err` when the connection must be closed (Kafka closes on an
/// unknown API key or an unparseable header: there is no response schema to answer with).
async fn dispatch(
    shard: &Rc<Shard>,
    client_host: &Rc<str>,
    frame: BytesMut,
) -> Result<runtime::Task<Response>, String> {
    let header = match frame::parse_request_header(&frame) {
        Ok(header) => header,
        Err(HeaderError::UnknownApi {
            api_key,
            correlation_id,
        }) => {
            return Err(format!(
                "unknown API key {api_key} (correlation id {correlation_id})"
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    api::start(shard, client_host, header, frame).await
}

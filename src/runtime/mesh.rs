//! Cross-shard calls over glommio's bounded channel mesh.
//!
//! A call is a request envelope to the owner shard and a reply envelope back, matched by a
//! per-shard call id. Nothing is shared between shards but the messages themselves.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};

use super::ShardId;

/// Bound on messages queued from one shard to another before senders wait.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

enum Envelope<Req, Rep> {
    Request { call: u64, body: Req },
    Reply { call: u64, body: Rep },
}

/// Built once in the main thread and cloned into every shard.
pub struct MeshSeed<Req: Send, Rep: Send> {
    builder: MeshBuilder<Envelope<Req, Rep>, Full>,
}

impl<Req: Send, Rep: Send> Clone for MeshSeed<Req, Rep> {
    fn clone(&self) -> Self {
        Self {
            builder: self.builder.clone(),
        }
    }
}

impl<Req: Send + 'static, Rep: Send + 'static> MeshSeed<Req, Rep> {
    pub fn new(shards: usize) -> Self {
        Self {
            builder: MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY),
        }
    }

    /// Joins the mesh from the current shard. `handler` serves requests from peers: it is called
    /// in arrival order, and the future it returns is run concurrently; its output is the reply.
    pub async fn join<H, Fut>(self, handler: H) -> anyhow::Result<Mesh<Req, Rep>>
    where
        H: Fn(ShardId, Req) -> Fut + 'static,
        Fut: std::future::Future<Output = Rep> + 'static,
    {
        let (senders, receivers) = self
            .builder
            .join()
            .await
            .map_err(|e| anyhow::anyhow!("cannot join the shard mesh: {e}"))?;
        let inner = Rc::new(MeshInner {
            senders,
            pending: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
        });
        start_receivers(inner.clone(), receivers, Rc::new(handler));
        Ok(Mesh { inner })
    }
}

struct MeshInner<Req: Send, Rep: Send> {
    senders: Senders<Envelope<Req, Rep>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Rep>>>,
    next_call: Cell<u64>,
}

/// This shard's end of the mesh.
pub struct Mesh<Req: Send, Rep: Send> {
    inner: Rc<MeshInner<Req, Rep>>,
}

impl<Req: Send, Rep: Send> Clone for Mesh<Req, Rep> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// The peer shard is gone (only during shutdown).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable")]
pub struct PeerGone(pub ShardId);

impl<Req: Send + 'static, Rep: Send + 'static> Mesh<Req, Rep> {
    pub fn shard_id(&self) -> ShardId {
        self.inner.senders.peer_id()
    }

    pub fn shard_count(&self) -> usize {
        self.inner.senders.nr_consumers()
    }

    /// Sends `body` to shard `to`. The request is queued (in order with earlier sends from this
    /// shard to `to`) when the first await point returns; the returned future is the reply.
    pub async fn call(
        &self,
        to: ShardId,
        body: Req,
    ) -> Result<impl std::future::Future<Output = Result<Rep, PeerGone>>, PeerGone> {
        let call = self.inner.next_call.get();
        self.inner.next_call.set(call + 1);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.borrow_mut().insert(call, tx);
        if self
            .inner
            .senders
            .send_to(to, Envelope::Request { call, body })
            .await
            .is_err()
        {
            self.inner.pending.borrow_mut().remove(&call);
            return Err(PeerGone(to));
        }
        Ok(async move { rx.await.map_err(|_| PeerGone(to)) })
    }
}

fn start_receivers<Req, Rep, H, Fut>(
    inner: Rc<MeshInner<Req, Rep>>,
    mut receivers: Receivers<Envelope<Req, Rep>>,
    handler: Rc<H>,
) where
    Req: Send + 'static,
    Rep: Send + 'static,
    H: Fn(ShardId, Req) -> Fut + 'static,
    Fut: std::future::Future<Output = Rep> + 'static,
{
    for (peer, mut stream) in receivers.streams() {
        let inner = inner.clone();
        let handler = handler.clone();
        super::spawn(async move {
            while let Some(envelope) = stream.next().await {
                match envelope {
                    Envelope::Request { call, body } => {
                        // The handler runs its synchronous part now, in arrival order.
                        let reply = handler(peer, body);
                        let inner = inner.clone();
                        super::spawn(async move {
                            let body = reply.await;
                            // A send error means the peer is shutting down; nobody awaits.
                            let _ = inner
                                .senders
                                .send_to(peer, Envelope::Reply { call, body })
                                .await;
                        });
                    }
                    Envelope::Reply { call, body } => {
                        if let Some(tx) = inner.pending.borrow_mut().remove(&call) {
                            let _ = tx.send(body);
                        }
                    }
                }
            }
        });
    }
}

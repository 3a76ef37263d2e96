//! The cluster: brokers that share one metadata log kept by a Raft quorum of controllers.
//!
//! Owns: the replicated metadata (`state.rs`: brokers, topics, partition replicas, leaders and
//! epochs, dynamic configs, producer-id blocks, and the pure `apply` that builds it), the
//! quorum voter (`quorum.rs`, a pure state machine over the `raft` crate, with the log in
//! `store.rs` behind the `Disk` trait), the active controller's decisions (`controller.rs`:
//! broker leases and partition placement, pure), the node that runs all of it on shard 0
//! (`node.rs`), the cluster's own requests on the Kafka port (`wire.rs`) and the sockets that
//! carry them (`transport.rs`). `sim.rs` (tests) runs voters over a seeded faulty network.
//!
//! Must not touch: partition logs and request serving. The broker reads the cluster only
//! through the immutable `Image` the node publishes to every shard
//! (`broker::metadata::Image::build`), and asks it for changes through `Node`.

pub mod controller;
pub mod node;
pub mod quorum;
pub mod state;
pub mod store;
pub mod transport;
pub mod wire;

#[cfg(test)]
mod sim;

pub use node::Node;

/// Sends the Raft library's log lines to `tracing` (debug, or warn for its warnings).
pub struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error | slog::Level::Warning => {
                tracing::warn!(target: "raft", "{}", record.msg())
            }
            _ => tracing::debug!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

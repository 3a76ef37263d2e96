//! The shard runtime: the only module that names glommio.
//!
//! Owns: starting one executor per shard, the cross-shard message mesh, timers, the TCP listener
//! and stream types, and the direct-I/O file type. Everything above (protocol handlers, storage)
//! uses these names, so the executor could be replaced without touching them.
//!
//! Invariants: everything returned here is shard-local (`!Send`) except what travels on the mesh.
//! A shard never blocks its thread; file and socket I/O go through io_uring.

pub mod mesh;
pub mod net;

use std::future::Future;
use std::time::Duration;

pub use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};
pub use glommio::task::JoinHandle;
pub use glommio::Task;

/// A shard-local async lock (a counting semaphore); never crosses shards.
pub type LocalLock = glommio::sync::Semaphore;
pub use glommio::sync::StaticPermit;

pub use glommio::channels::local_channel;

/// Index of a shard (one executor thread) in this process.
pub type ShardId = usize;

/// How to start the shards of this process.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    pub count: usize,
    pub pinning: bool,
    pub io_memory_bytes: usize,
}

/// Starts `spec.count` executors; shard `i` runs the future that `make(i)()` returns. Waits for
/// all of them and returns the first error any shard returned.
pub fn run_shards<M, F, Fut>(spec: &ShardSpec, mut make: M) -> anyhow::Result<()>
where
    M: FnMut(ShardId) -> F,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    let cores: Vec<usize> = if spec.pinning {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else {
        Vec::new()
    };
    let mut handles = Vec::with_capacity(spec.count);
    for shard in 0..spec.count {
        let placement = match cores.get(shard % cores.len().max(1)) {
            Some(&cpu) if spec.pinning => glommio::Placement::Fixed(cpu),
            _ => glommio::Placement::Unbound,
        };
        let body = make(shard);
        let builder = glommio::LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{shard}"))
            .io_memory(spec.io_memory_bytes)
            .spin_before_park(Duration::from_micros(0));
        let handle = builder
            .spawn(body)
            .map_err(|e| explain_start_error(shard, e))?;
        handles.push(handle);
    }
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(explain_start_error(0, e));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn explain_start_error(shard: ShardId, e: impl std::fmt::Display) -> anyhow::Error {
    let text = e.to_string();
    if text.to_lowercase().contains("memlock") || text.contains("locked") {
        anyhow::anyhow!(
            "a shard could not start its io_uring reactor: {text}. The locked-memory limit \
             (RLIMIT_MEMLOCK) must be at least 512 KiB: raise `ulimit -l` (LimitMEMLOCK= under \
             systemd). Registered buffers beyond the limit are not needed: the broker falls \
             back to unregistered ones"
        )
    } else {
        anyhow::anyhow!("shard {shard} could not start: {text}")
    }
}

/// Runs the future `body` makes to completion on a fresh single-shard executor in a new
/// thread, for benchmarks and tools that need the runtime outside a broker. (An executor per
/// thread, as in the broker: a second io_uring executor on one thread does not work.)
pub fn run_local<F, Fut, T>(io_memory_bytes: usize, body: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(io_memory_bytes)
        .spawn(body)
        .map_err(|e| anyhow::anyhow!("cannot start an executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor failed: {e}"))
}

/// An executor thread started by `start_local`; `join` waits for its future's output.
pub struct LocalThread<T: Send + 'static>(glommio::ExecutorJoinHandle<T>);

impl<T: Send + 'static> LocalThread<T> {
    pub fn join(self) -> anyhow::Result<T> {
        self.0
            .join()
            .map_err(|e| anyhow::anyhow!("executor failed: {e}"))
    }
}

/// `run_local` without the wait: the executor thread runs on while the caller goes on (the
/// client's blocking facade talks to it over channels).
pub fn start_local<F, Fut, T>(io_memory_bytes: usize, body: F) -> anyhow::Result<LocalThread<T>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(io_memory_bytes)
        .spawn(body)
        .map(LocalThread)
        .map_err(|e| anyhow::anyhow!("cannot start an executor: {e}"))
}

/// Runs a future on the current shard, detached.
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) {
    glommio::spawn_local(future).detach();
}

/// Runs a future on the current shard and returns a handle to its result.
pub fn spawn_task<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(future)
}

/// Yields to other tasks of this shard if this one has run for its time slice.
pub async fn yield_now() {
    glommio::yield_if_needed().await;
}

/// Yields to other tasks of this shard now: for background work (compaction, loading) that
/// must not hold the core for a whole time slice while requests wait.
pub async fn yield_to_requests() {
    futures_lite::future::yield_now().await;
}

/// A second descriptor of `file`. Whoever closes the last descriptor of a file pays for its
/// release (freeing its blocks, if it was unlinked), which can take milliseconds: holding this
/// one and dropping it inside `blocking` moves that cost off the shard.
pub fn hold_descriptor(file: &DmaFile) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: dup of a descriptor the file keeps open; the new descriptor is owned by the
    // returned value alone.
    let fd = unsafe { libc::dup(file.as_raw_fd()) };
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Runs a blocking system call (unlink, rename, a directory fsync) on glommio's helper
/// thread, so the shard keeps serving meanwhile.
pub async fn blocking<R: Send + 'static>(call: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(call).await
}

pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await
}

/// Runs `future` until it finishes or `duration` passes; `None` on timeout.
pub async fn timeout<T>(duration: Duration, future: impl Future<Output = T>) -> Option<T> {
    use futures::FutureExt;
    let future = future.fuse();
    let timer = glommio::timer::sleep(duration).fuse();
    futures::pin_mut!(future, timer);
    futures::select_biased! {
        value = future => Some(value),
        _ = timer => None,
    }
}

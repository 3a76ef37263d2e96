//! A blocking facade for simple programs: runs a client future to completion on its own
//! executor thread (the client itself is async, on the same runtime as the broker).

use crate::runtime;

/// Registered-buffer memory of the client's executor; a client does little direct I/O.
const CLIENT_IO_MEMORY_BYTES: usize = 512 << 10;

/// Runs `body` (which builds the future on the executor thread) and returns its output.
pub fn run<F, Fut, T>(body: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    runtime::run_local(CLIENT_IO_MEMORY_BYTES, body)
}

//! The tokio runtime each store object owns, and the one way Python threads enter it.
//!
//! Every blocking call releases the GIL (`Python::detach`) and then blocks the calling
//! thread on the runtime. The future runs on the caller's own thread (spawned I/O tasks
//! run on the workers), so N Python threads drive N futures in parallel and a copy
//! done inside a future scales with the callers, not with the worker count.

use pyo3::Python;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Worker threads: `MOONCAKE_PY_RUNTIME_THREADS`, else enough to keep the transfer
/// engine's sockets busy, capped so a process with many store objects (one per SGLang
/// rank) does not flood the machine.
fn worker_threads() -> usize {
    crate::config::runtime_threads().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8)
    })
}

/// Builds the multi-thread runtime for one store object.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let id = SEQ.fetch_add(1, Ordering::Relaxed);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name(format!("mooncake-py-{id}"))
        .enable_all()
        .build()
}

/// Runs `fut` to completion on `rt` with the GIL released. A store object's client
/// makes its master calls in `CallMode::Blocking` (`config::client_config`): polled
/// here, they do their socket I/O on this thread, so a round trip wakes no runtime
/// worker.
pub fn block_on<F>(py: Python<'_>, rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    py.detach(|| {
        // This thread waits for the result: small transfers may run on lanes it
        // drives itself (`mooncake_transfer::tcp::lane`).
        let _lanes = lanes_on().then(mooncake_transfer::tcp::lane::CallerMayBlock::enter);
        rt.block_on(fut)
    })
}

/// Lanes are on unless `MOONCAKE_TCP_LANES=0` (read once): the switch exists to
/// compare the two paths and as a way back should a network mishandle many small
/// connections.
fn lanes_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("MOONCAKE_TCP_LANES").map_or(true, |v| v.trim() != "0"))
}

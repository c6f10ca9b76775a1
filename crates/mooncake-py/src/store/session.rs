//! One set-up store: the client and the runtime it runs on. Shared by `Arc` between
//! the Python object and in-flight calls, so `close()` from one thread never pulls
//! the runtime out from under a call running on another.

use crate::codes;
use crate::runtime;
use mooncake_client::Client;
use pyo3::Python;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long dropping an unclosed store waits for the clean unmount.
const CLOSE_ON_DROP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Session {
    pub client: ManuallyDrop<Client>,
    rt: ManuallyDrop<tokio::runtime::Runtime>,
    closed: AtomicBool,
}

impl Session {
    pub fn new(client: Client, rt: tokio::runtime::Runtime) -> Session {
        Session {
            client: ManuallyDrop::new(client),
            rt: ManuallyDrop::new(rt),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs a client future with the GIL released.
    pub fn run<F>(&self, py: Python<'_>, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        runtime::block_on(py, &self.rt, fut)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the client once; later calls are no-ops returning 0.
    pub fn close(&self, py: Python<'_>) -> i32 {
        if self.closed.swap(true, Ordering::AcqRel) {
            return 0;
        }
        codes::status(&self.run(py, self.client.close()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The last reference goes on a Python thread, never inside the runtime, so
        // blocking here is allowed. An unclosed store unmounts its segment cleanly
        // rather than leaving the master to time it out.
        if !self.closed.swap(true, Ordering::AcqRel) {
            let client = &self.client;
            let _ = self.rt.block_on(async {
                tokio::time::timeout(CLOSE_ON_DROP_TIMEOUT, client.close()).await
            });
        }
        let _guard = self.rt.enter();
        // SAFETY: dropped exactly once, here; the client goes first, inside the
        // runtime's context, because its sockets and tasks belong to that runtime.
        unsafe {
            ManuallyDrop::drop(&mut self.client);
        }
        drop(_guard);
        // SAFETY: dropped exactly once, after everything that ran on it.
        let rt = unsafe { ManuallyDrop::take(&mut self.rt) };
        rt.shutdown_timeout(Duration::from_millis(500));
    }
}

//! A slice in flight: the unit a connection carries, and the guard that makes dropping a
//! transfer safe.
//!
//! Connection tasks own the sockets and touch the caller's memory only between
//! [`SliceCtl::begin`] and [`SliceCtl::end`], around single non-blocking syscalls. When the caller's future (or batch) is
//! dropped, [`SliceCtl::cancel`] waits out an access in progress and marks the slice
//! cancelled, after which no task touches that memory: a queued Write is skipped, and a
//! Read response is drained into scratch. The connection stays in sync either way.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::errors::TransferError;
use crate::Opcode;

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const CANCELLED: u8 = 2;

#[derive(Debug, Default)]
pub struct SliceCtl(AtomicU8);

impl SliceCtl {
    /// Claims the memory for one synchronous access; false once cancelled. Another
    /// path may hold it for the length of one syscall (a retried slice): wait that out.
    pub fn begin(&self) -> bool {
        loop {
            match self
                .0
                .compare_exchange(IDLE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(CANCELLED) => return false,
                Err(_) => std::hint::spin_loop(),
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == CANCELLED
    }

    pub fn end(&self) {
        let _ = self
            .0
            .compare_exchange(BUSY, IDLE, Ordering::Release, Ordering::Relaxed);
    }

    /// Forbids further access, waiting for one in progress (at most one syscall: no
    /// task holds the memory across an `.await`, see `tcp::guarded`).
    pub fn cancel(&self) {
        loop {
            match self
                .0
                .compare_exchange(IDLE, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) | Err(CANCELLED) => return,
                Err(_) => std::thread::yield_now(),
            }
        }
    }
}

/// Completion of one slice, sent to the batch driver.
#[derive(Debug)]
pub struct Done {
    pub tag: usize,
    pub result: Result<(), TransferError>,
}

/// One slice handed to a connection.
#[derive(Debug)]
pub struct Job {
    pub op: Opcode,
    /// The grant covering this slice's remote range (`tcp::grant`), sent before it.
    pub grant: Option<Arc<Vec<u8>>>,
    pub remote_addr: u64,
    pub local: usize,
    pub len: usize,
    pub ctl: Arc<SliceCtl>,
    /// The driver's index of this slice.
    pub tag: usize,
    pub done: mpsc::UnboundedSender<Done>,
    /// In-flight byte budget, returned when the job completes.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Job {
    /// Reports the outcome and releases the byte budget.
    pub fn complete(self, result: Result<(), TransferError>) {
        let _ = self.done.send(Done {
            tag: self.tag,
            result,
        });
    }
}

/// Cancels every slice of a transfer when dropped before `disarm`.
pub struct CancelGuard {
    ctls: Vec<Arc<SliceCtl>>,
    armed: bool,
}

impl CancelGuard {
    pub fn new(ctls: Vec<Arc<SliceCtl>>) -> Self {
        Self { ctls, armed: true }
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            for c in &self.ctls {
                c.cancel();
            }
        }
    }
}

//! Counters of one engine. Each engine owns its own (no global registry), so several
//! engines in one test process never mix numbers; `snapshot()` is what the bench, the
//! store's admin port and tests read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Payload bytes this engine sent in Write requests.
    pub bytes_written: AtomicU64,
    /// Payload bytes this engine received for its Read requests.
    pub bytes_read: AtomicU64,
    /// Payload bytes peers wrote into this engine's regions.
    pub bytes_served_in: AtomicU64,
    /// Payload bytes peers read from this engine's regions.
    pub bytes_served_out: AtomicU64,
    /// Slices sent again on another path after a failure.
    pub slices_retried: AtomicU64,
    /// Requests that failed for good.
    pub requests_failed: AtomicU64,
    /// Data connections opened by this engine.
    pub connections_opened: AtomicU64,
    /// Requests refused by the bounds check.
    pub out_of_region: AtomicU64,
    /// Requests refused because the peer's tenant held no grant covering them.
    pub requests_forbidden: AtomicU64,
    /// Connections the data listener closed to admit a newer one while at its cap.
    pub connections_evicted: AtomicU64,
    /// Connections the data listener closed at once: at its cap, none of them idle.
    pub connections_refused: AtomicU64,
    /// Data connections closed for idling past `idle_timeout` or stalling a frame.
    pub connections_timed_out: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub bytes_served_in: u64,
    pub bytes_served_out: u64,
    pub slices_retried: u64,
    pub requests_failed: u64,
    pub connections_opened: u64,
    pub out_of_region: u64,
    pub requests_forbidden: u64,
    pub connections_evicted: u64,
    pub connections_refused: u64,
    pub connections_timed_out: u64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            bytes_written: self.bytes_written.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_served_in: self.bytes_served_in.load(Relaxed),
            bytes_served_out: self.bytes_served_out.load(Relaxed),
            slices_retried: self.slices_retried.load(Relaxed),
            requests_failed: self.requests_failed.load(Relaxed),
            connections_opened: self.connections_opened.load(Relaxed),
            out_of_region: self.out_of_region.load(Relaxed),
            requests_forbidden: self.requests_forbidden.load(Relaxed),
            connections_evicted: self.connections_evicted.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            connections_timed_out: self.connections_timed_out.load(Relaxed),
        }
    }
}

//! Counters of one owner's tier; the store exports them as Prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct TierMetrics {
    pub reads: AtomicU64,
    pub read_bytes: AtomicU64,
    pub writes: AtomicU64,
    pub write_bytes: AtomicU64,
    /// Writes that went around the page cache (O_DIRECT; see `io::writeback_pressure`).
    pub direct_writes: AtomicU64,
    pub write_failures: AtomicU64,
    pub checksum_failures: AtomicU64,
    pub demotions: AtomicU64,
    pub promotions: AtomicU64,
}

/// A point-in-time view of the tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierStats {
    pub objects: u64,
    pub bytes: u64,
    pub capacity: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub direct_writes: u64,
    pub write_failures: u64,
    pub checksum_failures: u64,
    pub demotions: u64,
    pub promotions: u64,
}

impl TierMetrics {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self, objects: u64, bytes: u64, capacity: u64) -> TierStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TierStats {
            objects,
            bytes,
            capacity,
            reads: g(&self.reads),
            read_bytes: g(&self.read_bytes),
            writes: g(&self.writes),
            write_bytes: g(&self.write_bytes),
            direct_writes: g(&self.direct_writes),
            write_failures: g(&self.write_failures),
            checksum_failures: g(&self.checksum_failures),
            demotions: g(&self.demotions),
            promotions: g(&self.promotions),
        }
    }
}

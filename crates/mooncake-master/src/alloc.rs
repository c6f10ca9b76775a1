//! One offset allocator per mounted segment.
//!
//! Why `offset-allocator`: it is a port of Sebastian Aaltonen's O(1) two-level
//! bitmap allocator (the same design the reference master uses), with no unsafe code.
//! Allocate and free touch a handful of words, so the per-segment lock is held for tens
//! of nanoseconds. Its sizes are `u32` *units*; we pick the unit per segment:
//! [`MIN_UNIT`] (64 B, small enough that a 4 KiB warm-up object wastes nothing and
//! cache-line aligned) doubled until the segment fits in `u32::MAX` units, so a 256 GiB
//! segment still uses 64 B units and a 1 TiB one uses 256 B units.
//!
//! The crate preallocates its node table (32 bytes per node) and fails once the nodes
//! are used up, so the node budget is sized from the segment: one node per
//! [`BYTES_PER_NODE`] bytes of segment, clamped to [`MIN_NODES`, `MAX_NODES`]. A 3.2 GB
//! segment gets ~200k nodes (6.4 MB), enough for ~200k live objects on it (KV-cache
//! pages are 1-5 MiB); a 32 GiB or larger segment gets the 2M cap (64 MB, touched at
//! mount). Running out of nodes is reported like running out of space (the caller
//! tries other segments, then evicts).

use offset_allocator::{Allocation, Allocator};

/// The smallest allocation unit, in bytes.
pub const MIN_UNIT: u64 = 64;
/// Segment bytes per allocator node (bounds the number of live allocations).
pub const BYTES_PER_NODE: u64 = 16 * 1024;
pub const MIN_NODES: u64 = 1024;
pub const MAX_NODES: u64 = 2 * 1024 * 1024;

/// A handle to one allocation; 8 bytes so that objects stay small.
pub type AllocHandle = Allocation<u32>;

/// The allocator of one segment, plus the bookkeeping the master reports.
pub struct SegmentAllocator {
    inner: Allocator<u32>,
    unit_shift: u32,
    size: u64,
    used: u64,
}

impl std::fmt::Debug for SegmentAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentAllocator")
            .field("size", &self.size)
            .field("used", &self.used)
            .field("unit", &(1u64 << self.unit_shift))
            .finish()
    }
}

impl SegmentAllocator {
    /// An allocator for a segment of `size` bytes. `size` must be at least one unit.
    pub fn new(size: u64) -> Result<Self, String> {
        if size < MIN_UNIT {
            return Err(format!(
                "segment size {size} is too small (at least {MIN_UNIT} bytes)"
            ));
        }
        let mut unit_shift = MIN_UNIT.trailing_zeros();
        while (size >> unit_shift) > u64::from(u32::MAX - 1) {
            unit_shift += 1;
        }
        let units = (size >> unit_shift) as u32;
        let nodes = (size / BYTES_PER_NODE).clamp(MIN_NODES, MAX_NODES) as u32;
        Ok(Self {
            inner: Allocator::with_max_allocs(units, nodes),
            unit_shift,
            size: u64::from(units) << unit_shift,
            used: 0,
        })
    }

    /// Usable capacity in bytes (the segment size rounded down to whole units).
    pub fn capacity(&self) -> u64 {
        self.size
    }

    /// Bytes handed out (rounded up to whole units).
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn unit(&self) -> u64 {
        1 << self.unit_shift
    }

    fn units_for(&self, bytes: u64) -> Option<u32> {
        let units = bytes.div_ceil(self.unit()).max(1);
        u32::try_from(units).ok()
    }

    /// Allocates `bytes` (> 0) contiguous bytes; `None` when no free range fits.
    pub fn allocate(&mut self, bytes: u64) -> Option<AllocHandle> {
        let units = self.units_for(bytes)?;
        let a = self.inner.allocate(units)?;
        self.used += u64::from(units) << self.unit_shift;
        Some(a)
    }

    /// Returns an allocation made by this allocator for `bytes` bytes. Each handle
    /// must be freed exactly once (the index guarantees it).
    pub fn free(&mut self, handle: AllocHandle, bytes: u64) {
        if let Some(units) = self.units_for(bytes) {
            self.used = self
                .used
                .saturating_sub(u64::from(units) << self.unit_shift);
        }
        self.inner.free(handle);
    }

    /// Byte offset of an allocation inside the segment.
    pub fn offset_of(&self, handle: AllocHandle) -> u64 {
        u64::from(handle.offset) << self.unit_shift
    }

    /// A lower bound of the largest contiguous free range, in bytes (the crate rounds
    /// bins down), used by placement to skip segments that cannot fit.
    pub fn largest_free(&self) -> u64 {
        u64::from(self.inner.storage_report().largest_free_region) << self.unit_shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn rejects_tiny_segments_and_picks_units() {
        assert!(SegmentAllocator::new(10).unwrap_err().contains("too small"));
        assert_eq!(SegmentAllocator::new(1 << 30).unwrap().unit(), 64);
        assert_eq!(SegmentAllocator::new(1 << 40).unwrap().unit(), 512);
    }

    #[test]
    fn allocations_never_overlap_and_stay_inside() {
        let mut a = SegmentAllocator::new(1 << 20).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut live: Vec<(AllocHandle, u64, u64)> = Vec::new();
        for _ in 0..5000 {
            if rng.random_bool(0.6) {
                let n = rng.random_range(1..20_000u64);
                if let Some(h) = a.allocate(n) {
                    live.push((h, a.offset_of(h), n));
                }
            } else if !live.is_empty() {
                let i = rng.random_range(0..live.len());
                let (h, _, n) = live.swap_remove(i);
                a.free(h, n);
            }
            let mut ranges: Vec<(u64, u64)> = live.iter().map(|&(_, o, n)| (o, o + n)).collect();
            ranges.sort();
            for w in ranges.windows(2) {
                assert!(w[0].1 <= w[1].0, "overlap: {:?} {:?}", w[0], w[1]);
            }
            if let Some(last) = ranges.last() {
                assert!(last.1 <= a.capacity());
            }
        }
    }

    #[test]
    fn full_reuse_after_freeing_everything() {
        let mut a = SegmentAllocator::new(1 << 20).unwrap();
        let mut hs = Vec::new();
        while let Some(h) = a.allocate(4096) {
            hs.push(h);
        }
        assert_eq!(hs.len(), 256);
        assert_eq!(a.used(), 1 << 20);
        assert!(a.allocate(64).is_none());
        for h in hs {
            a.free(h, 4096);
        }
        assert_eq!(a.used(), 0);
        // Everything coalesced: the whole segment is one range again.
        let whole = a.allocate(1 << 20).expect("whole segment after frees");
        assert_eq!(a.offset_of(whole), 0);
    }

    #[test]
    fn fragmentation_blocks_large_but_not_small_requests() {
        let mut a = SegmentAllocator::new(1 << 20).unwrap();
        let hs: Vec<_> = (0..256).map(|_| a.allocate(4096).unwrap()).collect();
        // Free every other block: half the space is free, but only in 4 KiB holes.
        for h in hs.iter().step_by(2) {
            a.free(*h, 4096);
        }
        assert_eq!(a.used(), 512 * 1024);
        assert!(
            a.allocate(8192).is_none(),
            "no contiguous 8 KiB range exists"
        );
        assert!(a.largest_free() <= 4096);
        assert!(a.allocate(4096).is_some());
        // Freeing a neighbour merges two holes into an 12 KiB range.
        a.free(hs[1], 4096);
        assert!(a.allocate(8192).is_some());
    }
}

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
//! [`BYTES_PER_NODE`] bytes of segment, clamped to [`MIN_NODES`, `MAX_NODES`]. One node
//! per KiB lets a segment fill up with objects as small as 1 KiB (a budget of one per
//! 16 KiB evicted after ~6% of a segment was used when objects were 1 KiB); the cost
//! is 32 B of master memory per KiB of segment, i.e. a 1 GB segment's table is 32 MB,
//! and a 2 GiB or larger segment gets the 2M cap (64 MB, touched at mount). Beyond the
//! cap a segment holds at most 2M live objects. Running out of nodes is reported like
//! running out of space (the caller tries other segments, then evicts).

use crate::generation::Generations;
use offset_allocator::{Allocation, Allocator};
use std::sync::Arc;

/// The smallest allocation unit, in bytes.
pub const MIN_UNIT: u64 = 64;
/// Segment bytes per allocator node (bounds the number of live allocations).
pub const BYTES_PER_NODE: u64 = 1024;
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
    /// Generations of its allocations (`generation.rs`), read by lookups.
    gens: Arc<Generations>,
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
            gens: Arc::new(Generations::new(nodes)),
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
        self.gens.freed(handle.offset);
    }

    /// The generation table of this allocator's allocations.
    pub fn generations(&self) -> Arc<Generations> {
        self.gens.clone()
    }

    /// Makes this allocator use `gens` (its segment's table, when the allocator
    /// replaced the one the table was made for).
    pub fn use_generations(&mut self, gens: Arc<Generations>) {
        self.gens = gens;
    }

    /// How many units an allocation of `bytes` takes (None: more than a `u32`).
    pub fn units_of(&self, bytes: u64) -> Option<u32> {
        self.units_for(bytes)
    }

    /// Reproduces a known layout on a FRESH allocator (a new leader rebuilding the
    /// previous one's segments): every range `(offset, units)` is allocated at
    /// exactly that offset. The crate has no allocate-at-offset call, but a fresh
    /// allocator is one free block that every allocation carves from its start, so
    /// the ranges are allocated in offset order with fillers for the gaps, and the
    /// fillers are freed at the end.
    ///
    /// Per range (in input order): `Some(handle)` when it was reproduced as one
    /// allocation; `None` when it could not be (it overlaps an earlier range, or the
    /// bins could not carve exactly that size from the end of the segment). A `None`
    /// range's space is still reserved for good (leaked, never handed out), so an
    /// unknown writer or reader of those bytes can never meet a new allocation; the
    /// caller drops the replica. Errors (the layout does not fit, nodes ran out) leave
    /// the allocator unusable: the caller must use a fresh one.
    pub fn reproduce(&mut self, ranges: &[(u32, u32)]) -> Result<Vec<Option<AllocHandle>>, String> {
        let total = self.inner.storage_report().total_free_space;
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_by_key(|&i| ranges[i]);
        let mut out = vec![None; ranges.len()];
        let mut fillers = Vec::new();
        let mut cursor: u32 = 0;
        for i in order {
            let (off, units) = ranges[i];
            let end = off
                .checked_add(units.max(1))
                .filter(|&e| e <= total)
                .ok_or_else(|| format!("range at unit {off} (+{units}) is outside the segment"))?;
            if off < cursor {
                // Overlaps an earlier range: reserve whatever sticks out.
                if end > cursor {
                    let n = end - cursor;
                    self.cover(&mut cursor, n)?;
                    self.used += u64::from(n) << self.unit_shift;
                }
                continue;
            }
            if off > cursor {
                let gap = off - cursor;
                fillers.extend(self.cover(&mut cursor, gap)?);
            }
            let n = end - off;
            match self.inner.allocate(n) {
                Some(h) if h.offset == off => {
                    cursor = end;
                    out[i] = Some(h);
                }
                Some(h) => {
                    return Err(format!(
                        "allocator placed unit {} where {off} was expected",
                        h.offset
                    ))
                }
                None => {
                    self.cover(&mut cursor, n)?;
                }
            }
            self.used += u64::from(n) << self.unit_shift;
        }
        for f in fillers {
            self.inner.free(f);
        }
        Ok(out)
    }

    /// Allocates `n` units starting exactly at `cursor` in as many pieces as the bins
    /// need (the free tail's bin may be smaller than `n` rounded up).
    fn cover(&mut self, cursor: &mut u32, mut n: u32) -> Result<Vec<AllocHandle>, String> {
        let mut pieces = Vec::new();
        while n > 0 {
            let largest = self.inner.storage_report().largest_free_region;
            let piece = n.min(largest);
            let h = (piece > 0)
                .then(|| self.inner.allocate(piece))
                .flatten()
                .ok_or_else(|| format!("cannot reserve {n} units at unit {cursor}"))?;
            if h.offset != *cursor {
                return Err(format!(
                    "allocator placed unit {} where {cursor} was expected",
                    h.offset
                ));
            }
            *cursor += piece;
            n -= piece;
            pieces.push(h);
        }
        Ok(pieces)
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

    /// Live ranges as (start, end) in units, sorted; panics on an overlap.
    fn check_disjoint(mut ranges: Vec<(u64, u64)>, cap_units: u64) {
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlap: {:?} {:?}", w[0], w[1]);
        }
        if let Some(last) = ranges.last() {
            assert!(last.1 <= cap_units, "outside: {last:?}");
        }
    }

    #[test]
    fn reproduced_layouts_match_and_later_allocations_never_overlap_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..40 {
            let size = [1u64 << 20, 3 << 20, (1 << 20) + 4096 * 7][round % 3];
            // A random layout made by a real allocator's history.
            let mut a = SegmentAllocator::new(size).unwrap();
            let mut live: Vec<(AllocHandle, u64)> = Vec::new();
            for _ in 0..rng.random_range(10..600) {
                if rng.random_bool(0.65) {
                    let n = rng.random_range(1..40_000u64);
                    if let Some(h) = a.allocate(n) {
                        live.push((h, n));
                    }
                } else if !live.is_empty() {
                    let (h, n) = live.swap_remove(rng.random_range(0..live.len()));
                    a.free(h, n);
                }
            }
            let ranges: Vec<(u32, u32)> = live
                .iter()
                .map(|&(h, n)| (h.offset, a.units_of(n).unwrap()))
                .collect();
            let mut b = SegmentAllocator::new(size).unwrap();
            let got = b.reproduce(&ranges).unwrap();
            let mut held: Vec<(u64, u64)> = Vec::new();
            for (i, h) in got.iter().enumerate() {
                let (off, units) = ranges[i];
                if let Some(h) = h {
                    assert_eq!(h.offset, off, "round {round}: reproduced elsewhere");
                }
                held.push((u64::from(off), u64::from(off) + u64::from(units)));
            }
            let reproduced = got.iter().filter(|h| h.is_some()).count();
            assert!(
                reproduced + 2 >= ranges.len(),
                "round {round}: only {reproduced} of {} reproduced",
                ranges.len()
            );
            assert!(b.used() >= a.used());
            // Allocate and free more: nothing new overlaps the reproduced ranges.
            let mut fresh: Vec<(AllocHandle, u64)> = Vec::new();
            for _ in 0..400 {
                if rng.random_bool(0.7) {
                    let n = rng.random_range(1..30_000u64);
                    if let Some(h) = b.allocate(n) {
                        fresh.push((h, n));
                    }
                } else if !fresh.is_empty() {
                    let (h, n) = fresh.swap_remove(rng.random_range(0..fresh.len()));
                    b.free(h, n);
                }
                let mut all = held.clone();
                all.extend(fresh.iter().map(|&(h, n)| {
                    let o = u64::from(h.offset);
                    (o, o + u64::from(b.units_of(n).unwrap()))
                }));
                check_disjoint(all, b.capacity() / b.unit());
            }
            // Freeing a reproduced handle gives its space back.
            for (i, h) in got.into_iter().enumerate() {
                if let Some(h) = h {
                    b.free(h, u64::from(ranges[i].1) * b.unit());
                }
            }
        }
    }

    #[test]
    fn reproduce_reserves_overlaps_and_rejects_ranges_outside() {
        let mut a = SegmentAllocator::new(1 << 20).unwrap();
        let got = a.reproduce(&[(0, 10), (5, 10), (100, 1)]).unwrap();
        assert!(got[0].is_some() && got[1].is_none() && got[2].is_some());
        // Units 10..15 (sticking out of the overlap) stay reserved.
        let mut all = vec![(0, 15), (100, 101)];
        while let Some(h) = a.allocate(64) {
            all.push((u64::from(h.offset), u64::from(h.offset) + 1));
        }
        check_disjoint(all, (1 << 20) / 64);
        let mut b = SegmentAllocator::new(1 << 20).unwrap();
        let err = b
            .reproduce(&[(16_380, 10)])
            .err()
            .expect("outside the segment");
        assert!(err.contains("outside"), "{err}");
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

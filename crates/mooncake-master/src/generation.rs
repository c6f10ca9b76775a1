//! Allocation generations: a number the master reports with every replica it names in a
//! lookup, so that a client holding an earlier answer can tell whether the range it
//! remembers still holds the same allocation (a client-side location cache reads from
//! it speculatively and keeps the bytes only when the next lookup reports the same
//! segment, offset, size and generation).
//!
//! The property clients rely on: **if two lookups report the same generation for the
//! same segment and offset, the allocation there was not freed in between** (so it held
//! the same complete object all the time). How it is kept without any memory per object
//! (the index budget is ~200 B per object):
//!
//! - every segment allocator has a table of slots (one per allocator node, a power of
//!   two) and a creation stamp; an offset maps to a slot by a multiplicative hash;
//! - freeing an allocation writes a fresh stamp into its offset's slot;
//! - the generation of an allocation at offset `o` is `max(slot(o), creation stamp)`.
//!
//! Stamps come from one counter per master process that only grows, started from the
//! wall clock in nanoseconds (a stamp is drawn at most once per free, far less often
//! than once a nanosecond, so a later master process starts above every stamp an
//! earlier one handed out as long as the clock does not go back). A freed allocation's
//! slot therefore reports a value never reported before; a new allocator (a mount, an
//! HA takeover rebuilding the layout) starts above every earlier value. Several
//! offsets share a slot: freeing one changes the others' generation too, which costs
//! such a client one extra read, never wrong bytes. The table costs 8 bytes per
//! allocator node (a quarter of the allocator's own node table).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A stamp larger than every stamp drawn before in this process (and, through the
/// wall clock, by earlier master processes).
pub fn next_stamp() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        AtomicU64::new(nanos.max(1))
    })
    .fetch_add(1, Ordering::Relaxed)
}

/// One allocator's generation table (shared with its segment, which reads it without
/// the allocator's lock).
#[derive(Debug)]
pub struct Generations {
    /// Every generation is at least this (a new or renewed table).
    created: AtomicU64,
    shift: u32,
    slots: Box<[AtomicU64]>,
}

impl Generations {
    /// A table of at least `slots` slots (rounded up to a power of two).
    pub fn new(slots: u32) -> Self {
        let n = slots.max(1).next_power_of_two();
        Self {
            created: AtomicU64::new(next_stamp()),
            shift: 64 - n.trailing_zeros(),
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, offset_units: u32) -> &AtomicU64 {
        // Fibonacci hashing: allocations of one size sit at multiples of it, which a
        // plain modulo would pile into a few slots.
        let h = u64::from(offset_units).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let i = if self.shift >= 64 { 0 } else { h >> self.shift };
        &self.slots[i as usize]
    }

    /// The generation of the live allocation at `offset_units`.
    pub fn of(&self, offset_units: u32) -> u64 {
        self.slot(offset_units)
            .load(Ordering::Acquire)
            .max(self.created.load(Ordering::Acquire))
    }

    /// Every allocation's generation changes for good (the allocator behind the table
    /// was replaced by an empty one).
    pub fn renew(&self) {
        self.created.store(next_stamp(), Ordering::Release);
    }

    /// The allocation at `offset_units` was freed: its generation changes for good.
    pub fn freed(&self, offset_units: u32) {
        self.slot(offset_units)
            .store(next_stamp(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_grow() {
        let a = next_stamp();
        let b = next_stamp();
        assert!(b > a);
    }

    #[test]
    fn a_free_changes_the_generation_and_nothing_else_does() {
        let g = Generations::new(1000);
        assert_eq!(g.slots.len(), 1024);
        let before = g.of(64);
        assert_eq!(g.of(64), before, "reading does not change it");
        g.freed(64);
        let after = g.of(64);
        assert!(after > before);
        g.freed(64);
        assert!(
            g.of(64) > after,
            "every free gives a value never seen before"
        );
    }

    #[test]
    fn a_new_table_starts_above_every_earlier_generation() {
        let old = Generations::new(16);
        old.freed(3);
        let seen = (0..64).map(|o| old.of(o)).max().unwrap();
        let new = Generations::new(16);
        assert!((0..64).all(|o| new.of(o) > seen));
    }

    #[test]
    fn renewing_changes_every_generation() {
        let g = Generations::new(8);
        let before: Vec<u64> = (0..32).map(|o| g.of(o)).collect();
        g.renew();
        assert!((0..32).all(|o| g.of(o) > before[o as usize]));
    }

    #[test]
    fn one_slot_tables_work() {
        let g = Generations::new(1);
        let a = g.of(7);
        g.freed(9);
        assert!(g.of(7) > a, "a shared slot changes for every offset in it");
    }
}

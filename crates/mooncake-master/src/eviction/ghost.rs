//! The memory of recently evicted keys a policy may ask for: a direct-mapped table of
//! 32-bit fingerprints of key hashes, [`SLOTS_PER_OBJECT`] slots per object the pool
//! holds, so 16 B per object. An eviction writes its key's slot; a put of a new key
//! whose slot holds its fingerprint was evicted not long ago (and clears the slot). A
//! newer eviction that lands on the same slot overwrites the older one, so the table
//! forgets oldest-first on average, like the FIFO ghost queue of S3-FIFO, at a fixed
//! size and without a lock on the put path (the table is only replaced, under a
//! write lock, when a round finds the pool holds many more objects than it was sized
//! for). A false "remembered" needs two keys to share 32 bits of hash and a slot.

use parking_lot::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ghost slots per object in the pool: the memory reaches back about this many pool
/// turnovers (the conversation trace's turns come back after two to four).
pub const SLOTS_PER_OBJECT: u64 = 4;
/// The smallest table (slots).
const MIN_SLOTS: usize = 1024;

#[derive(Debug)]
pub struct Ghost {
    slots: RwLock<Box<[AtomicU32]>>,
}

impl Default for Ghost {
    fn default() -> Self {
        Self {
            slots: RwLock::new(table(MIN_SLOTS)),
        }
    }
}

fn table(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

/// (slot, fingerprint) of a key hash in a table of `n` slots. The slot comes from the
/// low bits (multiply-shift onto `n`), the fingerprint from the high ones; 0 means empty.
fn place(hash: u64, n: usize) -> (usize, u32) {
    let slot = ((u128::from(hash as u32) * n as u128) >> 32) as usize;
    (slot, ((hash >> 32) as u32) | 1)
}

impl Ghost {
    /// Remembers an evicted key.
    pub fn remember(&self, hash: u64) {
        let t = self.slots.read();
        let (i, fp) = place(hash, t.len());
        t[i].store(fp, Ordering::Relaxed);
    }

    /// Whether the key was evicted not long ago; forgets it if so.
    pub fn recall(&self, hash: u64) -> bool {
        let t = self.slots.read();
        let (i, fp) = place(hash, t.len());
        t[i].load(Ordering::Relaxed) == fp
            && t[i]
                .compare_exchange(fp, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Sizes the table for a pool of `objects` objects: grows (starting empty) when the
    /// pool holds half again as many objects as it was sized for. Never shrinks.
    pub fn fit(&self, objects: u64) {
        let want = usize::try_from(objects.saturating_mul(SLOTS_PER_OBJECT))
            .unwrap_or(usize::MAX / 2)
            .max(MIN_SLOTS);
        if want <= self.slots.read().len() * 3 / 2 {
            return;
        }
        let mut t = self.slots.write();
        if want > t.len() * 3 / 2 {
            *t = table(want);
        }
    }

    /// Bytes the table takes.
    pub fn bytes(&self) -> usize {
        self.slots.read().len() * std::mem::size_of::<AtomicU32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evicted_key_is_recalled_once_and_others_are_not() {
        let g = Ghost::default();
        let h = 0x1234_5678_9abc_def0;
        assert!(!g.recall(h));
        g.remember(h);
        assert!(!g.recall(h ^ (1 << 40)), "same slot, other fingerprint");
        assert!(g.recall(h));
        assert!(!g.recall(h), "forgotten once recalled");
    }

    #[test]
    fn the_table_grows_with_the_pool_and_keeps_working() {
        let g = Ghost::default();
        g.fit(10);
        assert_eq!(g.bytes(), MIN_SLOTS * 4);
        g.fit(100_000);
        assert_eq!(g.bytes(), 400_000 * 4);
        g.fit(110_000);
        assert_eq!(g.bytes(), 400_000 * 4, "not for a small change");
        // Most of many remembered keys are recalled (collisions overwrite some).
        let hashes: Vec<u64> = (0..100_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        hashes.iter().for_each(|&h| g.remember(h));
        let back = hashes.iter().filter(|&&h| g.recall(h)).count();
        assert!(back > 75_000, "{back}");
    }
}

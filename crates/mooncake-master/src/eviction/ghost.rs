//! The memory of recently evicted keys a policy may ask for (S3-FIFO's ghost queue),
//! one per index shard and changed only under the shard's lock, so the put path pays
//! no lock of its own. It maps 32-bit fingerprints of evicted keys' hashes to the
//! master-wide eviction count at their eviction; a put of a new key whose fingerprint
//! is there, evicted within the last `window` evictions (the policy's reach, a few
//! pools' worth), was evicted not long ago.
//!
//! Why one window for the whole master: a prefix's blocks are evicted together but
//! hash to different shards. A memory that forgets by anything else (each shard's own
//! capacity, slot collisions) remembers scattered blocks of a chain, which are worth
//! nothing without their predecessors: measured, that loses most of the gain
//! (docs/benchmarks/eviction.md).
//!
//! Cost: one map entry (8 B, at a load of 7/16..7/8, plus a control byte) per
//! remembered key, and entries older than the window are dropped whenever the map has
//! grown by a quarter since the last sweep: about 14 B per remembered key.

use crate::index::FastState;
use hashbrown::HashMap;

/// The fewest entries before a sweep is considered.
const MIN_SWEEP: usize = 64;

#[derive(Debug, Default)]
pub struct Ghost {
    /// Fingerprint -> eviction count (low 32 bits) when it was evicted.
    live: HashMap<u32, u32, FastState>,
    /// Entries after the last sweep.
    swept: usize,
}

fn fingerprint(hash: u64) -> u32 {
    hash as u32
}

/// Whether an entry stamped `then` is within `window` evictions of `now`.
fn within(now: u64, then: u32, window: u64) -> bool {
    u64::from((now as u32).wrapping_sub(then)) <= window
}

impl Ghost {
    /// Remembers a key evicted as the `now`-th eviction; drops what fell out of the
    /// window when the map grew by a quarter since the last sweep.
    pub fn remember(&mut self, hash: u64, now: u64, window: u64) {
        self.live.insert(fingerprint(hash), now as u32);
        if self.live.len() > (self.swept + self.swept / 4).max(MIN_SWEEP) {
            self.live.retain(|_, &mut then| within(now, then, window));
            self.swept = self.live.len();
        }
    }

    /// Whether the key was evicted within the last `window` evictions (`now` is the
    /// current eviction count); forgets it either way.
    pub fn recall(&mut self, hash: u64, now: u64, window: u64) -> bool {
        self.live
            .remove(&fingerprint(hash))
            .is_some_and(|then| within(now, then, window))
    }

    /// Keys remembered (some may be past the window until the next sweep).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evicted_key_is_recalled_once_and_others_are_not() {
        let mut g = Ghost::default();
        let h = 0x1234_5678_9abc_def0;
        assert!(!g.recall(h, 1, 100));
        g.remember(h, 1, 100);
        assert!(!g.recall(h ^ 1, 2, 100), "another key");
        assert!(g.recall(h, 2, 100));
        assert!(!g.recall(h, 2, 100), "forgotten once recalled");
    }

    /// Only the last `window` evictions count, and older entries are swept away.
    #[test]
    fn it_remembers_the_window_and_sweeps_the_rest() {
        let mut g = Ghost::default();
        for h in 0..10_000u64 {
            g.remember(h, h, 1_000);
        }
        assert!(g.len() <= 1_300, "{}", g.len());
        let now = 9_999;
        assert!(
            (0..8_999).all(|h| !g.recall(h, now, 1_000)),
            "older forgotten"
        );
        assert!(
            (8_999..10_000).all(|h| g.recall(h, now, 1_000)),
            "the window kept"
        );
        // The count wraps around 32 bits without losing the order.
        let base = (1u64 << 32) - 5;
        g.remember(7, base, 100);
        assert!(g.recall(7, base + 50, 100));
    }
}

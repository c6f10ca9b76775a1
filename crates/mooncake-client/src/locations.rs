//! The location cache behind speculative reads: key -> the replica a lookup named
//! (segment, offset, size and its allocation generation), bounded by entries and
//! evicted in CLOCK order (a hit sets the entry's bit; the hand clears bits and takes
//! the first entry without one).
//!
//! Lookups fill it, and so do writes that ended well (the write start named the
//! allocations with their generations), so the first get after a put is speculative
//! too.
//!
//! Entries are only hints. A get of a cached key reads from the remembered replica
//! while its lookup is in flight and keeps those bytes only when the lookup names the
//! same allocation (`read.rs`); everything else (moved, replaced, removed, evicted,
//! errors) costs one more read, never wrong bytes.

use mooncake_proto::Replica;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where a key's object was, as one lookup named it.
#[derive(Debug)]
pub(crate) struct Remembered {
    /// The replica the object is read from (it carries a generation).
    pub replica: Replica,
    pub size: u64,
}

struct Slot {
    key: String,
    loc: Arc<Remembered>,
    referenced: bool,
}

#[derive(Default)]
struct Clock {
    map: HashMap<String, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

/// How the cache did, per key of a whole-object get: its speculative read was kept
/// (`hits`: one round trip), thrown away because the lookup named another allocation
/// or none (`stale`: the read is done again, so two round trips), or there was nothing
/// usable to read speculatively (`misses`: the read waits for the lookup, two round
/// trips). `entries`: locations remembered now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocationCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub entries: u64,
}

pub(crate) struct LocationCache {
    cap: usize,
    inner: Mutex<Clock>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

/// Whether two wire replicas are the same allocation: same segment (its whole
/// descriptor: name, address, endpoint, memory generation), offset, size and
/// allocation generation. A replica without a generation matches nothing.
pub(crate) fn same_allocation(a: &Replica, b: &Replica) -> bool {
    a.generation.is_some()
        && a.generation == b.generation
        && a.offset == b.offset
        && a.size == b.size
        && a.segment.is_some()
        && a.segment == b.segment
}

impl LocationCache {
    /// A cache of at most `cap` entries (0: off).
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::new(Clock::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// The remembered location of `key`, if any (marks it used).
    pub fn get(&self, key: &str) -> Option<Arc<Remembered>> {
        if self.cap == 0 {
            return None;
        }
        let mut c = self.inner.lock();
        let i = *c.map.get(key)?;
        let slot = &mut c.slots[i];
        slot.referenced = true;
        Some(slot.loc.clone())
    }

    /// Remembers that `key`'s object of `size` bytes is at `replica` (ignored unless
    /// the replica has a generation).
    pub fn put(&self, key: &str, replica: &Replica, size: u64) {
        if self.cap == 0 || replica.generation.is_none() || replica.segment.is_none() {
            return;
        }
        let mut c = self.inner.lock();
        if let Some(&i) = c.map.get(key) {
            let slot = &mut c.slots[i];
            // A fresh grant (each answer to a tenant carries one, good for a while)
            // replaces the remembered one, or speculative reads would present an
            // expired grant or one signed before the segment was mounted again.
            if !same_allocation(&slot.loc.replica, replica)
                || slot.loc.size != size
                || slot.loc.replica.grant != replica.grant
            {
                slot.loc = Arc::new(Remembered {
                    replica: replica.clone(),
                    size,
                });
            }
            return;
        }
        let loc = Arc::new(Remembered {
            replica: replica.clone(),
            size,
        });
        let slot = Slot {
            key: key.to_string(),
            loc,
            referenced: false,
        };
        if c.slots.len() < self.cap {
            let i = c.slots.len();
            c.slots.push(slot);
            c.map.insert(key.to_string(), i);
            return;
        }
        // Full: the hand clears bits until it finds an entry without one.
        let n = c.slots.len();
        let victim = loop {
            let h = c.hand % n;
            c.hand = (h + 1) % n;
            if c.slots[h].referenced {
                c.slots[h].referenced = false;
            } else {
                break h;
            }
        };
        let old = std::mem::replace(&mut c.slots[victim], slot);
        c.map.remove(&old.key);
        c.map.insert(key.to_string(), victim);
    }

    /// Forgets `key` (its object was removed, replaced, or could not be found).
    pub fn forget(&self, key: &str) {
        if self.cap == 0 {
            return;
        }
        let mut c = self.inner.lock();
        let Some(i) = c.map.remove(key) else {
            return;
        };
        c.slots.swap_remove(i);
        if i < c.slots.len() {
            let moved = c.slots[i].key.clone();
            c.map.insert(moved, i);
        }
    }

    /// Forgets each of `keys`.
    pub fn forget_all(&self, keys: &[String]) {
        if self.cap == 0 {
            return;
        }
        for k in keys {
            self.forget(k);
        }
    }

    /// Forgets everything (a remove of many keys).
    pub fn clear(&self) {
        let mut c = self.inner.lock();
        c.map.clear();
        c.slots.clear();
        c.hand = 0;
    }

    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` keys were looked up with nothing remembered to read meanwhile.
    pub fn missed(&self, n: usize) {
        if n > 0 && self.cap > 0 {
            self.misses.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub fn stale(&self) {
        self.stale.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> LocationCacheStats {
        LocationCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            entries: self.inner.lock().slots.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_proto::SegmentDesc;

    fn rep(off: u64, generation: Option<u64>) -> Replica {
        Replica {
            segment: Some(SegmentDesc {
                name: "s:1".into(),
                base: 4096,
                ..Default::default()
            }),
            offset: off,
            size: 10,
            segment_index: None,
            generation,
            grant: None,
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let c = LocationCache::new(8);
        for i in 0..100 {
            c.put(&format!("k{i}"), &rep(i, Some(1)), 10);
            assert!(c.stats().entries <= 8);
        }
        assert_eq!(c.stats().entries, 8);
        // The newest entries are there; the index and the slots agree.
        assert!(c.get("k99").is_some());
        let inner = c.inner.lock();
        assert_eq!(inner.map.len(), inner.slots.len());
        for (k, &i) in &inner.map {
            assert_eq!(&inner.slots[i].key, k);
        }
    }

    #[test]
    fn recently_used_entries_survive_a_sweep() {
        let c = LocationCache::new(4);
        for i in 0..4 {
            c.put(&format!("k{i}"), &rep(i, Some(1)), 10);
        }
        assert!(c.get("k0").is_some());
        c.put("new", &rep(9, Some(1)), 10);
        assert!(c.get("k0").is_some(), "a used entry gets a second chance");
        assert!(c.get("k1").is_none(), "the first unused one goes");
        assert!(c.get("new").is_some());
    }

    #[test]
    fn forget_keeps_index_and_slots_in_step() {
        let c = LocationCache::new(4);
        for i in 0..4 {
            c.put(&format!("k{i}"), &rep(i, Some(1)), 10);
        }
        c.forget("k1");
        c.forget("missing");
        assert!(c.get("k1").is_none());
        for k in ["k0", "k2", "k3"] {
            assert!(c.get(k).is_some(), "{k}");
        }
        assert_eq!(c.get("k3").unwrap().replica.offset, 3);
        c.clear();
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn replicas_without_a_generation_are_not_remembered_and_match_nothing() {
        let c = LocationCache::new(4);
        c.put("k", &rep(0, None), 10);
        assert!(c.get("k").is_none());
        assert!(!same_allocation(&rep(0, None), &rep(0, None)));
        assert!(same_allocation(&rep(0, Some(5)), &rep(0, Some(5))));
        assert!(!same_allocation(&rep(0, Some(5)), &rep(0, Some(6))));
        assert!(!same_allocation(&rep(0, Some(5)), &rep(64, Some(5))));
        let mut other = rep(0, Some(5));
        other.segment.as_mut().unwrap().name = "t:1".into();
        assert!(!same_allocation(&rep(0, Some(5)), &other));
        // A new location for a key replaces the old one.
        c.put("k", &rep(0, Some(5)), 10);
        c.put("k", &rep(64, Some(7)), 10);
        assert_eq!(c.get("k").unwrap().replica.offset, 64);
        assert_eq!(c.stats().entries, 1);
    }

    #[test]
    fn a_zero_bound_turns_the_cache_off() {
        let c = LocationCache::new(0);
        assert!(!c.enabled());
        c.put("k", &rep(0, Some(1)), 10);
        assert!(c.get("k").is_none());
    }
}

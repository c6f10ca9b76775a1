//! The object index: keys to object metadata, split over many shards, each behind
//! its own mutex, so that concurrent RPCs on different keys rarely meet. No operation
//! holds two shard locks at once; whole-index walks (eviction, unmount, regex removal)
//! take one shard at a time.

mod hash;
pub mod limit;
pub mod memory;
mod object;
mod replicas;
pub mod usage;

pub use hash::{FastHasher, FastState};
pub use limit::{IndexLimit, IndexMemoryLimit};

pub use object::{Object, Pending, Replica, SoftPinChange};
pub use replicas::Replicas;
pub use usage::TenantUsage;

use crate::ha::replication::ReplLog;
use hashbrown::hash_map::RawEntryMut;
use hashbrown::{Equivalent, HashMap};
use parking_lot::{Mutex, MutexGuard};
use std::hash::{BuildHasher, Hash};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Shard count: a power of two well above the core count, so lock collisions on a
/// hot path are rare while whole-index walks stay cheap.
pub const SHARDS: usize = 64;

/// Objects are boxed so that a bucket is 24 bytes instead of 72: hash tables run at
/// 44-87% load, so every empty bucket of the unboxed layout wasted 72 bytes, while the
/// box costs one 56-byte heap block per object (see docs/index.md for the sums).
pub type ShardMap = HashMap<Box<str>, Box<Object>, FastState>;

/// One shard: the map (read through `Deref`), plus the replication log that every
/// change reports to while the shard is locked, so that the log's order matches the
/// order of changes per key (docs/ha.md). With no standby attached, reporting is one
/// relaxed atomic load.
///
/// Changes go through the shard, never around it: `insert` and `remove` report
/// themselves, an [`Edit`] reports the object's state when it is dropped, and a walk
/// ([`Shard::edit_each`]) reports what its closure says it changed. The only other
/// mutable access, [`Shard::touch`], is for what the log does not carry (leases, read
/// guards, access recency: a new term restarts them).
pub struct Shard {
    map: ShardMap,
    log: Arc<ReplLog>,
    /// The shard's recently evicted keys, for policies that remember them.
    ghost: crate::eviction::ghost::Ghost,
    /// What each tenant's objects hold: every change through the shard updates it,
    /// so quotas and metrics never walk the index.
    usage: Arc<TenantUsage>,
}

impl Deref for Shard {
    type Target = ShardMap;

    fn deref(&self) -> &ShardMap {
        &self.map
    }
}

/// One object borrowed for a change the replication log carries: its state is
/// reported when the guard is dropped, so no change can forget to say so.
pub struct Edit<'a> {
    key: &'a str,
    obj: &'a mut Object,
    log: &'a ReplLog,
    usage: &'a TenantUsage,
    /// The object's charge when the edit began (`usage::charge`).
    before: usage::Charge,
}

impl Deref for Edit<'_> {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.obj
    }
}

impl DerefMut for Edit<'_> {
    fn deref_mut(&mut self) -> &mut Object {
        self.obj
    }
}

impl Edit<'_> {
    /// Ends the edit without a report: the caller changed nothing the log carries
    /// (a refused request found the object as it should stay).
    pub fn unchanged(self) {
        std::mem::forget(self);
    }
}

impl Drop for Edit<'_> {
    fn drop(&mut self) {
        self.usage
            .change(self.key, self.before, usage::charge(self.obj));
        if self.log.is_active() {
            self.log.object(self.key, Some(self.obj));
        }
    }
}

/// What a walk's closure did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walked {
    /// Nothing the log carries.
    Untouched,
    /// Changed; the object stays.
    Changed,
    /// Take it out of the index.
    Remove,
}

impl Shard {
    /// Inserts (or replaces) an object, reporting it to the replication log.
    pub fn insert(&mut self, key: Box<str>, o: Object) -> Option<Object> {
        self.log.object(&key, Some(&o));
        let new = usage::charge(&o);
        let old = self.map.insert(key.clone(), Box::new(o)).map(|b| *b);
        let before = old.as_ref().map(usage::charge).unwrap_or_default();
        self.usage.change(&key, before, new);
        old
    }

    /// Removes an object, reporting its removal to the replication log.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<Object>
    where
        Q: Hash + Equivalent<Box<str>> + ?Sized,
    {
        let (k, o) = self.map.remove_entry(key)?;
        self.log.gone(&k);
        self.usage.change(&k, usage::charge(&o), Default::default());
        Some(*o)
    }

    /// `key`'s object for a change the replication log carries (reported when the
    /// guard drops).
    pub fn edit<'a>(&'a mut self, key: &'a str) -> Option<Edit<'a>> {
        let obj = &mut **self.map.get_mut(key)?;
        Some(Edit {
            key,
            before: usage::charge(obj),
            obj,
            log: &self.log,
            usage: &self.usage,
        })
    }

    /// [`Shard::edit`] with the key's hash already computed ([`Index::hash`]).
    #[inline]
    pub fn edit_hashed<'a>(&'a mut self, key: &'a str, hash: u64) -> Option<Edit<'a>> {
        let Shard {
            map, log, usage, ..
        } = self;
        let obj = match map.raw_entry_mut().from_key_hashed_nocheck(hash, key) {
            RawEntryMut::Occupied(e) => &mut **e.into_mut(),
            RawEntryMut::Vacant(_) => return None,
        };
        Some(Edit {
            key,
            before: usage::charge(obj),
            obj,
            log,
            usage,
        })
    }

    /// `key`'s object for what the log does not carry: leases, read guards, access
    /// recency.
    #[inline]
    pub fn touch(&mut self, key: &str) -> Option<&mut Object> {
        self.map.get_mut(key).map(|b| &mut **b)
    }

    /// [`Shard::touch`] with the key's hash already computed ([`Index::hash`]): a batch
    /// hashes each key once, for the shard and for the table.
    #[inline]
    pub fn touch_hashed(&mut self, key: &str, hash: u64) -> Option<&mut Object> {
        match self.map.raw_entry_mut().from_key_hashed_nocheck(hash, key) {
            RawEntryMut::Occupied(e) => Some(&mut **e.into_mut()),
            RawEntryMut::Vacant(_) => None,
        }
    }

    /// Runs `f` on every object; reports the ones it changed and removes (reporting
    /// that too) the ones it asks to; returns the removed objects.
    pub fn edit_each(&mut self, mut f: impl FnMut(&str, &mut Object) -> Walked) -> Vec<Object> {
        let mut doomed: Vec<Box<str>> = Vec::new();
        let active = self.log.is_active();
        for (k, o) in self.map.iter_mut() {
            let before = usage::charge(o);
            match f(k, o) {
                Walked::Untouched => {}
                Walked::Changed => {
                    self.usage.change(k, before, usage::charge(o));
                    if active {
                        self.log.object(k, Some(o));
                    }
                }
                Walked::Remove => {
                    // What the closure changed first; the removal takes the rest.
                    self.usage.change(k, before, usage::charge(o));
                    doomed.push(k.clone())
                }
            }
        }
        doomed.iter().filter_map(|k| self.remove(&**k)).collect()
    }

    /// The shard's memory of recently evicted keys (eviction's; not replicated).
    pub fn ghost(&mut self) -> &mut crate::eviction::ghost::Ghost {
        &mut self.ghost
    }

    /// Removes a key whose hash is known, reporting its removal to the replication log.
    pub fn remove_hashed(&mut self, key: &str, hash: u64) -> Option<Object> {
        match self.map.raw_entry_mut().from_key_hashed_nocheck(hash, key) {
            RawEntryMut::Occupied(e) => {
                let (k, o) = e.remove_entry();
                self.log.gone(&k);
                self.usage.change(&k, usage::charge(&o), Default::default());
                Some(*o)
            }
            RawEntryMut::Vacant(_) => None,
        }
    }
}

/// The sharded key -> object map.
pub struct Index {
    shards: Box<[Mutex<Shard>]>,
    hasher: FastState,
    log: Arc<ReplLog>,
    usage: Arc<TenantUsage>,
}

impl Default for Index {
    fn default() -> Self {
        let hasher = FastState::default();
        let log = Arc::new(ReplLog::default());
        let usage = Arc::new(TenantUsage::default());
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::with_hasher(hasher),
                        log: log.clone(),
                        ghost: Default::default(),
                        usage: usage.clone(),
                    })
                })
                .collect(),
            hasher,
            log,
            usage,
        }
    }
}

/// A batch's keys grouped by shard: `order` holds the keys' positions in the request,
/// shard 0's first, then shard 1's, ...; `ends[s]` is where shard `s`'s run ends.
/// Within a shard, positions keep the request's order (duplicates meet in order).
pub struct ByShard {
    pub hashes: Vec<u64>,
    pub order: Vec<u32>,
    pub ends: [u32; SHARDS],
}

impl ByShard {
    /// (shard, positions of its keys) for every shard that has keys.
    pub fn runs(&self) -> impl Iterator<Item = (usize, &[u32])> {
        (0..SHARDS).filter_map(move |s| {
            let start = if s == 0 { 0 } else { self.ends[s - 1] } as usize;
            let end = self.ends[s] as usize;
            (end > start).then(|| (s, &self.order[start..end]))
        })
    }
}

impl Index {
    /// The hash of `key` that picks its shard and its bucket inside the shard.
    #[inline]
    pub fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard a hash belongs to: bits the shard maps do not use for buckets (see
    /// `hash`).
    #[inline]
    pub fn shard_of_hash(hash: u64) -> usize {
        ((hash >> 32) as usize) % SHARDS
    }

    fn shard_of(&self, key: &str) -> usize {
        Self::shard_of_hash(self.hash(key))
    }

    /// Hashes every key once and groups the positions by shard (a counting sort), so
    /// that a batch takes each shard's lock once.
    pub fn group<K: AsRef<str>>(&self, keys: &[K]) -> ByShard {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(k.as_ref())).collect();
        let mut ends = [0u32; SHARDS];
        for &h in &hashes {
            ends[Self::shard_of_hash(h)] += 1;
        }
        let mut next = [0u32; SHARDS];
        let mut sum = 0;
        for s in 0..SHARDS {
            next[s] = sum;
            sum += ends[s];
            ends[s] = sum;
        }
        let mut order = vec![0u32; hashes.len()];
        for (i, &h) in hashes.iter().enumerate() {
            let s = Self::shard_of_hash(h);
            order[next[s] as usize] = i as u32;
            next[s] += 1;
        }
        ByShard {
            hashes,
            order,
            ends,
        }
    }

    /// The replication log every shard reports its changes to.
    pub fn log(&self) -> &Arc<ReplLog> {
        &self.log
    }

    /// What each tenant's objects hold (kept current by every change).
    pub fn usage(&self) -> &Arc<TenantUsage> {
        &self.usage
    }

    /// Locks the shard that holds `key`.
    pub fn lock(&self, key: &str) -> MutexGuard<'_, Shard> {
        self.shards[self.shard_of(key)].lock()
    }

    /// Locks shard `i` (for walks: `0..SHARDS`).
    pub fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i].lock()
    }

    /// Total number of objects (one shard locked at a time, so approximate under load).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::EvictState;

    fn pending(put_id: u64) -> Box<Pending> {
        Box::new(Pending {
            put_id,
            client: 0,
            started_ms: 1,
            size: 10,
            replicas: Replicas::None,
            hard_pin: false,
            soft_pin: SoftPinChange::Preserve,
        })
    }

    /// The sequence numbers the log recorded since the last look.
    fn recorded(log: &ReplLog, f: &crate::ha::replication::log::Follower) -> Vec<u64> {
        log.take(f).0.iter().map(|op| op.seq).collect()
    }

    #[test]
    fn every_change_through_the_shard_reaches_the_log_and_nothing_else_does() {
        let index = Index::default();
        let log = index.log().clone();
        let f = log.attach("standby");
        let mut shard = index.lock("a");
        shard.insert(
            "a".into(),
            Object::in_progress(pending(1), Default::default()),
        );
        shard.insert(
            "b".into(),
            Object::in_progress(pending(2), Default::default()),
        );
        assert_eq!(recorded(&log, &f).len(), 2, "inserts report themselves");

        // An edit reports when it drops; one that changed nothing can say so.
        shard.edit("a").unwrap().pending = None;
        assert_eq!(recorded(&log, &f).len(), 1);
        shard.edit("b").unwrap().unchanged();
        assert!(recorded(&log, &f).is_empty());
        assert!(shard.edit("nope").is_none());

        // Leases and access recency are not replicated.
        shard.touch("b").unwrap().evict = EvictState::new(9, 0, false);
        assert!(recorded(&log, &f).is_empty());

        // A walk reports what its closure changed and removes what it asks to.
        let removed = shard.edit_each(|k, o| match k {
            "a" => Walked::Remove,
            _ => {
                o.evict = EvictState::new(10, 0, false);
                Walked::Changed
            }
        });
        assert_eq!(removed.len(), 1);
        assert_eq!(recorded(&log, &f).len(), 2);
        assert!(shard.get("a").is_none());
        assert_eq!(shard.get("b").unwrap().evict.clock(), 10);
        log.detach(&f);
    }
}

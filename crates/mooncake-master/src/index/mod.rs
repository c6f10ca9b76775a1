//! The object index: keys to object metadata, split over many shards, each behind
//! its own mutex, so that concurrent RPCs on different keys rarely meet. No operation
//! holds two shard locks at once; whole-index walks (eviction, unmount, regex removal)
//! take one shard at a time.

mod hash;
pub mod limit;
pub mod memory;
mod object;
mod replicas;

pub use hash::{FastHasher, FastState};
pub use limit::{IndexLimit, IndexMemoryLimit};

pub use object::{Object, Pending, Replica, SoftPinChange};
pub use replicas::Replicas;

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Shard count: a power of two well above the core count, so lock collisions on a
/// hot path are rare while whole-index walks stay cheap.
pub const SHARDS: usize = 64;

pub type Shard = HashMap<Box<str>, Object, FastState>;

/// The sharded key -> object map.
pub struct Index {
    shards: Box<[Mutex<Shard>]>,
    hasher: FastState,
}

impl Default for Index {
    fn default() -> Self {
        let hasher = FastState::default();
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(hasher)))
                .collect(),
            hasher,
        }
    }
}

impl Index {
    fn shard_of(&self, key: &str) -> usize {
        // Bits the shard maps do not use for buckets (see `hash`).
        ((self.hasher.hash_one(key) >> 32) as usize) % SHARDS
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

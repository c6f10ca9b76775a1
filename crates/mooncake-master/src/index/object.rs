//! One object's metadata. Kept small (a later goal is <= 200 bytes per object with
//! 20-byte keys): segments are `u32` ids, replicas are 12 bytes, times are `u64`
//! milliseconds on the master's clock, and the rare in-flight write lives behind a box.

use crate::alloc::AllocHandle;

/// One replica: an allocation in a segment. The size is the object's.
#[derive(Clone, Copy)]
pub struct Replica {
    pub seg: u32,
    pub handle: AllocHandle,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica(seg {}, unit {})", self.seg, self.handle.offset)
    }
}

/// What a put/upsert does to the soft pin when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftPinChange {
    Preserve,
    /// Pinned until this time (ms on the master clock).
    Until(u64),
    Clear,
}

/// A write in flight: a first put (the object has no complete replicas yet) or an
/// upsert (the complete replicas stay readable until it ends).
#[derive(Debug)]
pub struct Pending {
    pub put_id: u64,
    pub started_ms: u64,
    pub size: u64,
    pub replicas: Box<[Replica]>,
    pub hard_pin: bool,
    pub soft_pin: SoftPinChange,
}

#[derive(Debug)]
pub struct Object {
    /// Size of the complete value (0 while only a first put is in flight).
    pub size: u64,
    /// Complete replicas. Empty exactly when the object is not complete yet: an object
    /// that loses its last complete replica is dropped.
    pub replicas: Box<[Replica]>,
    pub pending: Option<Box<Pending>>,
    pub lease_until_ms: u64,
    /// 0 = not soft-pinned.
    pub soft_pin_until_ms: u64,
    /// LRU position: a global access tick (larger = more recent).
    pub last_access: u64,
    pub hard_pin: bool,
}

impl Object {
    /// A fresh object whose first put is in flight.
    pub fn in_progress(pending: Box<Pending>, tick: u64) -> Self {
        Self {
            size: 0,
            replicas: Box::new([]),
            pending: Some(pending),
            lease_until_ms: 0,
            soft_pin_until_ms: 0,
            last_access: tick,
            hard_pin: false,
        }
    }

    pub fn is_complete(&self) -> bool {
        !self.replicas.is_empty()
    }

    pub fn is_leased(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }

    pub fn is_soft_pinned(&self, now_ms: u64) -> bool {
        self.soft_pin_until_ms > now_ms
    }

    /// Extends the lease to at least `until_ms`.
    pub fn grant_lease(&mut self, until_ms: u64) {
        self.lease_until_ms = self.lease_until_ms.max(until_ms);
    }

    /// Whether eviction may take it: complete, no write in flight, lease expired, not
    /// hard-pinned, and (unless `soft_ok`) not soft-pinned.
    pub fn evictable(&self, now_ms: u64, soft_ok: bool) -> bool {
        self.is_complete()
            && self.pending.is_none()
            && !self.hard_pin
            && !self.is_leased(now_ms)
            && (soft_ok || !self.is_soft_pinned(now_ms))
    }

    /// Applies a completed write's pins.
    pub fn apply_pins(&mut self, hard_pin: bool, soft: SoftPinChange) {
        self.hard_pin = hard_pin;
        match soft {
            SoftPinChange::Preserve => {}
            SoftPinChange::Until(t) => self.soft_pin_until_ms = t,
            SoftPinChange::Clear => self.soft_pin_until_ms = 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the per-object footprint (a later goal is <= 200 bytes per object with
    /// 20-byte keys, map overhead and allocator node included).
    #[test]
    fn object_metadata_stays_small() {
        assert!(
            std::mem::size_of::<Object>() <= 64,
            "{}",
            std::mem::size_of::<Object>()
        );
        assert_eq!(std::mem::size_of::<Replica>(), 12);
    }
}

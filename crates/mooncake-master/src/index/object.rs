//! One object's metadata. Kept small (a later goal is <= 200 bytes per object with
//! 20-byte keys): 56 bytes. Segments are `u32` ids, replicas are 12 bytes and one is
//! kept inline, the lease is `u64` milliseconds on the master's clock, the read guard a
//! 32-bit distance back from it, both pins share one 32-bit word (the soft pin in whole
//! seconds), and the rare in-flight write lives behind a box.

use super::Replicas;
use crate::alloc::AllocHandle;
use crate::eviction::EvictState;

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
    /// The writing client ([`super::usage::client_tag`]; 0: unknown), so that its
    /// writes in flight can be bounded.
    pub client: u64,
    pub started_ms: u64,
    pub size: u64,
    pub replicas: Replicas,
    pub hard_pin: bool,
    pub soft_pin: SoftPinChange,
}

#[derive(Debug)]
pub struct Object {
    /// Size of the complete value (0 while only a first put is in flight).
    pub size: u64,
    /// Complete replicas. Empty exactly when the object is not complete yet: an object
    /// that loses its last complete replica is dropped.
    pub replicas: Replicas,
    pub pending: Option<Box<Pending>>,
    pub lease_until_ms: u64,
    /// What the eviction policy knows of the object (`eviction::policy`).
    pub evict: EvictState,
    /// The read guard (see [`Object::guard_until_ms`]) as a distance back from
    /// `lease_until_ms`, so that it fits in 32 bits.
    guard_back_ms: u32,
    /// Both pins in 32 bits: [`HARD_PIN`] is the hard pin; the other bits are the
    /// soft pin's deadline in whole seconds on the master clock, rounded up (0 = not
    /// soft-pinned; a soft pin may outlast its TTL by less than a second).
    pins: u32,
}

/// The hard-pin bit of `Object::pins`.
const HARD_PIN: u32 = 1 << 31;
/// The soft-pin deadline bits of `Object::pins` (seconds: 68 years of uptime).
const SOFT_PIN_SECS: u32 = HARD_PIN - 1;

impl Object {
    /// A fresh object whose first put is in flight.
    pub fn in_progress(pending: Box<Pending>, evict: EvictState) -> Self {
        Self {
            size: 0,
            replicas: Replicas::None,
            pending: Some(pending),
            lease_until_ms: 0,
            evict,
            guard_back_ms: 0,
            pins: 0,
        }
    }

    pub fn is_complete(&self) -> bool {
        !self.replicas.is_empty()
    }

    pub fn is_leased(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }

    pub fn is_soft_pinned(&self, now_ms: u64) -> bool {
        self.soft_pin_until_ms() > now_ms
    }

    /// The soft pin's deadline (ms on the master clock, a whole second; 0 = none).
    pub fn soft_pin_until_ms(&self) -> u64 {
        u64::from(self.pins & SOFT_PIN_SECS) * 1000
    }

    pub fn hard_pin(&self) -> bool {
        self.pins & HARD_PIN != 0
    }

    /// Extends the lease to at least `until_ms` and the read guard to at least
    /// `guard_until_ms` (callers pass a guard no later than the lease).
    pub fn grant_lease(&mut self, until_ms: u64, guard_until_ms: u64) {
        let guard = self.guard_until_ms().max(guard_until_ms);
        self.lease_until_ms = self.lease_until_ms.max(until_ms);
        // A distance too large for 32 bits is clamped, which moves the guard later:
        // never less protection than asked for.
        self.guard_back_ms =
            u32::try_from(self.lease_until_ms.saturating_sub(guard)).unwrap_or(u32::MAX);
    }

    /// Until when eviction must leave the object alone because a reader that was
    /// just given its replicas may still be copying bytes out of them. It ends no
    /// later than the lease, which keeps protecting against `remove` (-706).
    pub fn guard_until_ms(&self) -> u64 {
        self.lease_until_ms
            .saturating_sub(u64::from(self.guard_back_ms))
    }

    pub fn is_read_guarded(&self, now_ms: u64) -> bool {
        self.guard_until_ms() > now_ms
    }

    /// Whether eviction may take it: complete, no write in flight, read guard over,
    /// not hard-pinned, and (unless `soft_ok`) not soft-pinned.
    pub fn evictable(&self, now_ms: u64, soft_ok: bool) -> bool {
        self.is_complete()
            && self.pending.is_none()
            && !self.hard_pin()
            && !self.is_read_guarded(now_ms)
            && (soft_ok || !self.is_soft_pinned(now_ms))
    }

    /// Applies a completed write's pins.
    pub fn apply_pins(&mut self, hard_pin: bool, soft: SoftPinChange) {
        let soft_secs = match soft {
            SoftPinChange::Preserve => self.pins & SOFT_PIN_SECS,
            SoftPinChange::Until(t) => t.div_ceil(1000).min(u64::from(SOFT_PIN_SECS)) as u32,
            SoftPinChange::Clear => 0,
        };
        self.pins = soft_secs | if hard_pin { HARD_PIN } else { 0 };
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
            std::mem::size_of::<Object>() <= 56,
            "{}",
            std::mem::size_of::<Object>()
        );
        assert_eq!(std::mem::size_of::<Replica>(), 12);
    }

    fn complete() -> Object {
        let mut o = Object::in_progress(
            Box::new(Pending {
                put_id: 1,
                client: 0,
                started_ms: 1,
                size: 1,
                replicas: Replicas::None,
                hard_pin: false,
                soft_pin: SoftPinChange::Preserve,
            }),
            EvictState::default(),
        );
        o.pending = None;
        o.size = 4096;
        o.replicas = Replicas::One(Replica {
            seg: 0,
            handle: crate::alloc::SegmentAllocator::new(1 << 20)
                .unwrap()
                .allocate(4096)
                .unwrap(),
        });
        o
    }

    #[test]
    fn the_read_guard_ends_before_the_lease_and_only_it_blocks_eviction() {
        let mut o = complete();
        assert_eq!((o.lease_until_ms, o.guard_until_ms()), (0, 0));
        assert!(o.evictable(1, false));
        o.grant_lease(10_000, 100);
        assert_eq!((o.lease_until_ms, o.guard_until_ms()), (10_000, 100));
        assert!(!o.evictable(99, false), "a reader may still be copying");
        assert!(o.evictable(100, false), "guard over, lease still running");
        assert!(o.is_leased(100), "remove still answers -706");
        // A later grant with a shorter guard keeps the longer one.
        o.grant_lease(10_050, 60);
        assert_eq!((o.lease_until_ms, o.guard_until_ms()), (10_050, 100));
        // A later, longer guard extends it.
        o.grant_lease(10_500, 5_000);
        assert_eq!((o.lease_until_ms, o.guard_until_ms()), (10_500, 5_000));
        // An earlier lease never shortens anything.
        o.grant_lease(20, 20);
        assert_eq!((o.lease_until_ms, o.guard_until_ms()), (10_500, 5_000));
    }

    #[test]
    fn pins_share_one_word_and_soft_deadlines_round_up_to_a_second() {
        let mut o = complete();
        assert!(!o.hard_pin() && !o.is_soft_pinned(1));
        o.apply_pins(true, SoftPinChange::Until(2_500));
        assert!(o.hard_pin());
        assert_eq!(o.soft_pin_until_ms(), 3_000, "rounded up, never shorter");
        assert!(o.is_soft_pinned(2_999) && !o.is_soft_pinned(3_000));
        assert!(!o.evictable(1, true), "hard-pinned");
        o.apply_pins(false, SoftPinChange::Preserve);
        assert!(!o.hard_pin());
        assert_eq!(o.soft_pin_until_ms(), 3_000, "preserved");
        assert!(!o.evictable(1, false) && o.evictable(1, true));
        o.apply_pins(true, SoftPinChange::Until(u64::MAX));
        assert!(
            o.hard_pin(),
            "a huge deadline does not spill into the hard-pin bit"
        );
        assert_eq!(o.soft_pin_until_ms(), u64::from(SOFT_PIN_SECS) * 1000);
        o.apply_pins(false, SoftPinChange::Clear);
        assert!(!o.hard_pin() && o.soft_pin_until_ms() == 0);
        assert!(o.evictable(1, false));
    }

    #[test]
    fn a_guard_far_before_a_huge_lease_is_clamped_later_not_earlier() {
        let mut o = complete();
        o.grant_lease(u64::MAX / 4, 1_000);
        assert!(o.guard_until_ms() >= 1_000, "never less protection");
        assert_eq!(o.lease_until_ms, u64::MAX / 4);
    }
}

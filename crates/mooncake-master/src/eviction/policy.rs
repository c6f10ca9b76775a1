//! The contract every eviction policy keeps, and the per-object state it keeps it with.
//!
//! A policy never sees keys, locks or the pool: the index calls it while it holds the
//! object's shard lock, with the object's 8-byte [`EvictState`] and the eviction clock,
//! and an eviction round asks it for each candidate's [`EvictionPolicy::rank`]. The
//! round then takes candidates in ascending rank until it has freed its target. So a
//! policy is a handful of pure functions over 8 bytes per object, and the rounds, the
//! per-shard object limit and the simulator in `benches/` share one implementation.

/// The eviction clock: advanced by one for every object a put creates (so its unit is
/// "objects written"), read but not advanced by checks and reads. Ages measured in it
/// compare directly with the number of objects the pool holds.
pub type Clock = u64;

/// Per-object eviction state in one `u64` (the index budget has no room for more):
/// bit 63 says the object was reused (read after it was written, or written again
/// soon after eviction); bits 16..63 hold the clock at its last use (47 bits: 10^14
/// writes); bits 0..16 order uses at the same clock value: a read or check (bit 15
/// set) after the writes stamped with that clock, and within one batch the later keys
/// before the earlier ones (`0x7FFF - position`): a prefix's tail goes before its
/// head, since a block is worth nothing once a block before it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvictState(u64);

const REUSED: u64 = 1 << 63;
const CLOCK_BITS: u32 = 47;
const CLOCK_MASK: u64 = (1 << CLOCK_BITS) - 1;
/// The sub-order bit of a read or check.
const READ: u64 = 1 << 15;

impl EvictState {
    /// State of a write at `clock`, for the key at `position` in its batch.
    pub fn new(clock: Clock, position: usize, reused: bool) -> Self {
        let sub = 0x7FFF - position.min(0x7FFF) as u64;
        Self(((clock & CLOCK_MASK) << 16) | sub | if reused { REUSED } else { 0 })
    }

    /// The clock at the last use.
    pub fn clock(self) -> Clock {
        (self.0 >> 16) & CLOCK_MASK
    }

    /// Whether the object was reused since it was first written.
    pub fn reused(self) -> bool {
        self.0 & REUSED != 0
    }

    /// Recency alone: clock and in-batch order (larger = more recently used).
    pub fn recency(self) -> u64 {
        self.0 & !REUSED
    }

    /// The same object used again at `clock` (position `position` in its batch),
    /// keeping or setting the reused bit.
    pub fn used(self, clock: Clock, position: usize, reused: bool) -> Self {
        Self(Self::new(clock, position, reused || self.reused()).0 | READ)
    }
}

/// An eviction policy: how objects are ranked for eviction.
///
/// Contract (what the index and the rounds rely on, and what the policies' tests pin):
/// - The hooks are called with the object's shard locked and must be cheap and
///   allocation-free: they run on every put, get and existence check.
/// - `created` gives a new object's state. `readmitted` says the key was evicted not
///   long ago (the master remembers recently evicted keys only for policies that ask,
///   through [`EvictionPolicy::remembers_evicted`]).
/// - `read` is a get of the object (its replicas handed to a reader); `checked` an
///   existence check. Both happen at `clock` for the key at `position` in its batch.
/// - `rank` orders candidates: lower ranks are evicted first, equal ranks in any
///   order. `round` describes the candidates of this round (policies that age in
///   units of the pool, or keep a share for one class, use it). It must be a pure
///   function of its inputs, so that a round that walks the index twice sees the same
///   order both times.
/// - Only *which* objects go is the policy's: which objects may go at all (complete,
///   no write in flight, not pinned, read guard over, not written since the round was
///   triggered) and how much a round frees are the rounds' rules, the same for every
///   policy.
pub trait EvictionPolicy: Send + Sync + std::fmt::Debug {
    /// The name `--eviction_policy` takes.
    fn name(&self) -> &'static str;
    fn created(&self, clock: Clock, position: usize, readmitted: bool) -> EvictState;
    fn read(&self, s: EvictState, clock: Clock, position: usize) -> EvictState;
    fn checked(&self, s: EvictState, clock: Clock, position: usize) -> EvictState;
    fn rank(&self, s: EvictState, round: &Round) -> u64;
    /// Whether `created` wants to know about recently evicted keys.
    fn remembers_evicted(&self) -> bool {
        false
    }
}

/// What a round knows when it ranks its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Round {
    /// Objects in the index (the pool's size in objects).
    pub population: u64,
}

/// The policies `--eviction_policy` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyKind {
    /// Least recently used first.
    Lru,
    /// Probation and protected classes with a memory of evicted keys (see
    /// `two_queue.rs`): the default, chosen by measurement
    /// (docs/benchmarks/eviction.md).
    #[default]
    TwoQueue,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 2] = [PolicyKind::Lru, PolicyKind::TwoQueue];

    pub fn parse(flag: &str, v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "lru" => Ok(Self::Lru),
            "2q" | "two_queue" => Ok(Self::TwoQueue),
            other => Err(format!(
                "invalid value for --{flag}: {other:?} (use 2q, the default, or lru)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lru => "lru",
            Self::TwoQueue => "2q",
        }
    }

    pub fn build(self) -> Box<dyn EvictionPolicy> {
        match self {
            Self::Lru => Box::new(super::lru::Lru),
            Self::TwoQueue => Box::new(super::two_queue::TwoQueue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_packs_clock_order_and_the_reused_bit() {
        let s = EvictState::new(12_345, 3, false);
        assert_eq!(s.clock(), 12_345);
        assert!(!s.reused());
        let t = s.used(12_346, 0, true);
        assert!(t.reused() && t.clock() == 12_346);
        assert!(t.used(20_000, 1, false).reused(), "the bit stays");
        // Same clock: the batch's tail ranks below its head.
        assert!(EvictState::new(7, 9, false).recency() < EvictState::new(7, 0, false).recency());
        // A read at a write's clock ranks above the write.
        let w = EvictState::new(7, 0, false);
        assert!(w.used(7, 50, false).recency() > w.recency());
        // A later clock always ranks above, whatever the position.
        assert!(
            EvictState::new(8, 60_000, false).recency() > EvictState::new(7, 0, false).recency()
        );
        assert_eq!(
            EvictState::new(CLOCK_MASK + 5, 0, false).clock(),
            4,
            "wraps, never spills"
        );
    }

    #[test]
    fn policy_names_parse_and_bad_ones_name_the_flag() {
        for k in PolicyKind::ALL {
            assert_eq!(PolicyKind::parse("eviction_policy", k.as_str()), Ok(k));
            assert_eq!(k.build().name(), k.as_str());
        }
        assert_eq!(PolicyKind::parse("f", " LRU "), Ok(PolicyKind::Lru));
        let e = PolicyKind::parse("eviction_policy", "fifo").unwrap_err();
        assert!(e.contains("--eviction_policy") && e.contains("lru"), "{e}");
        assert_eq!(PolicyKind::default(), PolicyKind::TwoQueue);
    }
}

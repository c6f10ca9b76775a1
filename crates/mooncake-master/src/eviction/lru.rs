//! Least recently used first: the rank is the recency alone. A get and an existence
//! check both count as a use; within one batch the tail goes before the head.

use super::policy::{Clock, EvictState, EvictionPolicy, Round};

#[derive(Debug, Default, Clone, Copy)]
pub struct Lru;

impl EvictionPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }

    fn created(&self, clock: Clock, position: usize, _readmitted: bool) -> EvictState {
        EvictState::new(clock, position, false)
    }

    fn read(&self, s: EvictState, clock: Clock, position: usize) -> EvictState {
        s.used(clock, position, true)
    }

    fn checked(&self, s: EvictState, clock: Clock, position: usize) -> EvictState {
        s.used(clock, position, false)
    }

    fn rank(&self, s: EvictState, _round: &Round) -> u64 {
        s.recency()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Victim order: oldest use first, reuse does not matter, a check counts as a use.
    #[test]
    fn victims_go_in_order_of_last_use() {
        let p = Lru;
        let a = p.created(1, 0, false);
        let b = p.created(2, 0, true);
        let c = p.read(p.created(3, 0, false), 5, 0);
        let d = p.checked(p.created(4, 0, false), 6, 0);
        let mut v = [("d", d), ("c", c), ("b", b), ("a", a)];
        let r = Round::default();
        v.sort_by_key(|(_, s)| p.rank(*s, &r));
        assert_eq!(v.map(|(n, _)| n), ["a", "b", "c", "d"]);
        // One batch's keys at one clock: the tail first.
        let head = p.checked(a, 9, 0);
        let tail = p.checked(a, 9, 5);
        assert!(p.rank(tail, &r) < p.rank(head, &r));
    }
}

//! The default policy: two classes and a memory of evicted keys (the idea of 2Q and
//! S3-FIFO, expressed as a rank so that it needs no queues).
//!
//! - Probation: an object written once and not read since. Most KV blocks are: a
//!   request's new blocks are reused only if its conversation continues.
//! - Protected: an object that was read (a prefix hit), or that a put writes again
//!   while its key is still remembered as evicted not long ago (the ghost, `ghost.rs`):
//!   a block that comes back is a block of a conversation that continues.
//!
//! Every probation object ranks below every protected one that was used within
//! [`PROTECTED_AGE`] pools' worth of writes; within a class, least recently used goes
//! first, and within a batch the tail before the head. Ageing (a protected object
//! ranks as if used `PROTECTED_AGE` pools later) keeps blocks that were reused once
//! long ago from holding the pool for ever. Why this and not frequency counts or
//! depth in the prefix: docs/index.md has the measurements.

use super::policy::{Clock, EvictState, EvictionPolicy, Round};

/// How long, in pool turnovers, a protected object outranks probation ones.
pub const PROTECTED_AGE: u64 = 10;

#[derive(Debug, Default, Clone, Copy)]
pub struct TwoQueue;

impl EvictionPolicy for TwoQueue {
    fn name(&self) -> &'static str {
        "2q"
    }

    fn created(&self, clock: Clock, position: usize, readmitted: bool) -> EvictState {
        EvictState::new(clock, position, readmitted)
    }

    fn read(&self, s: EvictState, clock: Clock, position: usize) -> EvictState {
        s.used(clock, position, true)
    }

    /// A check refreshes recency but is not a reuse: a get follows if it pays.
    fn checked(&self, s: EvictState, clock: Clock, position: usize) -> EvictState {
        s.used(clock, position, false)
    }

    fn rank(&self, s: EvictState, round: &Round) -> u64 {
        if s.reused() {
            s.recency().saturating_add(
                PROTECTED_AGE
                    .saturating_mul(round.population)
                    .saturating_mul(1 << 16),
            )
        } else {
            s.recency()
        }
    }

    fn remembers_evicted(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(
        p: &TwoQueue,
        population: u64,
        v: &mut [(&'static str, EvictState)],
    ) -> Vec<&'static str> {
        v.sort_by_key(|(_, s)| p.rank(*s, &Round { population }));
        v.iter().map(|(n, _)| *n).collect()
    }

    /// Victim order: probation (oldest first) before protected (oldest first); a
    /// readmitted key is protected from its put on; a check does not protect.
    #[test]
    fn probation_goes_before_protected_and_checks_do_not_protect() {
        let p = TwoQueue;
        let old_read = p.read(p.created(1, 0, false), 2, 0);
        let readmitted = p.created(3, 0, true);
        let new_once = p.created(50, 0, false);
        let checked = p.checked(p.created(4, 0, false), 60, 0);
        let mut v = [
            ("readmitted", readmitted),
            ("checked", checked),
            ("old_read", old_read),
            ("new_once", new_once),
        ];
        assert_eq!(
            order(&p, 100, &mut v),
            ["new_once", "checked", "old_read", "readmitted"]
        );
    }

    /// A protected object unused for more than PROTECTED_AGE pools ranks below fresh
    /// probation ones: reuse long ago does not hold the pool for ever.
    #[test]
    fn protection_ages_out_after_its_turnovers() {
        let p = TwoQueue;
        let pool = 100;
        let stale = p.read(p.created(1, 0, false), 1, 0);
        let fresh = p.created(1 + PROTECTED_AGE * pool + 5, 0, false);
        let r = Round { population: pool };
        assert!(p.rank(stale, &r) < p.rank(fresh, &r));
        let recent = p.created(1 + PROTECTED_AGE * pool - 5, 0, false);
        assert!(p.rank(stale, &r) > p.rank(recent, &r));
        // Ranks never overflow into a wrong order.
        let late = p.read(EvictState::new((1 << 47) - 1, 0, false), (1 << 47) - 1, 0);
        assert!(
            p.rank(
                late,
                &Round {
                    population: u64::MAX
                }
            ) >= p.rank(late, &Round { population: 1 })
        );
    }

    /// Within a batch, the tail of a prefix goes before its head.
    #[test]
    fn a_batch_is_evicted_tail_first() {
        let p = TwoQueue;
        let blocks: Vec<_> = (0..5).map(|i| p.created(10, i, false)).collect();
        let ranks: Vec<u64> = blocks
            .iter()
            .map(|s| p.rank(*s, &Round { population: 100 }))
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] > w[1]), "{ranks:?}");
    }
}

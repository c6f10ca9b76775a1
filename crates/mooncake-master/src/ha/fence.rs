//! The fence: the leader serves only while its etcd lease is provably alive.
//!
//! The deadline is `send time of the last acknowledged keep-alive + granted TTL -
//! margin_for(TTL)`, on the monotonic clock (which keeps running while the process is
//! stopped). etcd extended the lease no earlier than the request was sent, so the lease
//! cannot expire at etcd before the deadline passes here. A paused leader that wakes up
//! after its lease ran out finds its deadline in the past and refuses at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most subtracted from a deadline.
pub const MAX_SAFETY_MARGIN: Duration = Duration::from_millis(1500);

/// Subtracted from every deadline: a third of the TTL, at most [`MAX_SAFETY_MARGIN`]
/// (1 s for the default 3 s lease). The deadline argument itself needs no margin (etcd
/// renews a lease no earlier than the keep-alive was sent); the margin covers what it
/// leaves out: the two clocks running at slightly different rates (ppm over one TTL),
/// and the gap between checking the fence and an answer reaching the wire.
pub fn margin_for(ttl: Duration) -> Duration {
    (ttl / 3).min(MAX_SAFETY_MARGIN)
}

/// Leadership as seen locally: a deadline and the term it belongs to.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base` until which this process may serve; 0 = not leader.
    deadline: AtomicU64,
    /// The current term; 0 before the first win. Bumped on every win.
    term: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

impl Fence {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            deadline: AtomicU64::new(0),
            term: AtomicU64::new(0),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The deadline a keep-alive sent at `sent` buys for a lease of `ttl`.
    pub fn deadline_for(sent: Instant, ttl: Duration) -> Instant {
        sent + ttl.saturating_sub(margin_for(ttl))
    }

    /// Starts a new term valid until `until`; returns its number.
    pub fn begin(&self, until: Instant) -> u64 {
        let term = self.term.fetch_add(1, Ordering::SeqCst) + 1;
        self.deadline
            .store(self.nanos(until).max(1), Ordering::SeqCst);
        term
    }

    /// Moves the deadline forward (never backward) while `term` is current.
    pub fn extend(&self, term: u64, until: Instant) {
        if self.term.load(Ordering::SeqCst) != term {
            return;
        }
        let n = self.nanos(until).max(1);
        let _ = self
            .deadline
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                (d != 0 && n > d).then_some(n)
            });
    }

    /// Stops serving at once.
    pub fn revoke(&self) {
        self.deadline.store(0, Ordering::SeqCst);
    }

    /// True while this process leads and its lease is provably alive.
    pub fn is_leader_now(&self) -> bool {
        let d = self.deadline.load(Ordering::SeqCst);
        d != 0 && self.nanos(Instant::now()) < d
    }

    /// True while `term` is the current term and it is still fenced in.
    pub fn holds(&self, term: u64) -> bool {
        self.term.load(Ordering::SeqCst) == term && self.is_leader_now()
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_ends_at_its_deadline_and_on_revoke() {
        let f = Fence::new();
        assert!(!f.is_leader_now());
        let t = f.begin(Instant::now() + Duration::from_secs(60));
        assert!(f.is_leader_now() && f.holds(t));
        f.revoke();
        assert!(!f.is_leader_now());
        let t2 = f.begin(Instant::now() - Duration::from_millis(1));
        assert_ne!(t, t2);
        assert!(!f.is_leader_now(), "a deadline in the past never serves");
    }

    #[test]
    fn extend_only_moves_forward_and_only_in_its_term() {
        let f = Fence::new();
        let t = f.begin(Instant::now() + Duration::from_secs(60));
        f.extend(t, Instant::now());
        assert!(
            f.is_leader_now(),
            "an older deadline does not shorten the term"
        );
        f.extend(t + 1, Instant::now() + Duration::from_secs(600));
        f.revoke();
        f.extend(t, Instant::now() + Duration::from_secs(600));
        assert!(!f.is_leader_now(), "a revoked term is not revived");
    }

    #[test]
    fn deadline_subtracts_the_margin() {
        let now = Instant::now();
        assert_eq!(
            Fence::deadline_for(now, Duration::from_secs(3)),
            now + Duration::from_secs(2)
        );
        assert_eq!(
            Fence::deadline_for(now, Duration::from_secs(30)),
            now + Duration::from_secs(30) - MAX_SAFETY_MARGIN
        );
        assert_eq!(
            Fence::deadline_for(now, Duration::ZERO),
            now,
            "a zero TTL never serves"
        );
    }
}

//! Client liveness: who is alive, which segments they own, and when they were last
//! heard from (any RPC carrying a known `client_id` counts, not only heartbeats).
//!
//! Stall grace (beyond the reference): the sweeper remembers when it last ran. If the
//! gap is longer than `client_ttl`, the master itself was not running (SIGSTOP, a
//! frozen VM, a long GC-like pause), so silence from clients proves nothing: every
//! client gets a fresh `client_ttl` instead of being expired all at once. A shorter
//! stall (the sweep came late by more than its usual slack) is not counted against
//! the clients either: their silence is shortened by the time the master lost.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The sweep period for a TTL: a quarter of it (so expiry is at most 25% late),
/// between 10 ms and 1 s.
pub fn sweep_interval(client_ttl: Duration) -> Duration {
    (client_ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[derive(Debug, Default)]
struct ClientEntry {
    last_seen_ms: u64,
    segments: Vec<String>,
}

/// What one sweep decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Clients that missed their TTL, with the segments to unmount.
    Expired(Vec<(String, Vec<String>)>),
    /// The master stalled for longer than the TTL; every client got a fresh TTL.
    StallGrace { stalled_ms: u64 },
}

#[derive(Debug, Default)]
pub struct Liveness {
    clients: DashMap<Box<str>, ClientEntry>,
    last_sweep_ms: AtomicU64,
}

impl Liveness {
    pub fn new(now_ms: u64) -> Self {
        Self {
            clients: DashMap::new(),
            last_sweep_ms: AtomicU64::new(now_ms),
        }
    }

    /// Records activity of a known client; returns whether it is known.
    pub fn touch(&self, client_id: &str, now_ms: u64) -> bool {
        if client_id.is_empty() {
            return false;
        }
        match self.clients.get_mut(client_id) {
            Some(mut e) => {
                e.last_seen_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// A heartbeat: registers an unknown client and reports that it must re-mount.
    pub fn heartbeat(&self, client_id: &str, now_ms: u64) -> bool {
        if self.touch(client_id, now_ms) {
            return false;
        }
        self.clients
            .entry(client_id.into())
            .or_default()
            .last_seen_ms = now_ms;
        true
    }

    /// Whether client `client_id` owns a segment for which `f` holds.
    pub fn any_segment(&self, client_id: &str, f: impl Fn(&str) -> bool) -> bool {
        self.clients
            .get(client_id)
            .is_some_and(|e| e.segments.iter().any(|s| f(s)))
    }

    /// Adds a segment to a client (registering the client).
    pub fn add_segment(&self, client_id: &str, segment: &str, now_ms: u64) {
        let mut e = self.clients.entry(client_id.into()).or_default();
        e.last_seen_ms = now_ms;
        if !e.segments.iter().any(|s| s == segment) {
            e.segments.push(segment.to_string());
        }
    }

    pub fn remove_segment(&self, client_id: &str, segment: &str) {
        if let Some(mut e) = self.clients.get_mut(client_id) {
            e.segments.retain(|s| s != segment);
        }
    }

    pub fn count(&self) -> usize {
        self.clients.len()
    }

    pub fn is_known(&self, client_id: &str) -> bool {
        self.clients.contains_key(client_id)
    }

    /// Expires clients silent for more than `ttl_ms` (removing them), unless the
    /// sweeper itself did not run for more than `ttl_ms` (stall grace). `period_ms`
    /// is how often sweeps are meant to run; a sweep later than twice that credits
    /// the lost time to every client.
    pub fn sweep(&self, now_ms: u64, ttl_ms: u64, period_ms: u64) -> Sweep {
        let last = self.last_sweep_ms.swap(now_ms, Ordering::SeqCst);
        let gap = now_ms.saturating_sub(last);
        if gap > ttl_ms {
            for mut e in self.clients.iter_mut() {
                e.last_seen_ms = e.last_seen_ms.max(now_ms);
            }
            return Sweep::StallGrace { stalled_ms: gap };
        }
        let lost = gap.saturating_sub(2 * period_ms);
        if lost > 0 {
            for mut e in self.clients.iter_mut() {
                e.last_seen_ms = (e.last_seen_ms + lost).min(now_ms);
            }
        }
        let dead: Vec<Box<str>> = self
            .clients
            .iter()
            .filter(|e| now_ms.saturating_sub(e.last_seen_ms) > ttl_ms)
            .map(|e| e.key().clone())
            .collect();
        let mut out = Vec::with_capacity(dead.len());
        for id in dead {
            // Re-check: a heartbeat may have arrived since the scan.
            if let Some((id, e)) = self
                .clients
                .remove_if(&id, |_, e| now_ms.saturating_sub(e.last_seen_ms) > ttl_ms)
            {
                out.push((id.into(), e.segments));
            }
        }
        Sweep::Expired(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_clients_expire_with_their_segments() {
        let l = Liveness::new(0);
        l.add_segment("a", "a:1", 0);
        l.add_segment("b", "b:1", 0);
        assert_eq!(l.sweep(500, 1000, 250), Sweep::Expired(vec![]));
        assert!(l.touch("b", 900));
        assert!(!l.touch("zzz", 900));
        assert_eq!(
            l.sweep(1200, 1000, 1000),
            Sweep::Expired(vec![("a".into(), vec!["a:1".into()])])
        );
        assert_eq!(l.count(), 1);
        assert!(l.heartbeat("a", 1300), "an expired client must re-mount");
        assert!(!l.heartbeat("a", 1400));
    }

    #[test]
    fn a_stalled_sweeper_grants_a_fresh_ttl() {
        let l = Liveness::new(0);
        l.add_segment("a", "a:1", 0);
        // The master was frozen from t=0 to t=5000 (ttl 1000): nobody expires.
        assert_eq!(
            l.sweep(5000, 1000, 250),
            Sweep::StallGrace { stalled_ms: 5000 }
        );
        assert_eq!(l.sweep(5250, 1000, 250), Sweep::Expired(vec![]));
        assert_eq!(l.sweep(5500, 1000, 250), Sweep::Expired(vec![]));
        assert_eq!(l.sweep(5750, 1000, 250), Sweep::Expired(vec![]));
        // ... but a client that stays silent after the resume does expire.
        assert!(matches!(l.sweep(6001, 1000, 250), Sweep::Expired(v) if v.len() == 1));
    }

    #[test]
    fn a_short_stall_is_not_counted_against_clients() {
        let l = Liveness::new(0);
        l.add_segment("a", "a:1", 0);
        assert_eq!(l.sweep(250, 1000, 250), Sweep::Expired(vec![]));
        assert_eq!(l.sweep(500, 1000, 250), Sweep::Expired(vec![]));
        // Frozen from 500 to 1400 (< ttl): 400 ms beyond the usual slack were lost.
        assert_eq!(l.sweep(1400, 1000, 250), Sweep::Expired(vec![]));
        // Silent for a full ttl of master running time: expired.
        assert!(matches!(l.sweep(1650, 1000, 250), Sweep::Expired(v) if v.len() == 1));
    }
}

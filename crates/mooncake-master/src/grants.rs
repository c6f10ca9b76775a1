//! Grants for the data port (authentication on): the secret of each mounted segment,
//! and the grants signed with it for the replica locations a tenant is answered.
//!
//! A mount draws the segment's secret and answers it to the owner, which checks
//! grants with it on its data port (`mooncake_common::grant`). Secrets live only in
//! the serving master's memory: a restarted master, or a standby that took over,
//! holds none for the segments it restored, signs nothing for them (a tenant's
//! transfer is refused, and the client asks again) and tells their owners to mount
//! again at their next heartbeat, which draws fresh secrets.
//!
//! The `cluster` tenant gets no grants: its connections are trusted with the whole
//! memory. Without authentication nothing here runs.

use mooncake_common::grant::{expiry_at, new_secret, now_ms, Grant, GrantKey, SECRET_LEN};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::time::Duration;

/// Segment name -> its current secret.
#[derive(Default)]
pub struct SegmentSecrets {
    by_name: RwLock<HashMap<String, GrantKey>>,
}

impl SegmentSecrets {
    /// Draws a new secret for segment `name` (every grant signed with the old one
    /// stops working).
    pub fn draw(&self, name: &str) -> [u8; SECRET_LEN] {
        let s = new_secret();
        self.by_name
            .write()
            .insert(name.to_string(), GrantKey::new(s));
        s
    }

    pub fn has(&self, name: &str) -> bool {
        self.by_name.read().contains_key(name)
    }

    /// Forgets the secret of an unmounted segment.
    pub fn forget(&self, name: &str) {
        self.by_name.write().remove(name);
    }

    /// The wire grant for `tenant` to `[base + offset, +len)` of segment `name`, good
    /// for `ttl` (`--grant_ttl_sec`, its expiry rounded down to a step of `ttl / 8`:
    /// the same bytes for the same allocation for that long); `None` when the segment has no secret (not
    /// mounted since this master started).
    pub fn sign(
        &self,
        tenant: &str,
        name: &str,
        addr: u64,
        len: u64,
        generation: u64,
        ttl: Duration,
    ) -> Option<Vec<u8>> {
        let grant = Grant {
            segment: name.to_string(),
            addr,
            len,
            generation,
            expires_ms: expiry_at(now_ms(), ttl),
        };
        grant.sign_with(self.by_name.read().get(name)?, tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_common::grant::{CLOCK_SKEW, GRANT_TTL};

    /// Checks `wire` for tenant alpha with `secret` as a store would at `at`.
    fn check(secret: &[u8], wire: &[u8], at: u64) -> Result<(), String> {
        let (g, signed, tag) = Grant::parse(wire).unwrap();
        Grant::verify_at(secret, "alpha", signed, tag, &g, at)
    }

    #[test]
    fn a_short_window_expires_where_the_default_one_does_not() {
        let s = SegmentSecrets::default();
        let secret = s.draw("seg");
        let short = Duration::from_secs(5);
        let t0 = now_ms();
        let brief = s.sign("alpha", "seg", 0x1000, 4096, 1, short).unwrap();
        let default = s.sign("alpha", "seg", 0x1000, 4096, 1, GRANT_TTL).unwrap();
        let t1 = now_ms();
        let ms = |d: Duration| d.as_millis() as u64;
        // Good up to the window (less at most one step of an eighth of it) plus the
        // stores' clock allowance, then expired.
        let step = ms(short) / 8;
        assert!(check(&secret, &brief, t0 + ms(short) - step + ms(CLOCK_SKEW)).is_ok());
        let past = t1 + ms(short) + ms(CLOCK_SKEW) + 1;
        let e = check(&secret, &brief, past).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        // The same moment is well inside the default window.
        assert!(check(&secret, &default, past).is_ok());
        // Asked again within a step: the same bytes.
        let again = s.sign("alpha", "seg", 0x1000, 4096, 1, GRANT_TTL).unwrap();
        let (a, b) = (
            Grant::parse(&default).unwrap().0,
            Grant::parse(&again).unwrap().0,
        );
        assert!(a == b || a.expires_ms + ms(GRANT_TTL) / 8 == b.expires_ms);
        assert!(check(&secret, &default, t1 + ms(GRANT_TTL) + ms(CLOCK_SKEW) + 1).is_err());
        // A segment without a secret gets no grant.
        assert!(s.sign("alpha", "other", 0, 1, 1, short).is_none());
    }
}

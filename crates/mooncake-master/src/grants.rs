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

use mooncake_common::grant::{new_secret, now_ms, Grant, GRANT_TTL, SECRET_LEN};
use parking_lot::RwLock;
use std::collections::HashMap;

/// Segment name -> its current secret.
#[derive(Default)]
pub struct SegmentSecrets {
    by_name: RwLock<HashMap<String, [u8; SECRET_LEN]>>,
}

impl SegmentSecrets {
    /// Draws a new secret for segment `name` (every grant signed with the old one
    /// stops working).
    pub fn draw(&self, name: &str) -> [u8; SECRET_LEN] {
        let s = new_secret();
        self.by_name.write().insert(name.to_string(), s);
        s
    }

    pub fn has(&self, name: &str) -> bool {
        self.by_name.read().contains_key(name)
    }

    /// Forgets the secret of an unmounted segment.
    pub fn forget(&self, name: &str) {
        self.by_name.write().remove(name);
    }

    /// The wire grant for `tenant` to `[base + offset, +len)` of segment `name`;
    /// `None` when the segment has no secret (not mounted since this master started).
    pub fn sign(
        &self,
        tenant: &str,
        name: &str,
        addr: u64,
        len: u64,
        generation: u64,
    ) -> Option<Vec<u8>> {
        let secret = *self.by_name.read().get(name)?;
        Grant {
            segment: name.to_string(),
            addr,
            len,
            generation,
            expires_ms: now_ms() + GRANT_TTL.as_millis() as u64,
        }
        .sign(&secret, tenant)
    }
}

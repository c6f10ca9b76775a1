//! Tenant scoping on the data port: which ranges of this engine's memory a connection
//! may read and write.
//!
//! A connection proved by the `cluster` tenant, or any connection to a data port
//! without authentication, is served anywhere in the registered memory, as before.
//! A connection proved by another tenant is served only inside an allocation the
//! master granted that tenant (`mooncake_common::grant`): the initiator sends the
//! grant in a Grant frame ahead of its Read and Write requests (again only when it
//! changes, so a batch of slices of one object sends it once), the listener checks
//! its tag with the segment's secret (learnt from the master at mount, kept in
//! [`GrantKeys`]) and then serves requests inside the granted range. Anything else is
//! answered with status FORBIDDEN; a bad grant is remembered only for the error
//! message.

use mooncake_common::auth::CLUSTER_TENANT;
use mooncake_common::grant::{now_ms, Grant, GrantKey, SECRET_LEN, TAG_LEN};
use parking_lot::RwLock;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Segment name -> the secret the master drew for it at its last mount.
#[derive(Default)]
pub struct GrantKeys {
    by_name: RwLock<HashMap<String, GrantKey>>,
    /// Counts changes of secrets: a grant a connection checked under an older count
    /// is checked again (so a new secret ends old grants on open connections too).
    epoch: AtomicU64,
}

impl std::fmt::Debug for GrantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrantKeys({} segments)", self.by_name.read().len())
    }
}

impl GrantKeys {
    /// Sets (or with `None` forgets) the secret of segment `name`. A new secret makes
    /// every grant signed with the old one fail.
    pub fn set(&self, name: &str, secret: Option<[u8; SECRET_LEN]>) {
        let mut m = self.by_name.write();
        let changed = match secret {
            Some(s) => m
                .insert(name.to_string(), GrantKey::new(s))
                .is_none_or(|old| old.secret() != &s),
            None => m.remove(name).is_some(),
        };
        if changed {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Runs `f` with the key of segment `name`, if it has one.
    fn with_key<T>(&self, name: &str, f: impl FnOnce(&GrantKey) -> T) -> Option<T> {
        self.by_name.read().get(name).map(f)
    }
}

/// Grants a connection keeps checked at once: the last distinct ones it sent that
/// verified (a batch's slices interleave objects; an initiator keeps the same count of
/// what it sent, and sends a grant again only once it fell out).
pub const KEPT: usize = 64;

struct Granted {
    wire: Box<[u8]>,
    /// The first bytes of the tag (random per grant): most kept grants differ from
    /// an arriving one there, before the whole bytes are compared.
    tag_head: u64,
    addr: u64,
    end: u64,
    expires_ms: u64,
}

/// The grants an initiator's connection carried, as many as the listener keeps
/// ([`KEPT`], oldest first): a grant among them is not sent again.
#[derive(Default)]
pub(super) struct SentGrants {
    /// Each grant with the head of its tag, compared first (grants of one segment
    /// share their first bytes, so comparing whole bytes would read into each).
    kept: VecDeque<(u64, Arc<Vec<u8>>)>,
}

impl SentGrants {
    /// Whether `g` went out on this connection among the last [`KEPT`] grants.
    pub fn carried(&self, g: &Arc<Vec<u8>>) -> bool {
        let head = tag_head(g);
        self.kept.iter().any(|(h, s)| *h == head && s == g)
    }

    /// Records that `g` went out (only once it did).
    pub fn sent(&mut self, g: Arc<Vec<u8>>) {
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back((tag_head(&g), g));
    }
}

/// The first 8 bytes of a wire grant's tag (0 for bytes too short to be a grant).
fn tag_head(wire: &[u8]) -> u64 {
    wire.len()
        .checked_sub(TAG_LEN)
        .and_then(|i| wire.get(i..i + 8))
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// What one connection may address.
pub(super) struct Scope {
    /// The tenant whose grants are checked; `None`: unrestricted.
    tenant: Option<Arc<str>>,
    granted: VecDeque<Granted>,
    /// The secrets' epoch the kept grants were checked under.
    epoch: u64,
    /// Why the last grant was refused (for the FORBIDDEN answer's log line).
    last_refusal: Option<String>,
}

impl Scope {
    /// No restriction: no authentication on this port.
    pub fn open() -> Self {
        Self {
            tenant: None,
            granted: VecDeque::new(),
            epoch: 0,
            last_refusal: None,
        }
    }

    /// The scope of a connection proved by `tenant`.
    pub fn of(tenant: Arc<str>) -> Self {
        let mut s = Self::open();
        if &*tenant != CLUSTER_TENANT {
            s.tenant = Some(tenant);
        }
        s
    }

    pub fn restricted(&self) -> bool {
        self.tenant.is_some()
    }

    /// Takes a Grant frame's payload: checked and kept when this connection is
    /// restricted, ignored otherwise.
    pub fn grant(&mut self, keys: &GrantKeys, wire: &[u8]) {
        if self.tenant.is_none() {
            return;
        }
        self.sync(keys);
        let tenant = self.tenant.as_deref().unwrap_or_default();
        let head = tag_head(wire);
        if self
            .granted
            .iter()
            .any(|g| g.tag_head == head && *g.wire == *wire)
        {
            return;
        }
        let checked = Grant::view(wire).and_then(|g| {
            keys.with_key(g.segment, |key| g.verify_at(key, tenant, now_ms()))
                .unwrap_or_else(|| Err(format!(
                    "no grant secret for segment {:?} here (not mounted by this process, or the master restarted and it is not mounted again yet)",
                    g.segment
                )))
                .map(|()| g)
        });
        match checked {
            Ok(g) => {
                if self.granted.len() == KEPT {
                    self.granted.pop_front();
                }
                self.granted.push_back(Granted {
                    wire: wire.into(),
                    tag_head: head,
                    addr: g.addr,
                    end: g.addr + g.len,
                    expires_ms: g.expires_ms,
                });
                self.last_refusal = None;
            }
            Err(why) => self.last_refusal = Some(why),
        }
    }

    /// Forgets the kept grants when a secret changed since they were checked.
    fn sync(&mut self, keys: &GrantKeys) {
        let now = keys.epoch();
        if now != self.epoch {
            self.granted.clear();
            self.epoch = now;
        }
    }

    /// `Ok` when `[addr, addr+len)` may be read or written on this connection, else
    /// why not.
    pub fn check(&mut self, keys: &GrantKeys, addr: u64, len: u64) -> Result<(), String> {
        if self.tenant.is_none() {
            return Ok(());
        }
        if keys.epoch() != self.epoch {
            self.sync(keys);
        }
        let tenant = self.tenant.as_deref().unwrap_or_default();
        let end = addr.saturating_add(len);
        let now = now_ms();
        let skew = mooncake_common::grant::CLOCK_SKEW.as_millis() as u64;
        if self
            .granted
            .iter()
            .any(|g| g.addr <= addr && end <= g.end && now <= g.expires_ms.saturating_add(skew))
        {
            return Ok(());
        }
        Err(match &self.last_refusal {
            Some(why) => format!("tenant {tenant:?}: {why}"),
            None => format!(
                "tenant {tenant:?} holds no grant covering [{addr:#x}, +{len}) (a tenant reaches only allocations the master gave it)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_common::grant::new_secret;

    fn wire(secret: &[u8], tenant: &str, addr: u64, len: u64) -> Vec<u8> {
        Grant {
            segment: "seg".into(),
            addr,
            len,
            generation: 1,
            expires_ms: now_ms() + 60_000,
        }
        .sign(secret, tenant)
        .unwrap()
    }

    #[test]
    fn a_tenant_reaches_only_its_granted_ranges() {
        let keys = GrantKeys::default();
        let secret = new_secret();
        keys.set("seg", Some(secret));
        let mut s = Scope::of("alpha".into());
        assert!(s.check(&keys, 0x1000, 16).is_err());
        s.grant(&keys, &wire(&secret, "alpha", 0x1000, 4096));
        assert!(s.check(&keys, 0x1000, 4096).is_ok());
        assert!(s.check(&keys, 0x1800, 16).is_ok());
        assert!(s.check(&keys, 0x1000, 4097).is_err());
        assert!(s.check(&keys, 0x0fff, 2).is_err());
        // Another tenant's grant, or one signed with another secret, adds nothing.
        s.grant(&keys, &wire(&secret, "beta", 0x9000, 16));
        let e = s.check(&keys, 0x9000, 16).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        s.grant(&keys, &wire(&new_secret(), "alpha", 0x9000, 16));
        assert!(s.check(&keys, 0x9000, 16).is_err());
        // A new secret (the segment mounted again) ends the old grants' worth, on
        // this connection too.
        keys.set("seg", Some(new_secret()));
        assert!(s.check(&keys, 0x1000, 16).is_err());
        let mut fresh = Scope::of("alpha".into());
        fresh.grant(&keys, &wire(&secret, "alpha", 0x1000, 4096));
        assert!(fresh.check(&keys, 0x1000, 16).is_err());
    }

    #[test]
    fn a_connection_carries_each_of_its_last_grants_once() {
        let secret = new_secret();
        let g = |addr| Arc::new(wire(&secret, "alpha", addr, 4096));
        let mut sent = SentGrants::default();
        let first = g(0);
        assert!(!sent.carried(&first));
        sent.sent(first.clone());
        // The same bytes in another buffer count as carried; another grant does not.
        assert!(sent.carried(&Arc::new(first.to_vec())));
        assert!(!sent.carried(&g(4096)));
        // Once KEPT newer grants went out, the listener no longer holds the first.
        let newer: Vec<_> = (1..=KEPT as u64).map(|i| g(i * 4096)).collect();
        for n in &newer {
            sent.sent(n.clone());
        }
        assert!(!sent.carried(&first));
        assert!(newer.iter().all(|n| sent.carried(n)));
    }

    #[test]
    fn cluster_and_unauthenticated_connections_are_unrestricted() {
        let keys = GrantKeys::default();
        let mut c = Scope::of(CLUSTER_TENANT.into());
        c.grant(&keys, b"garbage");
        assert!(c.check(&keys, 0, u64::MAX).is_ok());
        assert!(Scope::open().check(&keys, 1, 2).is_ok());
        assert!(!Scope::open().restricted());
    }
}

//! What each tenant's objects hold, and the limits on it, kept current by the index
//! itself: every change that goes through a shard (insert, remove, an edit, a walk)
//! moves the difference between the object's [`Charge`] before and after to its
//! tenant ([`split_key`] of the internal key) and to the client whose write is in
//! flight. Nothing walks the index for quotas or metrics.
//!
//! An object's charge is the memory its replicas hold: the complete value's size
//! times its replicas, plus a write in flight's size times its replicas (a put is
//! charged from its start; a revoked, reclaimed or force-removed one gives it back).
//! Space an upsert replaced but a reader's lease still holds is not charged: it is
//! already gone from the index.
//!
//! [`TenantUsage::admit`] is asked at put start, before anything is allocated:
//! - a tenant with a byte quota (`/api/v1/tenant_quotas`) whose charge plus the new
//!   write would pass it is refused with TENANT_QUOTA_EXCEEDED (-1700);
//! - a client with [`MAX_INFLIGHT_PER_CLIENT`] writes in flight, or a tenant with
//!   [`MAX_INFLIGHT_PER_TENANT`], is refused with the same code: puts started and
//!   never ended pin their space, and these bounds stop one client or tenant from
//!   squatting the pool that way (a forced remove reclaims them at once).
//!
//! A key longer than [`MAX_INTERNAL_KEY_LEN`] is refused there too (INVALID_PARAMS).
//!
//! Records on the SSD tier are a second figure per tenant ([`TenantUsage::disk_bytes`]),
//! kept by the tier's disk index (`tier`) as its entries come and go: the value's size
//! of every record, whether the object is also in memory or only on disk. It is
//! reported next to the memory charge and does not count against the byte quota,
//! which caps memory: demotion is how eviction makes room in DRAM, and a quota that
//! counted the disk copy would stay full after it.
//!
//! Admission against a quota reserves the put's bytes in the same step as the check
//! (one tenant's admissions take turns on a lock of its own), and the
//! [`Reservation`] holds them until the put's object is in the index, which charges
//! them, or the start fails: puts of one tenant that start together never pass its
//! quota together.

use super::Object;
use mooncake_common::auth::{split_key, CLUSTER_TENANT};
use mooncake_common::ErrorCode;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Writes one client may have in flight (put started, not yet ended or revoked). A
/// batch put starts all its keys at once, so this is well above any real batch.
pub const MAX_INFLIGHT_PER_CLIENT: u64 = 1 << 16;
/// Writes one tenant may have in flight, over all its clients.
pub const MAX_INFLIGHT_PER_TENANT: u64 = 1 << 20;
/// The longest key a put may store: the clients' limit (4096 bytes) plus the tenant
/// prefix the master adds. The index keeps every key in memory; without a bound one
/// put could park a key as large as a whole request frame.
pub const MAX_INTERNAL_KEY_LEN: usize = 4096 + 1 + mooncake_common::auth::MAX_TENANT_LEN;
/// The largest quota (the reference's bound, 2^63 - 1).
pub const MAX_QUOTA_BYTES: u64 = i64::MAX as u64;

/// The client a write in flight belongs to, as a 64-bit hash of its client id
/// (0: unknown, e.g. a write rebuilt by a standby). One seed for the process, so a
/// client id always gives the same tag.
pub fn client_tag(client_id: &str) -> u64 {
    static SEED: OnceLock<super::FastState> = OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(client_id) | 1
}

/// An object's charge: bytes of memory replicas, whether a write is in flight, and
/// whose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub bytes: u64,
    pub inflight: u64,
    pub client: u64,
}

/// What `o` holds.
#[inline]
pub fn charge(o: &Object) -> Charge {
    let done = o.size.saturating_mul(o.replicas.len() as u64);
    match &o.pending {
        Some(p) => Charge {
            bytes: done.saturating_add(p.size.saturating_mul(p.replicas.len() as u64)),
            inflight: 1,
            client: p.client,
        },
        None => Charge {
            bytes: done,
            inflight: 0,
            client: 0,
        },
    }
}

/// One tenant's totals.
#[derive(Debug, Default)]
pub struct Account {
    bytes: AtomicU64,
    inflight: AtomicU64,
    /// Puts refused for this tenant's quota or in-flight bound.
    refused: AtomicU64,
    /// Bytes of puts admitted against the quota and not yet charged to `bytes`.
    reserved: AtomicU64,
    /// Bytes of this tenant's records on SSD tiers (not part of `bytes`).
    disk: AtomicU64,
    /// Taken by admissions against a quota, so that check and reservation are one step.
    admission: Mutex<()>,
}

/// Bytes a put admitted against its tenant's quota holds until its object is in the
/// index (which charges them); given back when dropped. Empty for a tenant without a
/// quota.
#[must_use = "the reservation ends when dropped"]
#[derive(Debug)]
pub struct Reservation<'a> {
    usage: Option<&'a TenantUsage>,
    tenant: &'a str,
    bytes: u64,
}

impl Reservation<'_> {
    fn none() -> Self {
        Reservation {
            usage: None,
            tenant: "",
            bytes: 0,
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(u) = self.usage {
            // Release: whoever reads the smaller reservation (Acquire) also sees the
            // charge the index made before it.
            u.with_account(self.tenant, |a| {
                a.reserved.fetch_sub(self.bytes, Ordering::Release)
            });
        }
    }
}

impl Account {
    fn apply(&self, before: Charge, after: Charge) {
        // Wrapping arithmetic: every decrease follows the increase it undoes (both
        // under the key's shard lock), so the totals never go below zero for long.
        if before.bytes != after.bytes {
            self.bytes
                .fetch_add(after.bytes.wrapping_sub(before.bytes), Ordering::Relaxed);
        }
        if before.inflight != after.inflight {
            self.inflight.fetch_add(
                after.inflight.wrapping_sub(before.inflight),
                Ordering::Relaxed,
            );
        }
    }
}

/// One tenant as the admin API and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantView {
    pub tenant: String,
    pub bytes: u64,
    pub inflight: u64,
    pub quota: Option<u64>,
    pub refused: u64,
    /// Bytes of its records on SSD tiers (not charged to the quota).
    pub disk_bytes: u64,
}

/// A tenant that holds more than its share of the pool ([`TenantUsage::over_share`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverShare {
    pub tenant: Box<str>,
    /// Bytes it holds beyond its share.
    pub excess: u64,
}

/// Every tenant's totals and quotas. The cluster tenant's account (every key without
/// a tenant prefix) is a field: a deployment without tenants pays one atomic add per
/// change.
#[derive(Debug, Default)]
pub struct TenantUsage {
    cluster: Account,
    others: RwLock<HashMap<Box<str>, Account>>,
    /// Writes in flight per client tag; entries at zero are dropped.
    clients: Mutex<HashMap<u64, u64>>,
    quotas: RwLock<BTreeMap<String, u64>>,
    /// Whether any quota is set (else admission reads no map for it).
    any_quota: AtomicBool,
}

impl TenantUsage {
    /// Moves the difference between `before` and `after` to the tenant of `key` and
    /// to the clients of the writes in flight.
    #[inline]
    pub fn change(&self, key: &str, before: Charge, after: Charge) {
        if before == after {
            return;
        }
        if before.inflight != after.inflight || before.client != after.client {
            self.client_moved(before, after);
        }
        self.with_account(split_key(key).0, |a| a.apply(before, after));
    }

    fn client_moved(&self, before: Charge, after: Charge) {
        let mut c = self.clients.lock();
        if before.inflight != 0 && before.client != 0 {
            if let Some(n) = c.get_mut(&before.client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.remove(&before.client);
                }
            }
        }
        if after.inflight != 0 && after.client != 0 {
            *c.entry(after.client).or_default() += 1;
        }
    }

    fn with_account<R>(&self, tenant: &str, f: impl FnOnce(&Account) -> R) -> R {
        if tenant == CLUSTER_TENANT {
            return f(&self.cluster);
        }
        if let Some(a) = self.others.read().get(tenant) {
            return f(a);
        }
        f(self.others.write().entry(tenant.into()).or_default())
    }

    fn read<R>(&self, tenant: &str, f: impl Fn(&Account) -> R, none: R) -> R {
        if tenant == CLUSTER_TENANT {
            return f(&self.cluster);
        }
        self.others.read().get(tenant).map_or(none, f)
    }

    /// Bytes `tenant`'s objects hold.
    pub fn bytes(&self, tenant: &str) -> u64 {
        self.read(tenant, |a| a.bytes.load(Ordering::Relaxed), 0)
    }

    /// Bytes of `tenant`'s records on SSD tiers.
    pub fn disk_bytes(&self, tenant: &str) -> u64 {
        self.read(tenant, |a| a.disk.load(Ordering::Relaxed), 0)
    }

    /// A record of `bytes` for internal key `key` was added to an SSD tier (`added`)
    /// or dropped from one.
    pub fn disk_change(&self, key: &str, bytes: u64, added: bool) {
        if bytes == 0 {
            return;
        }
        self.with_account(split_key(key).0, |a| {
            if added {
                a.disk.fetch_add(bytes, Ordering::Relaxed);
            } else {
                a.disk.fetch_sub(bytes, Ordering::Relaxed);
            }
        });
    }

    /// `tenant`'s writes in flight (put started, not ended or revoked).
    pub fn inflight(&self, tenant: &str) -> u64 {
        self.read(tenant, |a| a.inflight.load(Ordering::Relaxed), 0)
    }

    /// The writes in flight of the client with `tag` ([`client_tag`]).
    pub fn client_inflight(&self, tag: u64) -> u64 {
        self.clients.lock().get(&tag).copied().unwrap_or(0)
    }

    /// Whether a write of `bytes` for internal key `key` by the client with `tag`
    /// may start; TENANT_QUOTA_EXCEEDED when the tenant's quota or the in-flight
    /// bounds say no (counted against the tenant). Against a quota, the bytes are
    /// reserved until the returned [`Reservation`] is dropped: keep it until the
    /// write's object is in the index.
    pub fn admit<'a>(
        &'a self,
        key: &'a str,
        bytes: u64,
        tag: u64,
    ) -> Result<Reservation<'a>, ErrorCode> {
        if key.len() > MAX_INTERNAL_KEY_LEN {
            tracing::debug!(
                len = key.len(),
                max = MAX_INTERNAL_KEY_LEN,
                "put refused (INVALID_PARAMS): key too long"
            );
            return Err(ErrorCode::InvalidParams);
        }
        let tenant = split_key(key).0;
        let refuse = |why: std::fmt::Arguments| {
            self.with_account(tenant, |a| {
                if a.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(tenant, "put refused (TENANT_QUOTA_EXCEEDED): {why}; logged for the tenant's first refusal only, see master_tenant_refused_puts_total");
                }
            });
            Err(ErrorCode::TenantQuotaExceeded)
        };
        let quota = self
            .any_quota
            .load(Ordering::Relaxed)
            .then(|| self.quotas.read().get(tenant).copied())
            .flatten();
        let inflight = self.inflight(tenant);
        if inflight >= MAX_INFLIGHT_PER_TENANT {
            return refuse(format_args!(
                "tenant {tenant} has {inflight} puts in flight (at most {MAX_INFLIGHT_PER_TENANT}); end or remove some"
            ));
        }
        if tag != 0 {
            let n = self.client_inflight(tag);
            if n >= MAX_INFLIGHT_PER_CLIENT {
                return refuse(format_args!(
                    "a client of tenant {tenant} has {n} puts in flight (at most {MAX_INFLIGHT_PER_CLIENT}); end or remove some"
                ));
            }
        }
        let Some(q) = quota else {
            return Ok(Reservation::none());
        };
        let admitted = self.with_account(tenant, |a| {
            let _turn = a.admission.lock();
            // The reservations first: an admitted put is charged to `bytes` before it
            // leaves `reserved`, so this sum counts it at least once, never not at all.
            let reserved = a.reserved.load(Ordering::Acquire);
            let used = a.bytes.load(Ordering::Relaxed).saturating_add(reserved);
            if used.saturating_add(bytes) > q {
                return Err(used);
            }
            a.reserved.fetch_add(bytes, Ordering::Relaxed);
            Ok(())
        });
        match admitted {
            Ok(()) => Ok(Reservation {
                usage: Some(self),
                tenant,
                bytes,
            }),
            Err(used) => refuse(format_args!(
                "tenant {tenant} holds or is writing {used} bytes of its {q}-byte quota and the put needs {bytes}"
            )),
        }
    }

    /// The tenants whose objects hold more than their share of a pool of `capacity`
    /// bytes, and by how much: eviction takes from them first (`eviction`), so one
    /// tenant flooding the pool cannot evict another's hot set.
    ///
    /// A tenant's share is its quota when it has one (the operator said how much it
    /// may hold), else an equal part of the pool among the tenants that hold anything
    /// now (`capacity / active`): the max-min fair split, which needs no
    /// configuration and gives every active tenant at least what an even split would.
    /// Only objects in memory count (bytes of writes in flight included).
    ///
    /// Empty while fewer than two tenants hold anything, so a deployment without
    /// tenants pays one read lock per eviction pass and evicts exactly as before.
    /// Cost: one pass over the tenants, never over the index. Sorted by tenant, so an
    /// eviction pass finds a key's tenant in it by binary search.
    pub fn over_share(&self, capacity: u64) -> Vec<OverShare> {
        let others = self.others.read();
        if others.is_empty() {
            return Vec::new();
        }
        let mut held: Vec<(&str, u64)> = Vec::with_capacity(others.len() + 1);
        let cluster = self.cluster.bytes.load(Ordering::Relaxed);
        if cluster > 0 {
            held.push((CLUSTER_TENANT, cluster));
        }
        for (t, a) in others.iter() {
            let b = a.bytes.load(Ordering::Relaxed);
            // (Wrapping totals may read huge for an instant: not a holder.)
            if b > 0 && b <= MAX_QUOTA_BYTES {
                held.push((t, b));
            }
        }
        if held.len() < 2 {
            return Vec::new();
        }
        let equal = capacity / held.len() as u64;
        let quotas = self
            .any_quota
            .load(Ordering::Relaxed)
            .then(|| self.quotas.read());
        let mut over: Vec<OverShare> = held
            .iter()
            .filter_map(|&(t, bytes)| {
                let share = quotas
                    .as_ref()
                    .and_then(|q| q.get(t).copied())
                    .unwrap_or(equal);
                (bytes > share).then(|| OverShare {
                    tenant: t.into(),
                    excess: bytes - share,
                })
            })
            .collect();
        over.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
        over
    }

    /// Sets `tenant`'s byte quota (1..=[`MAX_QUOTA_BYTES`]). A quota below what the
    /// tenant holds is accepted: nothing is removed, its puts are refused until
    /// removals and eviction bring it under.
    pub fn set_quota(&self, tenant: &str, bytes: u64) {
        self.quotas.write().insert(tenant.to_string(), bytes);
        self.any_quota.store(true, Ordering::Relaxed);
    }

    /// Removes `tenant`'s quota; its previous value, if it had one.
    pub fn remove_quota(&self, tenant: &str) -> Option<u64> {
        let mut q = self.quotas.write();
        let old = q.remove(tenant);
        self.any_quota.store(!q.is_empty(), Ordering::Relaxed);
        old
    }

    pub fn quota(&self, tenant: &str) -> Option<u64> {
        self.quotas.read().get(tenant).copied()
    }

    /// Every quota set (tenant, bytes).
    pub fn quotas(&self) -> Vec<(String, u64)> {
        self.quotas
            .read()
            .iter()
            .map(|(t, b)| (t.clone(), *b))
            .collect()
    }

    /// How `tenant` stands.
    pub fn view(&self, tenant: &str) -> TenantView {
        TenantView {
            tenant: tenant.to_string(),
            bytes: self.bytes(tenant),
            inflight: self.inflight(tenant),
            quota: self.quota(tenant),
            refused: self.read(tenant, |a| a.refused.load(Ordering::Relaxed), 0),
            disk_bytes: self.disk_bytes(tenant),
        }
    }

    /// Every tenant that ever held an object or has a quota, by name.
    pub fn all(&self) -> Vec<TenantView> {
        let mut names: Vec<String> = vec![CLUSTER_TENANT.to_string()];
        names.extend(self.others.read().keys().map(|t| t.to_string()));
        names.extend(self.quotas.read().keys().cloned());
        names.sort();
        names.dedup();
        names.iter().map(|t| self.view(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_common::auth::namespaced_key;

    fn c(bytes: u64, inflight: u64, client: u64) -> Charge {
        Charge {
            bytes,
            inflight,
            client,
        }
    }

    #[test]
    fn charges_follow_tenants_and_clients() {
        let u = TenantUsage::default();
        let k = namespaced_key("beta", "k");
        u.change(&k, Charge::default(), c(100, 1, 7));
        assert_eq!(u.bytes("beta"), 100);
        assert_eq!(u.inflight("beta"), 1);
        assert_eq!(u.client_inflight(7), 1);
        assert_eq!(u.bytes(CLUSTER_TENANT), 0);
        // The put ends: still 100 bytes, nothing in flight.
        u.change(&k, c(100, 1, 7), c(100, 0, 0));
        assert_eq!((u.bytes("beta"), u.inflight("beta")), (100, 0));
        assert_eq!(u.client_inflight(7), 0);
        u.change(&k, c(100, 0, 0), Charge::default());
        assert_eq!(u.bytes("beta"), 0);
        u.change("plain", Charge::default(), c(5, 0, 0));
        assert_eq!(u.bytes(CLUSTER_TENANT), 5);
    }

    #[test]
    fn quotas_refuse_at_the_bound_and_count_refusals() {
        let u = TenantUsage::default();
        let k = namespaced_key("beta", "k");
        drop(u.admit(&k, 1 << 30, 3).unwrap());
        u.set_quota("beta", 1 << 20);
        assert_eq!(
            u.admit(&k, 2 << 20, 3).err(),
            Some(ErrorCode::TenantQuotaExceeded)
        );
        drop(u.admit(&k, 1 << 20, 3).unwrap());
        // Another tenant is not bound by beta's quota.
        drop(u.admit(&namespaced_key("alpha", "k"), 2 << 20, 3).unwrap());
        u.change(&k, Charge::default(), c(1 << 20, 0, 0));
        assert_eq!(
            u.admit(&k, 1, 3).err(),
            Some(ErrorCode::TenantQuotaExceeded)
        );
        assert_eq!(u.view("beta").refused, 2);
        assert_eq!(u.remove_quota("beta"), Some(1 << 20));
        drop(u.admit(&k, 1, 3).unwrap());
        assert!(u
            .all()
            .iter()
            .any(|v| v.tenant == "beta" && v.bytes == 1 << 20));
    }

    /// Disk records are a figure of their own: reported per tenant, never part of
    /// the memory charge a quota is checked against.
    #[test]
    fn disk_records_are_counted_apart_from_the_quota() {
        let u = TenantUsage::default();
        let k = namespaced_key("beta", "k");
        u.set_quota("beta", 1 << 20);
        u.disk_change(&k, 8 << 20, true);
        u.disk_change("plain", 3, true);
        assert_eq!(u.disk_bytes("beta"), 8 << 20);
        assert_eq!(u.disk_bytes(CLUSTER_TENANT), 3);
        assert_eq!(u.bytes("beta"), 0);
        drop(u.admit(&k, 1 << 20, 3).unwrap());
        let v = u.view("beta");
        assert_eq!((v.bytes, v.disk_bytes), (0, 8 << 20));
        // A tenant holding only disk records is listed.
        u.disk_change(&namespaced_key("gamma", "x"), 5, true);
        assert!(u
            .all()
            .iter()
            .any(|v| v.tenant == "gamma" && v.disk_bytes == 5));
        u.disk_change(&k, 8 << 20, false);
        assert_eq!(u.disk_bytes("beta"), 0);
        u.disk_change(&k, 0, true);
        assert_eq!(u.disk_bytes("beta"), 0);
    }

    #[test]
    fn keys_are_bounded() {
        let u = TenantUsage::default();
        let long = "k".repeat(MAX_INTERNAL_KEY_LEN + 1);
        assert_eq!(u.admit(&long, 1, 1).err(), Some(ErrorCode::InvalidParams));
        drop(u.admit(&"k".repeat(4096), 1, 1).unwrap());
    }

    #[test]
    fn writes_in_flight_are_bounded_per_client() {
        let u = TenantUsage::default();
        for i in 0..MAX_INFLIGHT_PER_CLIENT {
            u.change(&format!("k{i}"), Charge::default(), c(1, 1, 9));
        }
        assert_eq!(
            u.admit("x", 1, 9).err(),
            Some(ErrorCode::TenantQuotaExceeded)
        );
        drop(u.admit("x", 1, 11).unwrap());
        u.change("k0", c(1, 1, 9), Charge::default());
        drop(u.admit("x", 1, 9).unwrap());
    }

    /// Puts of one tenant admitted at once never pass its quota together: each
    /// reservation counts until it is dropped (its object charged by the index).
    #[test]
    fn concurrent_admissions_reserve_within_the_quota() {
        let u = std::sync::Arc::new(TenantUsage::default());
        u.set_quota("beta", 10 << 20);
        let k = namespaced_key("beta", "k");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
        let admitted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let (u, k, barrier) = (&u, &k, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let r = u.admit(k, 1 << 20, 0);
                        let ok = r.is_ok();
                        // Held until every thread tried.
                        barrier.wait();
                        drop(r);
                        u64::from(ok)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 10);
        assert_eq!(u.view("beta").refused, 6);
        // Dropped reservations are given back; a charge counts like one.
        drop(u.admit(&k, 10 << 20, 0).unwrap());
        let r = u.admit(&k, 4 << 20, 0).unwrap();
        u.change(&k, Charge::default(), c(4 << 20, 1, 0));
        drop(r);
        assert_eq!(
            u.admit(&k, 7 << 20, 0).err(),
            Some(ErrorCode::TenantQuotaExceeded)
        );
        drop(u.admit(&k, 6 << 20, 0).unwrap());
    }
}

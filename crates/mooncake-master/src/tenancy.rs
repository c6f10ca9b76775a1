//! Which tenant mounted each segment (authentication on, `service::auth`).
//!
//! A segment mounted by the `cluster` tenant (store daemons) serves every tenant; a
//! segment mounted by a tenant's own client (an embedded client's memory) holds only
//! that tenant's objects, so placement never puts one tenant's bytes in another
//! tenant's process ([`SegmentTenants::allowed`]). Only the tenant that mounted a
//! segment (or the cluster tenant) may remount or unmount it.
//!
//! Without authentication every segment is the cluster's and nothing here is consulted
//! on the put path (one relaxed load).

use crate::placement::SegmentView;
use crate::service::auth::Tenant;
use mooncake_common::auth::{split_key, CLUSTER_TENANT};
use mooncake_common::ErrorCode;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Segment id -> the tenant that mounted it, for segments not mounted by `cluster`.
#[derive(Default)]
pub struct SegmentTenants {
    by_id: RwLock<HashMap<u32, Arc<str>>>,
    /// Whether any tenant mounted a segment of its own (else placement is unfiltered).
    any: AtomicBool,
}

impl SegmentTenants {
    /// The tenant that mounted segment `id` (`cluster` when none did).
    pub fn of(&self, id: u32) -> Arc<str> {
        if !self.any.load(Ordering::Relaxed) {
            return CLUSTER_TENANT.into();
        }
        self.by_id
            .read()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| CLUSTER_TENANT.into())
    }

    /// Whether `t` may mount, remount or unmount the segment called `name` that is
    /// mounted now as `existing` (its id), if it is: the cluster tenant always; another
    /// tenant a new name, or a segment it mounted itself.
    pub fn may_claim(&self, t: &Tenant, existing: Option<u32>) -> Result<(), ErrorCode> {
        match existing {
            _ if t.is_cluster() => Ok(()),
            None => Ok(()),
            Some(id) if &*self.of(id) == t.name() => Ok(()),
            Some(_) => Err(ErrorCode::PermissionDenied),
        }
    }

    /// Records that `t` mounted segment `id`.
    pub fn mounted(&self, t: &Tenant, id: u32) {
        if t.is_cluster() {
            if self.any.load(Ordering::Relaxed) {
                self.by_id.write().remove(&id);
            }
            return;
        }
        self.by_id.write().insert(id, t.name().into());
        self.any.store(true, Ordering::Relaxed);
    }

    /// Forgets segments no longer mounted (`alive` says which ids still are).
    pub fn retain(&self, alive: impl Fn(u32) -> bool) {
        if self.any.load(Ordering::Relaxed) {
            self.by_id.write().retain(|id, _| alive(*id));
        }
    }

    /// Whether placement must consider tenants at all.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// The segments of `views` that may hold an object under internal key `key`.
    pub fn allowed(&self, views: &[SegmentView], key: &str) -> Vec<SegmentView> {
        let (tenant, _) = split_key(key);
        let by_id = self.by_id.read();
        views
            .iter()
            .filter(|v| {
                by_id
                    .get(&v.id)
                    .is_none_or(|owner| &**owner == CLUSTER_TENANT || &**owner == tenant)
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_common::auth::namespaced_key;

    fn view(id: u32) -> SegmentView {
        SegmentView {
            id,
            owner: id,
            capacity: 100,
            free: 100,
            largest_free: 100,
        }
    }

    #[test]
    fn a_tenants_segment_takes_only_its_objects() {
        let s = SegmentTenants::default();
        let (alpha, beta) = (Tenant::named("alpha".into()), Tenant::named("beta".into()));
        s.mounted(&Tenant::cluster(), 1);
        s.mounted(&alpha, 2);
        s.mounted(&beta, 3);
        let views = [view(1), view(2), view(3)];
        let ids = |key: &str| -> Vec<u32> { s.allowed(&views, key).iter().map(|v| v.id).collect() };
        assert_eq!(ids(&namespaced_key("alpha", "k")), vec![1, 2]);
        assert_eq!(ids(&namespaced_key("beta", "k")), vec![1, 3]);
        assert_eq!(ids("k"), vec![1]);
        assert_eq!(s.may_claim(&alpha, Some(2)), Ok(()));
        assert_eq!(
            s.may_claim(&alpha, Some(3)),
            Err(ErrorCode::PermissionDenied)
        );
        assert_eq!(
            s.may_claim(&alpha, Some(1)),
            Err(ErrorCode::PermissionDenied)
        );
        assert_eq!(s.may_claim(&alpha, None), Ok(()));
        assert_eq!(s.may_claim(&Tenant::cluster(), Some(2)), Ok(()));
        s.retain(|id| id != 2);
        assert_eq!(&*s.of(2), "cluster");
    }
}

//! The standby's copy of the leader's state, kept by applying the leader's snapshot
//! and op stream. Applying is idempotent and order-tolerant across keys: each op is
//! the whole state of one key or segment.
//!
//! [`StandbyShadow`] holds the shadow a takeover may use: only a complete one (its
//! snapshot finished), and only while it can be current. It is dropped when the
//! leader dropped this standby from its sync set (the leader then acknowledges
//! writes the shadow lacks), and it is not used when the stream broke long before the
//! takeover (a leader that kept serving after losing us may have changed anything).

use mooncake_proto::replication_op::Op;
use mooncake_proto::{ObjectRecord, ReplicationBatch, SegmentRecord};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Shadow {
    pub view_id: u64,
    /// Keyed by object key (the record's own `key` is left empty).
    pub objects: HashMap<String, ObjectRecord>,
    /// By the leader's segment id.
    pub segments: BTreeMap<u32, SegmentRecord>,
    /// The leader's clock at the last batch (soft-pin deadlines are on it).
    pub leader_now_ms: u64,
    pub next_put_id: u64,
    /// The head of the last batch applied.
    pub applied: u64,
    /// Tenant byte quotas (`/api/v1/tenant_quotas`).
    pub quotas: BTreeMap<String, u64>,
}

impl Shadow {
    pub fn apply(&mut self, b: ReplicationBatch) {
        for op in b.ops {
            match op.op {
                Some(Op::Object(mut r)) => {
                    let key = std::mem::take(&mut r.key);
                    self.objects.insert(key, r);
                }
                Some(Op::Gone(k)) => {
                    self.objects.remove(&k);
                }
                Some(Op::SegmentMounted(s)) => {
                    self.segments.insert(s.id, s);
                }
                Some(Op::SegmentUnmounted(id)) => {
                    self.segments.remove(&id);
                }
                Some(Op::TenantQuota(q)) if q.bytes == 0 => {
                    self.quotas.remove(&q.tenant);
                }
                Some(Op::TenantQuota(q)) => {
                    self.quotas.insert(q.tenant, q.bytes);
                }
                None => {}
            }
        }
        self.view_id = b.view_id;
        self.leader_now_ms = self.leader_now_ms.max(b.leader_now_ms);
        self.next_put_id = self.next_put_id.max(b.next_put_id);
        self.applied = self.applied.max(b.head_seq);
    }
}

/// How long after its stream broke a shadow may still be used for a takeover, for a
/// leader lease of `ttl`: a dead leader's lease runs out within the TTL and the
/// standby campaigns at once (twice the TTL plus slack for etcd's expiry check and a
/// retried campaign); a stream broken longer ago means the leader went on without us.
pub fn usable_after_disconnect(ttl: Duration) -> Duration {
    ttl * 2 + Duration::from_secs(6)
}

#[derive(Default)]
struct Held {
    shadow: Option<Shadow>,
    /// When the stream that fed the shadow broke (None while it is connected).
    broken_at: Option<Instant>,
}

/// The shadow a takeover may use, shared by the follower task and the election.
#[derive(Default)]
pub struct StandbyShadow {
    held: Mutex<Held>,
}

impl StandbyShadow {
    /// A complete shadow (its snapshot ended) replaces the previous one.
    pub fn install(&self, s: Shadow) {
        let mut h = self.held.lock();
        h.shadow = Some(s);
        h.broken_at = None;
    }

    /// Applies a batch to the installed shadow (none: ignored).
    pub fn apply(&self, b: ReplicationBatch) {
        if let Some(s) = &mut self.held.lock().shadow {
            s.apply(b);
        }
    }

    /// The stream feeding the shadow broke.
    pub fn disconnected(&self) {
        let mut h = self.held.lock();
        if h.shadow.is_some() && h.broken_at.is_none() {
            h.broken_at = Some(Instant::now());
        }
    }

    /// The leader dropped us: it may acknowledge writes the shadow will never see.
    pub fn invalidate(&self, why: &str) {
        let mut h = self.held.lock();
        if h.shadow.take().is_some() {
            tracing::warn!("HA: standby shadow discarded: {why}");
        }
    }

    /// Whether a shadow is installed (for /health and tests).
    pub fn has_shadow(&self) -> bool {
        self.held.lock().shadow.is_some()
    }

    /// Whether a takeover now would use the shadow (see [`Self::take_for_takeover`]).
    pub fn is_usable(&self, usable_for: Duration) -> bool {
        let h = self.held.lock();
        h.shadow.is_some() && h.broken_at.is_none_or(|t| t.elapsed() <= usable_for)
    }

    /// Takes the shadow for a takeover, if it may be current (its stream is connected
    /// or broke at most `usable_for` ago).
    pub fn take_for_takeover(&self, usable_for: Duration) -> Option<Shadow> {
        let mut h = self.held.lock();
        let s = h.shadow.take()?;
        match h.broken_at.take() {
            Some(t) if t.elapsed() > usable_for => {
                tracing::warn!(
                    "HA: standby shadow not used: its stream broke {:?} ago (the leader may have gone on without this standby)",
                    t.elapsed()
                );
                None
            }
            _ => Some(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_proto::ReplicationOp;

    fn op(seq: u64, op: Op) -> ReplicationOp {
        ReplicationOp { seq, op: Some(op) }
    }

    fn obj(key: &str, size: u64) -> Op {
        Op::Object(ObjectRecord {
            key: key.into(),
            size,
            ..Default::default()
        })
    }

    #[test]
    fn ops_replace_state_and_replaying_them_changes_nothing() {
        let ops = vec![
            op(1, obj("a", 1)),
            op(2, obj("b", 2)),
            op(3, Op::Gone("a".into())),
            op(4, obj("b", 3)),
        ];
        let batch = || ReplicationBatch {
            ops: ops.clone(),
            view_id: 7,
            head_seq: 4,
            ..Default::default()
        };
        let mut s = Shadow::default();
        s.apply(batch());
        s.apply(batch());
        assert_eq!(s.objects.len(), 1);
        assert_eq!(s.objects["b"].size, 3);
        assert_eq!((s.view_id, s.applied), (7, 4));
    }

    /// Quota ops carry the quota as it is now: the last one of a tenant wins, a zero
    /// lifts it, and a master rebuilt from the shadow enforces them.
    #[test]
    fn quota_ops_set_and_lift_and_a_rebuilt_master_has_them() {
        use super::super::log::quota_record;
        let q = |seq, t: &str, b| op(seq, Op::TenantQuota(quota_record(t, b)));
        let mut s = Shadow::default();
        s.apply(ReplicationBatch {
            ops: vec![
                q(1, "beta", Some(100)),
                q(2, "gamma", Some(5)),
                q(3, "beta", Some(200)),
                q(4, "gamma", None),
            ],
            head_seq: 4,
            ..Default::default()
        });
        assert_eq!(s.quotas.len(), 1);
        assert_eq!(s.quotas["beta"], 200);
        let (m, _) = super::super::rebuild::master_from(Default::default(), s);
        assert_eq!(m.index.usage().quota("beta"), Some(200));
        assert_eq!(m.index.usage().quota("gamma"), None);
        let k = mooncake_common::auth::namespaced_key("beta", "k");
        assert!(m.index.usage().admit(&k, 201, 0).is_err());
    }

    #[test]
    fn a_dropped_standby_has_no_shadow_to_take_over_with() {
        let h = StandbyShadow::default();
        let usable = usable_after_disconnect(Duration::from_secs(3));
        assert!(h.take_for_takeover(usable).is_none());
        assert!(!h.is_usable(usable), "no shadow yet");
        h.install(Shadow::default());
        assert!(h.is_usable(Duration::ZERO), "connected: usable");
        h.disconnected();
        assert!(h.is_usable(usable) && !h.is_usable(Duration::ZERO));
        assert!(
            h.take_for_takeover(usable).is_some(),
            "a fresh break is fine"
        );
        h.install(Shadow::default());
        h.disconnected();
        assert!(
            h.take_for_takeover(Duration::ZERO).is_none(),
            "a break older than the bound"
        );
        h.install(Shadow::default());
        h.invalidate("test");
        assert!(h.take_for_takeover(usable).is_none());
    }
}

//! The leader's replication log.
//!
//! Every change of the index or the segment table is appended as a state-based op
//! (the object as it is after the change, its removal, a segment mounted or gone)
//! with the next sequence number. Appends happen under the lock that orders the
//! change (the key's shard lock; the segment table's for segments), so per key the
//! sequence order is the order of the changes; replaying ops in sequence order, or
//! replaying an op twice, yields the leader's state.
//!
//! Each attached follower has its own queue; its sender takes everything queued at
//! once (group commit). A follower acknowledges the highest sequence it applied; it
//! counts as in sync once it acknowledged the end of its snapshot. [`ReplLog::wait_synced`]
//! is what makes client mutations synchronous: the answer waits until an in-sync
//! follower has the log head as it was when the call finished. A follower that does
//! not acknowledge within the bound is dropped (it must resync), so a dead or slow
//! standby never stalls the leader for longer than the bound once.
//!
//! With no follower attached (always, without `--enable_ha`) every hook is one
//! relaxed atomic load.

use crate::index::{Object, Replica, SoftPinChange};
use crate::segments::Segment;
use mooncake_proto::replication_op::Op;
use mooncake_proto::{ObjectRecord, ReplicaLoc, ReplicationOp, SegmentRecord, TenantQuota};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// A follower whose queue grows beyond this many ops is dropped (it must resync):
/// the leader's memory stays bounded when a standby stops reading.
pub const MAX_QUEUED_OPS: usize = 4_000_000;

/// How long a mutation waits for an in-sync follower before dropping it.
pub const SYNC_BOUND: Duration = Duration::from_millis(500);

/// What the log and a follower's sender share about that follower.
#[derive(Debug)]
pub struct Follower {
    pub id: u64,
    pub name: String,
    /// Highest sequence the follower applied.
    pub acked: AtomicU64,
    /// The head sent with the snapshot's end (u64::MAX until then).
    pub snapshot_head: AtomicU64,
    /// Acknowledged its snapshot: mutations wait for it.
    pub in_sync: AtomicBool,
    /// Dropped (too slow, queue overflow): its stream must end; it resyncs.
    pub dropped: AtomicBool,
    /// Wakes the sender when ops are queued or the follower is dropped.
    pub wake: Notify,
    /// Wakes a sender blocked on a full stream when the follower is dropped.
    pub on_drop: Notify,
}

struct Slot {
    follower: Arc<Follower>,
    queue: Vec<ReplicationOp>,
}

#[derive(Default)]
struct LogState {
    head: u64,
    next_id: u64,
    slots: Vec<Slot>,
}

/// The sync set and the mutations waiting on it. Each waiter is woken once, by the
/// acknowledgement that covers it (or when the sync set empties), not by every
/// acknowledgement.
#[derive(Default)]
struct SyncState {
    in_sync: Vec<Arc<Follower>>,
    waiters: Vec<(u64, oneshot::Sender<bool>)>,
}

impl SyncState {
    fn best(&self) -> u64 {
        self.in_sync
            .iter()
            .map(|f| f.acked.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }

    /// Wakes the waiters the sync set now covers (all of them, unsynced, when the
    /// set is empty).
    fn wake(&mut self) {
        if self.in_sync.is_empty() {
            for (_, w) in self.waiters.drain(..) {
                let _ = w.send(false);
            }
            return;
        }
        let best = self.best();
        self.waiters.retain_mut(|(target, _)| *target > best);
        // `retain_mut` dropped the covered senders: their receivers see a closed
        // channel, which the waiter reads as "synced".
    }
}

/// A follower that can catch up on the waiting caller's thread (the on-disk index):
/// called by [`ReplLog::wait_synced`] with its target before it waits.
pub type Flusher = Box<dyn Fn(u64) + Send + Sync>;

#[derive(Default)]
pub struct ReplLog {
    /// Some follower is attached (appends are recorded).
    active: AtomicBool,
    state: Mutex<LogState>,
    sync: Mutex<SyncState>,
    flusher: std::sync::OnceLock<Flusher>,
}

impl std::fmt::Debug for ReplLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplLog")
            .field("active", &self.is_active())
            .finish()
    }
}

impl ReplLog {
    /// Whether any follower is attached.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// `key` is now `o` (None: gone).
    #[inline]
    pub fn object(&self, key: &str, o: Option<&Object>) {
        if self.is_active() {
            self.append(match o {
                Some(o) => Op::Object(object_record(key, o)),
                None => Op::Gone(key.to_string()),
            });
        }
    }

    #[inline]
    pub fn gone(&self, key: &str) {
        if self.is_active() {
            self.append(Op::Gone(key.to_string()));
        }
    }

    pub fn segment_mounted(&self, seg: &Segment) {
        if self.is_active() {
            self.append(Op::SegmentMounted(segment_record(seg)));
        }
    }

    pub fn segment_unmounted(&self, id: u32) {
        if self.is_active() {
            self.append(Op::SegmentUnmounted(id));
        }
    }

    /// `tenant`'s byte quota is now `bytes` (None: lifted).
    pub fn tenant_quota(&self, tenant: &str, bytes: Option<u64>) {
        if self.is_active() {
            self.append(Op::TenantQuota(quota_record(tenant, bytes)));
        }
    }

    fn append(&self, op: Op) {
        let mut s = self.state.lock();
        s.head += 1;
        let op = ReplicationOp {
            seq: s.head,
            op: Some(op),
        };
        // The op is cloned for all but the last follower (usually there is one).
        let mut op = Some(op);
        let n = s.slots.len();
        for (i, slot) in s.slots.iter_mut().enumerate() {
            if slot.follower.dropped.load(Ordering::Relaxed) {
                continue;
            }
            if slot.queue.len() >= MAX_QUEUED_OPS {
                self.drop_follower(&slot.follower, "its queue overflowed");
                slot.queue = Vec::new();
                continue;
            }
            let this = if i + 1 == n { op.take() } else { op.clone() };
            slot.queue.extend(this);
            slot.follower.wake.notify_one();
        }
    }

    /// Installs the [`Flusher`] (once; later calls are ignored).
    pub fn set_flusher(&self, f: Flusher) {
        let _ = self.flusher.set(f);
    }

    /// The sequence of the last op appended.
    pub fn head(&self) -> u64 {
        self.state.lock().head
    }

    /// Attaches a follower: from now on every change is queued for it (call before
    /// taking its snapshot).
    pub fn attach(&self, name: &str) -> Arc<Follower> {
        let mut s = self.state.lock();
        s.next_id += 1;
        let follower = Arc::new(Follower {
            id: s.next_id,
            name: name.to_string(),
            acked: AtomicU64::new(0),
            snapshot_head: AtomicU64::new(u64::MAX),
            in_sync: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            wake: Notify::new(),
            on_drop: Notify::new(),
        });
        s.slots.push(Slot {
            follower: follower.clone(),
            queue: Vec::new(),
        });
        self.active.store(true, Ordering::SeqCst);
        follower
    }

    pub fn detach(&self, f: &Follower) {
        let mut s = self.state.lock();
        s.slots.retain(|slot| slot.follower.id != f.id);
        if s.slots.is_empty() {
            self.active.store(false, Ordering::SeqCst);
        }
        drop(s);
        self.leave_sync_set(f);
    }

    fn leave_sync_set(&self, f: &Follower) {
        f.in_sync.store(false, Ordering::SeqCst);
        let mut sync = self.sync.lock();
        sync.in_sync.retain(|x| x.id != f.id);
        sync.wake();
    }

    /// Takes `f` out of the sync set for good: its stream ends and it must resync.
    pub fn drop_follower(&self, f: &Follower, why: &str) {
        if !f.dropped.swap(true, Ordering::SeqCst) {
            tracing::warn!(follower = %f.name, "HA: standby dropped from the sync set: {why}; it must resync");
            self.leave_sync_set(f);
            f.wake.notify_one();
            f.on_drop.notify_one();
        }
    }

    /// Everything queued for `f`, and the head it brings the follower to.
    pub fn take(&self, f: &Follower) -> (Vec<ReplicationOp>, u64) {
        let mut s = self.state.lock();
        let head = s.head;
        let ops = s
            .slots
            .iter_mut()
            .find(|slot| slot.follower.id == f.id)
            .map(|slot| std::mem::take(&mut slot.queue))
            .unwrap_or_default();
        (ops, head)
    }

    /// Records an acknowledgement; the follower joins the sync set once it has
    /// acknowledged its snapshot.
    pub fn ack(&self, f: &Arc<Follower>, seq: u64) {
        f.acked.fetch_max(seq, Ordering::SeqCst);
        let mut sync = self.sync.lock();
        if f.in_sync.load(Ordering::SeqCst) {
            sync.wake();
        } else if !f.dropped.load(Ordering::SeqCst) && seq >= f.snapshot_head.load(Ordering::SeqCst)
        {
            f.in_sync.store(true, Ordering::SeqCst);
            sync.in_sync.push(f.clone());
            sync.wake();
            tracing::info!(follower = %f.name, seq, "HA: standby in sync");
        }
    }

    /// How many followers are in sync now.
    pub fn in_sync_count(&self) -> usize {
        self.sync.lock().in_sync.len()
    }

    /// Waits until an in-sync follower acknowledged `target` (at once when none is in
    /// sync). After `bound` without one, the in-sync followers behind `target` are
    /// dropped and the wait ends. Returns whether a follower had `target`.
    pub async fn wait_synced(&self, target: u64, bound: Duration) -> bool {
        if !self.is_active() {
            return false;
        }
        if let Some(f) = self.flusher.get() {
            f(target);
        }
        let rx = {
            let mut sync = self.sync.lock();
            if sync.in_sync.is_empty() {
                return false;
            }
            if sync.best() >= target {
                return true;
            }
            let (tx, rx) = oneshot::channel();
            sync.waiters.push((target, tx));
            rx
        };
        match tokio::time::timeout(bound, rx).await {
            // Covered (sender dropped by `wake`) or told the set emptied.
            Ok(Ok(synced)) => synced,
            Ok(Err(_)) => true,
            Err(_) => {
                let behind: Vec<Arc<Follower>> = self
                    .sync
                    .lock()
                    .in_sync
                    .iter()
                    .filter(|f| f.acked.load(Ordering::SeqCst) < target)
                    .cloned()
                    .collect();
                for f in behind {
                    self.drop_follower(&f, "it did not acknowledge in time");
                }
                false
            }
        }
    }
}

// ---------- records: objects and segments as the log carries them ----------
//
// Everything a standby needs to rebuild them (replica locations in allocation units,
// pins, a write in flight). Leases and LRU order are not replicated: a new term
// restarts them.

/// `pending_soft_pin` values.
pub const SOFT_PRESERVE: i32 = 0;
pub const SOFT_UNTIL: i32 = 1;
pub const SOFT_CLEAR: i32 = 2;

fn locs(replicas: &[Replica]) -> Vec<ReplicaLoc> {
    replicas
        .iter()
        .map(|r| ReplicaLoc {
            segment_id: r.seg,
            offset_units: r.handle.offset,
        })
        .collect()
}

/// The record of `key`'s object as it is now.
pub fn object_record(key: &str, o: &Object) -> ObjectRecord {
    let mut r = ObjectRecord {
        key: key.to_string(),
        size: o.size,
        replicas: locs(&o.replicas),
        hard_pin: o.hard_pin(),
        soft_pin_until_ms: o.soft_pin_until_ms(),
        ..Default::default()
    };
    if let Some(p) = &o.pending {
        r.pending_put_id = p.put_id;
        r.pending_size = p.size;
        r.pending_replicas = locs(&p.replicas);
        r.pending_hard_pin = p.hard_pin;
        (r.pending_soft_pin, r.pending_soft_pin_until_ms) = match p.soft_pin {
            SoftPinChange::Preserve => (SOFT_PRESERVE, 0),
            SoftPinChange::Until(t) => (SOFT_UNTIL, t),
            SoftPinChange::Clear => (SOFT_CLEAR, 0),
        };
    }
    r
}

/// The record of `tenant`'s quota (`None`: it has none).
pub fn quota_record(tenant: &str, bytes: Option<u64>) -> TenantQuota {
    TenantQuota {
        tenant: tenant.to_string(),
        bytes: bytes.unwrap_or(0),
    }
}

pub fn segment_record(seg: &Segment) -> SegmentRecord {
    SegmentRecord {
        id: seg.id,
        client_id: seg.client_id.to_string(),
        desc: Some((&seg.desc).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_recorded_without_followers() {
        let log = ReplLog::default();
        log.gone("a");
        assert_eq!(log.head(), 0);
        let f = log.attach("f");
        log.gone("a");
        log.gone("b");
        let (ops, head) = log.take(&f);
        assert_eq!((ops.len(), head), (2, 2));
        assert_eq!(ops[1].seq, 2);
        assert!(log.take(&f).0.is_empty());
        log.detach(&f);
        log.gone("c");
        assert_eq!(log.head(), 2, "detached: recording stops");
    }

    #[tokio::test]
    async fn waits_for_an_in_sync_follower_and_drops_a_silent_one() {
        let log = Arc::new(ReplLog::default());
        assert!(
            !log.wait_synced(5, SYNC_BOUND).await,
            "no follower: at once"
        );
        let f = log.attach("f");
        f.snapshot_head.store(0, Ordering::SeqCst);
        log.gone("a");
        assert!(
            !log.wait_synced(1, SYNC_BOUND).await,
            "attached but not in sync: no wait"
        );
        log.ack(&f, 0);
        assert!(f.in_sync.load(Ordering::SeqCst));
        let (l2, f2) = (log.clone(), f.clone());
        let acker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            l2.ack(&f2, 1);
        });
        assert!(log.wait_synced(1, Duration::from_secs(30)).await);
        acker.await.unwrap();
        log.gone("b");
        assert!(!log.wait_synced(2, Duration::from_millis(50)).await);
        assert!(f.dropped.load(Ordering::SeqCst) && !f.in_sync.load(Ordering::SeqCst));
        assert!(!log.wait_synced(2, SYNC_BOUND).await, "dropped: no wait");
    }
}

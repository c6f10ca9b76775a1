//! The SSD tier's control plane (`--enable_offload`).
//!
//! Every owner whose process has a tier (`MOONCAKE_OFFLOAD_FILE_STORAGE_PATH`) asks for
//! work on `SegmentTier.Work` (`service.rs`). Its tier is a segment of its own here (in
//! [`Tiers::segs`], never in placement nor in the pool's totals): same name and
//! transfer endpoint as the owner's memory segment, base [`DISK_BASE`] (above every
//! user-space address, so the owner's transfer engine tells tier reads from memory
//! reads), size the tier's capacity. The master allocates each record's extent there,
//! as it allocates replicas in memory segments, and keeps a disk entry per key.
//!
//! - Persist (`--offload_on_evict=false`): after a put ends, the object's owner is
//!   asked to write it from its memory replica into a new extent. The memory replica
//!   is pinned until the owner answers: if eviction or a remove frees it meanwhile,
//!   the free waits (`defer_free`), so the owner never copies bytes of a later object.
//! - Reads: a key missing from the memory index is looked up here; a ready entry is
//!   answered as one replica in the tier's segment (leased like a memory replica), and
//!   the reader fetches its bytes from the owner's transfer engine, which reads and
//!   checks the record.
//! - Remove, remove_all and upsert drop the entry and free its extent; the owner is
//!   told to discard the record. A full tier evicts its least recently used entries.
//! - An owner that restarts reports its records; the master keeps the entries that
//!   match, drops those the owner lost, and re-creates entries from the report when it
//!   did not know the owner (a master restarted without its index).

pub mod metrics;
mod ops;
pub mod service;
#[cfg(test)]
mod tests;

use crate::alloc::AllocHandle;
use crate::index::TenantUsage;
use crate::segments::{Mounted, Segment, SegmentRegistry};
use mooncake_common::SegmentDesc;
use mooncake_proto::{TierCounters, TierTask};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use mooncake_tier::DISK_BASE;

/// Tasks handed out per answer.
const TASKS_PER_ANSWER: usize = 256;

/// Promotions (`--promotion_on_hit`) asked for or running at once, over all tiers;
/// disk hits beyond it are served without one.
pub const PROMOTIONS_IN_FLIGHT: usize = 64;

/// Counters of the tier's control plane (exported by `metrics`).
#[derive(Debug, Default)]
pub struct TierStats {
    pub persists_started: AtomicU64,
    pub persisted: AtomicU64,
    pub persisted_bytes: AtomicU64,
    pub persist_failures: AtomicU64,
    pub skipped_full: AtomicU64,
    pub disk_hits: AtomicU64,
    pub disk_hit_bytes: AtomicU64,
    pub disk_evictions: AtomicU64,
    pub demotions: AtomicU64,
    /// Reads of a key being demoted, given the memory replica being written from.
    pub demoting_hits: AtomicU64,
    /// Objects eviction dropped under `--offload_on_evict` without writing them: their
    /// tier had no room and could evict nothing, or their owner has no tier.
    pub evict_drops: AtomicU64,
    pub promotions: AtomicU64,
    /// Disk hits that did not start a promotion: too many in flight.
    pub promotions_skipped: AtomicU64,
    /// Promotions that did not end with a memory replica (no room in the owner's
    /// DRAM, the key written meanwhile, a failed read).
    pub promotion_failures: AtomicU64,
    pub discards: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What a handed-out task does when its owner answers.
#[derive(Debug)]
enum Inflight {
    Persist {
        key: Box<str>,
        pin: (u32, u32),
        size: u64,
        demotion: bool,
    },
    /// A copy of a record back into the owner's DRAM, as the put `put_id`.
    Promote {
        key: Box<str>,
        put_id: u64,
    },
    Discard,
}

/// One owner's tier.
pub struct TierOwner {
    /// The tier's own id (its directory's), which outlives the owner's name.
    pub id: String,
    seg: RwLock<Arc<Segment>>,
    client_id: Mutex<String>,
    queue: Mutex<VecDeque<(TierTask, Inflight)>>,
    inflight: Mutex<HashMap<u64, Inflight>>,
    wake: tokio::sync::Notify,
    last_seen_ms: AtomicU64,
    counters: Mutex<TierCounters>,
    /// Keys whose disk hit asked for a promotion (started on the owner's next call).
    promotions: Mutex<Vec<Box<str>>>,
}

impl TierOwner {
    pub fn segment(&self) -> Arc<Segment> {
        self.seg.read().clone()
    }

    pub fn counters(&self) -> TierCounters {
        *self.counters.lock()
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    fn push(&self, task: TierTask, what: Inflight) {
        self.queue.lock().push_back((task, what));
        self.wake.notify_one();
    }

    fn free(&self, handle: AllocHandle, len: u64) {
        self.seg.read().free(handle, len);
    }
}

/// A key's record in a tier.
struct DiskEntry {
    owner: Arc<TierOwner>,
    handle: AllocHandle,
    disk_offset: u64,
    disk_len: u64,
    size: u64,
    /// The record is written (false while its persist task is out).
    ready: bool,
    task: u64,
    lease_until_ms: u64,
    last_used_ms: u64,
    /// While the record is written: the memory replica the write reads from (pinned
    /// until the owner answers), which readers are given meanwhile, so that a key
    /// being demoted, or evicted while it is persisted, is never a miss.
    demoting: Option<DemotingMem>,
}

/// The memory replica of a key being demoted.
struct DemotingMem {
    seg: Arc<Segment>,
    /// Offset in `seg` (as memory replicas are placed).
    offset: u64,
    /// Its pin (segment id, unit), which a reader's lease extends.
    pin: (u32, u32),
}

/// A memory replica a persist task reads: its free waits for the task, and for the
/// leases of readers that were given it while it was being demoted.
#[derive(Default)]
struct Pin {
    tasks: u32,
    deferred: Option<(u32, AllocHandle, u64)>,
    /// The last lease a reader of the demoting replica holds (0: none given).
    lease_until_ms: u64,
}

/// The disk entries by internal key. Every entry added or dropped moves its size to
/// or from its tenant's disk figure (`index::usage`), so the figures are exact without
/// a walk. Entries change only through these methods; the size of an entry in the map
/// never changes.
#[derive(Default)]
struct DiskEntries {
    map: HashMap<Box<str>, DiskEntry>,
    usage: Arc<TenantUsage>,
}

impl std::ops::Deref for DiskEntries {
    type Target = HashMap<Box<str>, DiskEntry>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl DiskEntries {
    fn with_usage(usage: Arc<TenantUsage>) -> Self {
        DiskEntries {
            map: HashMap::new(),
            usage,
        }
    }

    fn insert(&mut self, key: Box<str>, e: DiskEntry) -> Option<DiskEntry> {
        if let Some(o) = self.map.get(&key) {
            self.usage.disk_change(&key, o.size, false);
        }
        self.usage.disk_change(&key, e.size, true);
        self.map.insert(key, e)
    }

    fn remove(&mut self, key: &str) -> Option<DiskEntry> {
        let e = self.map.remove(key)?;
        self.usage.disk_change(key, e.size, false);
        Some(e)
    }

    /// The entry of `key` to change in place (its size must stay as it is).
    fn get_mut(&mut self, key: &str) -> Option<&mut DiskEntry> {
        self.map.get_mut(key)
    }

    fn retain(&mut self, mut keep: impl FnMut(&Box<str>, &mut DiskEntry) -> bool) {
        let usage = &self.usage;
        self.map.retain(|k, e| {
            let kept = keep(k, e);
            if !kept {
                usage.disk_change(k, e.size, false);
            }
            kept
        });
    }
}

/// All tiers and disk entries.
#[derive(Default)]
pub struct Tiers {
    segs: SegmentRegistry,
    owners: RwLock<HashMap<String, Arc<TierOwner>>>,
    entries: Mutex<DiskEntries>,
    pins: Mutex<HashMap<(u32, u32), Pin>>,
    next_task: AtomicU64,
    /// Bytes of memory replicas being demoted (freed when their writes end).
    demoting: AtomicU64,
    /// Keys being promoted (asked for or running), at most [`PROMOTIONS_IN_FLIGHT`].
    promoting: Mutex<std::collections::HashSet<Box<str>>>,
    /// How many times memory held back for a demotion went back (puts waiting for
    /// the memory of their own demotions watch it, `wait_freed`).
    freed: Mutex<u64>,
    freed_cv: Condvar,
    pub stats: TierStats,
}

/// A tier's figures for `/metrics` and the admin views.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierView {
    pub name: String,
    pub capacity: u64,
    pub used: u64,
    pub objects: u64,
    pub last_seen_ms: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub write_failures: u64,
    pub checksum_failures: u64,
    pub demotions: u64,
    pub promotions: u64,
}

impl Tiers {
    /// Tiers whose records are counted in `usage` (the index's tenant figures).
    ///
    /// Task ids start from the wall clock in nanoseconds and grow by one per task,
    /// far slower than the clock, so a later master (a restarted one, an HA term that
    /// took over) hands out ids above every id an earlier one did: a result an owner
    /// still brings from a task of the earlier master never settles a task of this one.
    pub fn with_usage(usage: Arc<TenantUsage>) -> Self {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Tiers {
            entries: Mutex::new(DiskEntries::with_usage(usage)),
            next_task: AtomicU64::new(now_ns),
            ..Default::default()
        }
    }

    fn task_id(&self) -> u64 {
        self.next_task.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The tier of the owner whose segment is `name` now.
    pub fn owner(&self, name: &str) -> Option<Arc<TierOwner>> {
        self.owners
            .read()
            .values()
            .find(|o| o.seg.read().desc.name == name)
            .cloned()
    }

    pub fn has_owners(&self) -> bool {
        !self.owners.read().is_empty()
    }

    /// Bytes of DRAM that demotions are writing out (freed when they end).
    pub fn demoting_bytes(&self) -> u64 {
        self.demoting.load(Ordering::Relaxed)
    }

    /// A mark to hand [`Tiers::wait_freed`]: read it before the demotions whose
    /// memory one waits for are started, so that no free is missed.
    pub(crate) fn freed_epoch(&self) -> u64 {
        *self.freed.lock()
    }

    /// Memory held back for a demotion went back.
    fn note_freed(&self) {
        *self.freed.lock() += 1;
        self.freed_cv.notify_all();
    }

    /// Blocks until memory held back for a demotion has gone back since `epoch`
    /// was read, or until `deadline`; whether any did.
    pub(crate) fn wait_freed(&self, epoch: u64, deadline: std::time::Instant) -> bool {
        let mut g = self.freed.lock();
        while *g == epoch {
            if self.freed_cv.wait_until(&mut g, deadline).timed_out() {
                break;
            }
        }
        *g != epoch
    }

    /// Promotions asked for or running.
    pub fn promoting(&self) -> usize {
        self.promoting.lock().len()
    }

    /// Whether `key` has a disk entry (written or being written).
    pub fn contains(&self, key: &str) -> bool {
        self.has_owners() && self.entries.lock().contains_key(key)
    }

    /// Every tier's figures.
    pub fn views(&self) -> Vec<TierView> {
        let owners: Vec<Arc<TierOwner>> = self.owners.read().values().cloned().collect();
        let mut objects: HashMap<String, u64> = HashMap::new();
        for e in self.entries.lock().values() {
            *objects.entry(e.owner.id.clone()).or_default() += u64::from(e.ready);
        }
        let mut v: Vec<TierView> = owners
            .iter()
            .map(|o| {
                let seg = o.segment();
                let c = o.counters();
                TierView {
                    name: seg.desc.name.clone(),
                    capacity: seg.capacity(),
                    used: seg.used(),
                    objects: objects.get(&o.id).copied().unwrap_or(0),
                    last_seen_ms: o.last_seen_ms(),
                    reads: c.reads,
                    read_bytes: c.read_bytes,
                    writes: c.writes,
                    write_bytes: c.write_bytes,
                    write_failures: c.write_failures,
                    checksum_failures: c.checksum_failures,
                    demotions: c.demotions,
                    promotions: c.promotions,
                }
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Forgets a tier and every entry in it.
    fn purge(&self, owner: &Arc<TierOwner>) {
        let name = owner.segment().desc.name.clone();
        tracing::warn!(segment = %name, tier = %owner.id, "SSD tier: another tier took this owner's name; the old tier's objects are dropped");
        self.owners.write().remove(&owner.id);
        self.segs.remove(&name);
        self.entries
            .lock()
            .retain(|_, e| !Arc::ptr_eq(&e.owner, owner));
    }

    /// The tier of `name`, created or updated from an owner's call. `fresh`: the
    /// master did not know it (its reported records are taken as they are).
    fn register(
        &self,
        client_id: &str,
        tier_id: &str,
        desc: SegmentDesc,
        purged: &mut Vec<Arc<TierOwner>>,
    ) -> Result<(Arc<TierOwner>, bool, bool), String> {
        let known = self.owners.read().get(tier_id).cloned();
        if let Some(o) = known {
            let restarted = *o.client_id.lock() != client_id;
            let cur = o.segment();
            if restarted
                || cur.desc.name != desc.name
                || cur.desc.transport_endpoint != desc.transport_endpoint
            {
                let old = o.segment();
                let mut desc = desc;
                desc.size = old.desc.size;
                let seg = self
                    .segs
                    .resume(&old, client_id, desc)
                    .map_err(|e| format!("{e:?}"))?;
                *o.seg.write() = seg;
                *o.client_id.lock() = client_id.to_string();
            }
            return Ok((o, false, restarted));
        }
        // Another tier under this name (its owner came back with a new directory):
        // its entries point into records that no longer exist.
        let stale: Vec<Arc<TierOwner>> = self
            .owners
            .read()
            .values()
            .filter(|o| o.segment().desc.name == desc.name)
            .cloned()
            .collect();
        for o in stale {
            self.purge(&o);
            purged.push(o);
        }
        let seg = match self.segs.mount(client_id, desc.clone()) {
            Ok(Mounted::New(s)) | Ok(Mounted::Existing(s)) => s,
            Err(e) => return Err(format!("tier of {}: {e:?}", desc.name)),
        };
        let o = Arc::new(TierOwner {
            id: tier_id.to_string(),
            seg: RwLock::new(seg),
            client_id: Mutex::new(client_id.to_string()),
            queue: Mutex::new(VecDeque::new()),
            inflight: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            last_seen_ms: AtomicU64::new(0),
            counters: Mutex::new(TierCounters::default()),
            promotions: Mutex::new(Vec::new()),
        });
        self.owners.write().insert(tier_id.to_string(), o.clone());
        Ok((o, true, false))
    }
}

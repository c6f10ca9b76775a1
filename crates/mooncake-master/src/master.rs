//! `Master`: all of the master's state, and the operations the gRPC service and the
//! admin port call. The operations live in submodules by concern (`put`, `read`,
//! `remove`, `mount`); eviction, liveness and the workers are their own modules.

pub(crate) mod counters;
mod finish;
mod mount;
mod put;
mod read;
mod reaper;
mod remove;
mod views;

pub use counters::MasterCounters;
pub use put::WriteKind;
pub use views::{KeyInfo, MasterStats, ReplicaInfo, SegmentInfo};

use crate::api::Placed;
use crate::config::MasterConfig;
use crate::index::{Index, IndexLimit, Replica};
use crate::lease::{ms, Clock};
use crate::liveness::Liveness;
use crate::segments::SegmentRegistry;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// All master state. `Send + Sync`; share it as `Arc<Master>`.
pub struct Master {
    cfg: MasterConfig,
    pub(crate) clock: Clock,
    pub(crate) index: Index,
    /// The bound on the index's object count (`--index_memory_limit`).
    index_limit: IndexLimit,
    pub(crate) segments: SegmentRegistry,
    pub(crate) liveness: Liveness,
    counters: MasterCounters,
    view_id: u64,
    next_put_id: AtomicU64,
    /// The eviction policy and its state (`eviction`).
    pub(crate) eviction: crate::eviction::Eviction,
    /// One eviction at a time (background or on behalf of a put that found no space).
    pub(crate) evict_lock: Mutex<()>,
    /// Wakes the eviction worker early (a put found no space).
    pub(crate) evict_wakeup: tokio::sync::Notify,
    pub(crate) worker_status: Mutex<Vec<(String, String)>>,
    /// Upserted-away replicas waiting for their readers' leases to end.
    deferred: Mutex<Vec<finish::DeferredFree>>,
    /// The SSD tiers and their disk entries (`tier`).
    pub(crate) tiers: crate::tier::Tiers,
    /// Which tenant mounted each segment (authentication on): placement keeps a
    /// tenant's own segments for its objects.
    pub(crate) segment_tenants: crate::tenancy::SegmentTenants,
    /// The segments' grant secrets (authentication on, `grants`).
    pub(crate) grant_secrets: crate::grants::SegmentSecrets,
}

impl Master {
    pub fn new(cfg: MasterConfig) -> Arc<Master> {
        // 53 random bits at most: Prometheus carries `master_view_id` as a float, which
        // holds integers exactly only up to 2^53, and operators compare it with the
        // view id clients log.
        Self::with_view_id(cfg, rand::random::<u64>() >> 11 | 1)
    }

    /// A master that continues a previous one's view (an HA takeover rebuilt from
    /// replicated state: clients keep their mounts).
    pub fn with_view_id(cfg: MasterConfig, view_id: u64) -> Arc<Master> {
        let clock = Clock::default();
        let index = Index::default();
        // Records on the SSD tiers are counted per tenant beside the memory charge.
        let tiers = crate::tier::Tiers::with_usage(index.usage().clone());
        Arc::new(Master {
            liveness: Liveness::new(clock.now_ms()),
            index_limit: IndexLimit::resolve(cfg.index_memory_limit),
            eviction: crate::eviction::Eviction::new(cfg.eviction_policy),
            cfg,
            clock,
            index,
            segments: SegmentRegistry::default(),
            counters: MasterCounters::default(),
            view_id,
            next_put_id: AtomicU64::new(1),
            evict_lock: Mutex::new(()),
            evict_wakeup: tokio::sync::Notify::new(),
            worker_status: Mutex::new(Vec::new()),
            deferred: Mutex::new(Vec::new()),
            tiers,
            segment_tenants: Default::default(),
            grant_secrets: Default::default(),
        })
    }

    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &MasterCounters {
        &self.counters
    }

    /// Identifies this master instance; clients seeing it change re-mount.
    pub fn view_id(&self) -> u64 {
        self.view_id
    }

    /// The bound on the index (resolved from `--index_memory_limit` at start).
    pub fn index_limit(&self) -> IndexLimit {
        self.index_limit
    }

    /// Named background workers and what each last did.
    pub fn workers_status(&self) -> Vec<(String, String)> {
        self.worker_status.lock().clone()
    }

    pub(crate) fn set_worker_status(&self, name: &str, status: String) {
        let mut w = self.worker_status.lock();
        match w.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = status,
            None => w.push((name.to_string(), status)),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn lease_ms(&self) -> u64 {
        ms(self.cfg.default_kv_lease_ttl)
    }

    pub(crate) fn new_put_id(&self) -> u64 {
        self.next_put_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Put ids below this may have been handed out.
    pub(crate) fn put_id_watermark(&self) -> u64 {
        self.next_put_id.load(Ordering::Relaxed)
    }

    /// Never hands out a put id below `next` (a takeover continues the old ids).
    pub(crate) fn advance_put_ids(&self, next: u64) {
        self.next_put_id.fetch_max(next, Ordering::Relaxed);
    }

    /// Returns replicas' space to their segments.
    pub(crate) fn free_replicas(&self, replicas: &[Replica], size: u64) {
        for r in replicas {
            // A persist to the SSD tier still reads it: freed when that ends.
            if self.tiers.defer_free(r, size) {
                continue;
            }
            if let Some(seg) = self.segments.get(r.seg) {
                seg.free(r.handle, size);
            }
        }
    }
}

/// The segments one batch's answers refer to, each looked up in the registry once (a
/// batch's replicas live in a handful of segments): saves a registry read lock per
/// replica.
#[derive(Default)]
pub(crate) struct SegmentCache {
    segs: Vec<(u32, Option<Arc<crate::segments::Segment>>)>,
}

impl SegmentCache {
    /// How many segments the cache remembers (a linear scan; beyond it, lookups go to
    /// the registry as before).
    const CAP: usize = 16;

    pub(crate) fn get(&mut self, m: &Master, id: u32) -> Option<Arc<crate::segments::Segment>> {
        if let Some((_, s)) = self.segs.iter().find(|(i, _)| *i == id) {
            return s.clone();
        }
        let s = m.segments.get(id);
        if self.segs.len() < Self::CAP {
            self.segs.push((id, s.clone()));
        }
        s
    }

    /// [`Master::placed`] through the cache.
    pub(crate) fn placed(&mut self, m: &Master, r: &Replica) -> Option<Placed> {
        let segment = self.get(m, r.seg)?;
        Some(Placed {
            offset: segment.offset_of(r.handle),
            segment,
        })
    }
}

#[cfg(test)]
mod tests;

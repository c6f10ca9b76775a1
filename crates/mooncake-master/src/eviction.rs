//! Eviction: least recently used first, among objects that are complete, have no
//! write in flight, whose lease expired and that are not hard-pinned. Soft-pinned
//! objects are taken only in a second pass, and only when
//! `allow_evict_soft_pinned_objects` is set.
//!
//! A round walks the index twice, one shard at a time and without cloning keys: first
//! it collects (access tick, bytes) of the candidates and finds the tick below which
//! enough bytes lie; then it removes the candidates at or below that tick (re-checking
//! each, since locks were released in between).

use crate::index::SHARDS;
use crate::master::Master;
use std::sync::atomic::Ordering;

/// What one eviction round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EvictionReport {
    pub objects: u64,
    pub bytes: u64,
}

impl Master {
    /// The background round: when usage is above the high watermark, evicts
    /// `eviction_ratio` of the capacity (or down to the watermark, if more).
    pub fn run_eviction(&self) -> EvictionReport {
        let (used, cap) = self.segments.totals();
        let cfg = self.config();
        let mark = (cap as f64 * cfg.eviction_high_watermark_ratio) as u64;
        if cap == 0 || used <= mark {
            return EvictionReport::default();
        }
        let target = ((cap as f64 * cfg.eviction_ratio) as u64)
            .max(used - mark)
            .max(1);
        self.evict_bytes(target)
    }

    /// For a put that found no space: evicts at least `bytes` (or the usual round's
    /// share, if larger). Whether anything was evicted.
    pub(crate) fn evict_for(&self, bytes: u64) -> bool {
        let (_, cap) = self.segments.totals();
        let share = (cap as f64 * self.config().eviction_ratio) as u64;
        self.evict_bytes(bytes.max(share).max(1)).objects > 0
    }

    /// Evicts LRU-first until `target` bytes are freed or no candidate is left.
    pub fn evict_bytes(&self, target: u64) -> EvictionReport {
        let _one_at_a_time = self.evict_lock.lock();
        let mut report = EvictionReport::default();
        let passes: &[bool] = if self.config().allow_evict_soft_pinned_objects {
            &[false, true]
        } else {
            &[false]
        };
        for &soft_ok in passes {
            if report.bytes >= target {
                break;
            }
            let r = self.evict_pass(target - report.bytes, soft_ok);
            report.objects += r.objects;
            report.bytes += r.bytes;
        }
        let c = self.counters();
        c.eviction_runs.fetch_add(1, Ordering::Relaxed);
        c.evicted_objects
            .fetch_add(report.objects, Ordering::Relaxed);
        c.evicted_bytes.fetch_add(report.bytes, Ordering::Relaxed);
        report
    }

    fn evict_pass(&self, target: u64, soft_ok: bool) -> EvictionReport {
        let now = self.now_ms();
        let mut cands: Vec<(u64, u64)> = Vec::new();
        for i in 0..SHARDS {
            let shard = self.index.lock_shard(i);
            cands.extend(
                shard
                    .values()
                    .filter(|o| o.evictable(now, soft_ok))
                    .map(|o| (o.last_access, o.size * o.replicas.len() as u64)),
            );
        }
        if cands.is_empty() {
            return EvictionReport::default();
        }
        cands.sort_unstable_by_key(|c| c.0);
        let mut sum = 0u64;
        let mut cutoff = cands[cands.len() - 1].0;
        for (tick, bytes) in &cands {
            sum += bytes;
            if sum >= target {
                cutoff = *tick;
                break;
            }
        }
        drop(cands);
        let mut report = EvictionReport::default();
        for i in 0..SHARDS {
            let mut shard = self.index.lock_shard(i);
            let doomed: Vec<Box<str>> = shard
                .iter()
                .filter(|(_, o)| o.last_access <= cutoff && o.evictable(now, soft_ok))
                .map(|(k, _)| k.clone())
                .collect();
            let removed: Vec<_> = doomed.iter().filter_map(|k| shard.remove(k)).collect();
            drop(shard);
            for o in &removed {
                report.objects += 1;
                report.bytes += o.size * o.replicas.len() as u64;
                self.free_object(o);
            }
        }
        report
    }
}

//! Eviction: least recently used first, among objects that are complete, have no
//! write in flight, whose lease expired and that are not hard-pinned. Soft-pinned
//! objects are taken only in a second pass, and only when
//! `allow_evict_soft_pinned_objects` is set.
//!
//! A round walks the index twice, one shard at a time and without cloning keys: first
//! it collects (access tick, bytes) of the candidates and finds the tick below which
//! enough bytes lie; then it removes the candidates at or below that tick (re-checking
//! each, since locks were released in between).
//!
//! The object limit (`--index_memory_limit`, see `index::limit`) is enforced per
//! shard: a put of a new key into a shard at its share evicts, under that shard's lock
//! it already holds, the shard's least recently used evictable objects
//! (`eviction_ratio` of the share, at least one), by the same rules as above.

use crate::index::{Shard, SHARDS};
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

impl Master {
    /// Makes room for one more object in `shard`, which a put of a new key found at
    /// its share of the object limit: evicts `eviction_ratio` of the share (at least
    /// one object), least recently used first, soft-pinned objects only if allowed and
    /// needed. Whether the shard has room now; if not, nothing in it is evictable.
    pub(crate) fn make_room_in_shard(&self, shard: &mut Shard) -> bool {
        let cap = self.index_limit().per_shard;
        if shard.len() < cap {
            return true;
        }
        let want = ((cap as f64 * self.config().eviction_ratio) as usize)
            .max(shard.len() + 1 - cap)
            .max(1);
        let now = self.now_ms();
        let passes: &[bool] = if self.config().allow_evict_soft_pinned_objects {
            &[false, true]
        } else {
            &[false]
        };
        let mut report = EvictionReport::default();
        for &soft_ok in passes {
            if report.objects as usize >= want {
                break;
            }
            let r = self.evict_lru_in_shard(shard, want - report.objects as usize, now, soft_ok);
            report.objects += r.objects;
            report.bytes += r.bytes;
        }
        let c = self.counters();
        c.evicted_objects
            .fetch_add(report.objects, Ordering::Relaxed);
        c.evicted_bytes.fetch_add(report.bytes, Ordering::Relaxed);
        c.limit_evictions
            .fetch_add(report.objects, Ordering::Relaxed);
        shard.len() < cap
    }

    /// Whether the shard of `key` is below its share of the object limit (the put
    /// path asks after a failure, to tell a full index from a full pool).
    pub(crate) fn shard_has_room(&self, key: &str) -> bool {
        self.index.lock(key).len() < self.index_limit().per_shard
    }

    /// Evicts up to `n` of the shard's evictable objects, oldest access first.
    fn evict_lru_in_shard(
        &self,
        shard: &mut Shard,
        n: usize,
        now: u64,
        soft_ok: bool,
    ) -> EvictionReport {
        let mut ticks: Vec<u64> = shard
            .values()
            .filter(|o| o.evictable(now, soft_ok))
            .map(|o| o.last_access)
            .collect();
        if ticks.is_empty() || n == 0 {
            return EvictionReport::default();
        }
        let k = n.min(ticks.len()) - 1;
        let cutoff = *ticks.select_nth_unstable(k).1;
        drop(ticks);
        let doomed: Vec<Box<str>> = shard
            .iter()
            .filter(|(_, o)| o.last_access <= cutoff && o.evictable(now, soft_ok))
            .map(|(k, _)| k.clone())
            .collect();
        let mut report = EvictionReport::default();
        for k in &doomed {
            if let Some(o) = shard.remove(k) {
                report.objects += 1;
                report.bytes += o.size * o.replicas.len() as u64;
                self.free_object(&o);
            }
        }
        report
    }
}

#[cfg(test)]
mod limit_tests {
    use crate::config::MasterConfig;
    use crate::index::{limit, IndexMemoryLimit};
    use crate::master::Master;
    use crate::metrics::MasterMetrics;
    use mooncake_common::ErrorCode;
    use mooncake_common::SegmentDesc;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// The smallest limit: 1024 objects, 16 per shard.
    fn small() -> Arc<Master> {
        let bytes = limit::MIN_OBJECTS * limit::BYTES_PER_OBJECT_BUDGET;
        let m = Master::new(MasterConfig {
            index_memory_limit: IndexMemoryLimit::Bytes(bytes),
            eviction_ratio: 0.05,
            ..Default::default()
        });
        let desc = SegmentDesc {
            name: "s".into(),
            owner: "s".into(),
            size: 1 << 30,
            base: 0x1000_0000,
            protocol: "tcp".into(),
            transport_endpoint: "127.0.0.1:1".into(),
            ..Default::default()
        };
        assert_eq!(m.mount_segment("c", desc), Ok(()));
        m
    }

    fn put(m: &Master, key: &str) -> Result<(), ErrorCode> {
        let r = m.put_start("c", key, 1024, &Default::default())?;
        m.write_end("c", key, r.put_id)
    }

    #[test]
    fn puts_beyond_the_limit_evict_least_recently_used_and_succeed() {
        let m = small();
        let cap = m.index_limit().objects;
        assert_eq!(cap, 1024);
        let n = 6_000;
        for i in 0..n {
            assert_eq!(put(&m, &format!("key-{i:08}")), Ok(()), "put {i}");
            if i % 97 == 0 {
                assert!(m.stats().key_count <= cap, "over the limit at put {i}");
            }
        }
        let s = m.stats();
        assert!(s.key_count <= cap && s.key_count > cap / 2, "{s:?}");
        assert_eq!(s.object_count_limit, 1024);
        let c = m.counters();
        let evicted = c.limit_evictions.load(Ordering::Relaxed);
        assert_eq!(evicted, n - s.key_count, "every missing object was evicted");
        assert_eq!(
            c.sync_evictions.load(Ordering::Relaxed),
            0,
            "space was never short"
        );
        // Least recently used went first: the newest keys are all there, the oldest gone.
        for i in n - 100..n {
            assert_eq!(
                m.exist(&format!("key-{i:08}")),
                Ok(true),
                "recent key {i} evicted"
            );
        }
        for i in 0..100 {
            assert_eq!(
                m.exist(&format!("key-{i:08}")),
                Ok(false),
                "old key {i} kept"
            );
        }
        // Space of evicted objects went back to the segment.
        assert_eq!(s.allocated_bytes, s.key_count * 1024);
    }

    #[test]
    fn a_full_index_of_unevictable_objects_answers_no_available_handle() {
        let m = small();
        // Puts that never end are not evictable; fill every shard with them.
        let mut started = Vec::new();
        let mut refused = 0;
        for i in 0..3_000 {
            let key = format!("pending-{i}");
            match m.put_start("c", &key, 1024, &Default::default()) {
                Ok(r) => started.push((key, r.put_id)),
                Err(e) => {
                    assert_eq!(e, ErrorCode::NoAvailableHandle);
                    refused += 1;
                }
            }
        }
        assert_eq!(started.len() as u64, m.index_limit().objects);
        assert_eq!(refused, 3_000 - started.len());
        let c = m.counters();
        assert_eq!(c.evicted_objects.load(Ordering::Relaxed), 0);
        assert_eq!(
            c.eviction_runs.load(Ordering::Relaxed),
            0,
            "no space eviction"
        );
        // Once they complete they are evictable again, and new puts succeed.
        for (k, id) in &started {
            assert_eq!(m.write_end("c", k, *id), Ok(()));
        }
        assert_eq!(put(&m, "pending-0-again"), Ok(()));
        assert!(m.stats().key_count <= m.index_limit().objects);
    }

    #[test]
    fn the_gauges_report_the_limit_and_the_index_memory() {
        let m = small();
        let metrics = MasterMetrics::new(prometheus::Registry::new()).unwrap();
        let text = metrics.render(&m).unwrap();
        assert!(text.contains("\nmaster_object_count_limit 1024"), "{text}");
        let limit = limit::MIN_OBJECTS * limit::BYTES_PER_OBJECT_BUDGET;
        assert!(text.contains(&format!("\nmaster_index_memory_limit_bytes {limit}")));
        let before = m.stats().index_memory_bytes;
        for i in 0..500 {
            assert_eq!(put(&m, &format!("key-{i:08}")), Ok(()));
        }
        let s = m.stats();
        assert!(s.index_memory_bytes > before + 500 * 24, "{s:?}");
        assert!(s.index_memory_bytes <= s.index_memory_limit_bytes, "{s:?}");
        let text = metrics.render(&m).unwrap();
        assert!(text.contains(&format!(
            "\nmaster_index_memory_bytes {}",
            s.index_memory_bytes
        )));
        let unlimited = Master::new(MasterConfig {
            index_memory_limit: IndexMemoryLimit::Unlimited,
            ..Default::default()
        });
        assert_eq!(unlimited.stats().object_count_limit, 0);
    }
}

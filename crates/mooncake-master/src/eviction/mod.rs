//! Eviction: which objects go when the pool or the index is full, and when.
//!
//! *When* is the rounds' business and the same for every policy: a background round
//! runs when usage is above `eviction_high_watermark_ratio` and frees
//! `eviction_ratio` of the capacity (or down to the watermark, if more); a put that
//! finds no space evicts at once on its own behalf (`evict_for`; with an SSD tier,
//! `demote_for`, which waits for the tier's writes); a put of a new key
//! into an index shard at its share of `--index_memory_limit` evicts in that shard.
//! A write that takes usage over the watermark wakes the round at once and marks the
//! clock: the round it triggers never takes an object used at or after that mark, so
//! no object is evicted by the round its own put triggered.
//!
//! *Which* is the policy's (`policy.rs` has the contract; `lru.rs`, `two_queue.rs`):
//! among objects that are complete, have no write in flight, whose read guard is over
//! and that are not hard-pinned (soft-pinned objects only in a second pass, and only
//! when `allow_evict_soft_pinned_objects` is set), the lowest ranks go first.
//!
//! *Whose* comes before which: with several tenants (authentication on), the
//! candidates of tenants that hold more than their share of the pool
//! ([`crate::index::usage::TenantUsage::over_share`]: their quota, or an equal part
//! of the pool among the tenants holding anything) go first, each up to its excess
//! and lowest rank first within it; only what that does not free is taken from
//! everyone by rank. So one tenant flooding the pool evicts its own objects, not
//! another tenant's hot set. This holds for the rounds and a put's own eviction; the
//! per-shard object limit (`make_room_in_shard`) ranks without tenants. With one
//! tenant nothing changes (no tenant is over an equal share of one).
//!
//! A round walks the index twice, one shard at a time and without cloning keys: first
//! it collects (rank, bytes) of the candidates and finds the rank below which enough
//! bytes lie (a weighted quickselect, linear in the candidates); then it removes the
//! candidates at or below that rank (re-checking each, since locks were released in
//! between).

pub mod ghost;
mod lru;
pub mod policy;
mod two_queue;

pub use policy::{Clock, EvictState, EvictionPolicy, PolicyKind, Round};
pub use two_queue::PROTECTED_AGE;

use crate::index::usage::OverShare;
use crate::index::{Object, Shard, SHARDS};
use crate::master::Master;
use mooncake_common::auth::split_key;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many pools' worth of evictions the memory of evicted keys reaches back (a
/// conversation's next turn usually comes within them). Measured: 2 loses on the
/// conversation trace, more than 3 gains nothing and costs memory.
pub const GHOST_TURNOVERS: u64 = 3;

/// What one eviction round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EvictionReport {
    pub objects: u64,
    pub bytes: u64,
}

/// The master's eviction state: the policy, its clock and the pending round's mark.
/// (The memory of evicted keys, for policies that want it, lives in each index shard:
/// `ghost.rs`.)
#[derive(Debug)]
pub struct Eviction {
    policy: Box<dyn EvictionPolicy>,
    /// Whether the policy wants evicted keys remembered.
    remembers: bool,
    /// Objects evicted so far (the ghosts' clock).
    evictions: AtomicU64,
    /// How many evictions back the ghosts reach: [`GHOST_TURNOVERS`] times the objects
    /// the last round saw.
    ghost_window: AtomicU64,
    clock: AtomicU64,
    /// The lowest clock of the writes that took usage over the high watermark since
    /// the last round began (`u64::MAX`: none).
    trigger: AtomicU64,
}

impl Eviction {
    pub fn new(kind: PolicyKind) -> Self {
        let policy = kind.build();
        Self {
            remembers: policy.remembers_evicted(),
            evictions: AtomicU64::new(0),
            ghost_window: AtomicU64::new(0),
            policy,
            clock: AtomicU64::new(1),
            trigger: AtomicU64::new(u64::MAX),
        }
    }

    pub fn policy(&self) -> &dyn EvictionPolicy {
        &*self.policy
    }

    /// The clock reads and checks are stamped with.
    pub fn now(&self) -> Clock {
        self.clock.load(Ordering::Relaxed)
    }

    /// Clock values for a batch of `n` writes: the `i`-th gets [`Eviction::write_clock`].
    /// All are above what reads and checks were stamped with so far (they read
    /// [`Eviction::now`], the newest write's clock), so a round's mark at a write
    /// leaves earlier reads among its candidates.
    pub fn reserve(&self, n: usize) -> Clock {
        self.clock.fetch_add(n.max(1) as u64, Ordering::Relaxed) + 1
    }

    /// The clock of the `i`-th of `n` writes reserved at `base`: later keys of a batch
    /// get earlier clocks, so that a prefix's tail ranks below its head.
    pub fn write_clock(base: Clock, n: usize, i: usize) -> Clock {
        base + (n.max(1) - 1 - i.min(n.max(1) - 1)) as u64
    }

    /// The state of an object a put creates into `shard` (whose ghost the key's hash,
    /// computed only for policies that ask, is looked up in).
    pub fn created(
        &self,
        shard: &mut Shard,
        hash: impl FnOnce() -> u64,
        clock: Clock,
        position: usize,
    ) -> EvictState {
        let readmitted = self.remembers
            && shard.ghost().recall(
                hash(),
                self.evictions.load(Ordering::Relaxed),
                self.ghost_window.load(Ordering::Relaxed),
            );
        self.policy.created(clock, position, readmitted)
    }

    pub fn read(&self, o: &mut Object, clock: Clock, position: usize) {
        o.evict = self.policy.read(o.evict, clock, position);
    }

    pub fn checked(&self, o: &mut Object, clock: Clock, position: usize) {
        o.evict = self.policy.checked(o.evict, clock, position);
    }

    /// An object of `shard` was evicted: its key is remembered, for policies that ask.
    fn evicted(&self, shard: &mut Shard, hash: u64) {
        if self.remembers {
            let now = self.evictions.fetch_add(1, Ordering::Relaxed) + 1;
            let window = self.ghost_window.load(Ordering::Relaxed);
            shard.ghost().remember(hash, now, window);
        }
    }

    /// A round saw `objects` objects: the ghosts reach [`GHOST_TURNOVERS`] times that.
    fn size_ghosts(&self, objects: u64) {
        self.ghost_window
            .store(objects.saturating_mul(GHOST_TURNOVERS), Ordering::Relaxed);
    }

    /// A write stamped `clock` took usage over the high watermark: the round it
    /// triggers leaves objects used at or after `clock` alone.
    pub fn mark_trigger(&self, clock: Clock) {
        self.trigger.fetch_min(clock, Ordering::Relaxed);
    }
}

/// The smallest rank such that the candidates ranked at or below it hold at least
/// `target` bytes (`u64::MAX` when all of them hold less): a weighted quickselect.
pub fn weighted_cutoff(cands: &mut [(u64, u64)], mut target: u64) -> u64 {
    let total: u64 = cands.iter().map(|c| c.1).sum();
    if total <= target {
        return u64::MAX;
    }
    let mut s = cands;
    loop {
        if s.len() <= 32 {
            s.sort_unstable_by_key(|c| c.0);
            for &(rank, bytes) in s.iter() {
                if bytes >= target {
                    return rank;
                }
                target -= bytes;
            }
            return s.last().map_or(u64::MAX, |c| c.0);
        }
        let mid = s.len() / 2;
        s.select_nth_unstable_by_key(mid, |c| c.0);
        let left: u64 = s[..=mid].iter().map(|c| c.1).sum();
        if left >= target {
            s = &mut s[..=mid];
        } else {
            target -= left;
            s = &mut s[mid + 1..];
        }
    }
}

impl Master {
    /// The background round: when usage is above the high watermark, evicts
    /// `eviction_ratio` of the capacity (or down to the watermark, if more), leaving
    /// alone what was used since the write that triggered it.
    pub fn run_eviction(&self) -> EvictionReport {
        let floor = self.eviction.trigger.swap(u64::MAX, Ordering::Relaxed);
        let (used, cap) = self.segments.totals();
        // Memory that demotions to the SSD tier are writing out is as good as free:
        // counting it again would demote twice what the round needs.
        let used = used.saturating_sub(self.tiers.demoting_bytes());
        let cfg = self.config();
        let mark = (cap as f64 * cfg.eviction_high_watermark_ratio) as u64;
        if cap == 0 || used <= mark {
            return EvictionReport::default();
        }
        let target = ((cap as f64 * cfg.eviction_ratio) as u64)
            .max(used - mark)
            .max(1);
        self.evict_bytes_below(target, floor, true)
    }

    /// Whether usage is above the high watermark now; if so, marks `clock` as the
    /// trigger and wakes the round. Called after a write start allocated.
    pub(crate) fn check_watermark(&self, clock: Clock) {
        let (used, cap) = self.segments.totals();
        let mark = (cap as f64 * self.config().eviction_high_watermark_ratio) as u64;
        if cap > 0 && used > mark {
            self.eviction.mark_trigger(clock);
            self.evict_wakeup.notify_one();
        }
    }

    /// The most bytes one write may take and still be kept: above the high watermark
    /// on its own, the next round would evict it. `None` when the watermark is 0 (every
    /// round empties the pool; nothing is refused for it).
    pub(crate) fn keepable_bytes(&self) -> Option<u64> {
        let hwm = self.config().eviction_high_watermark_ratio;
        let (_, cap) = self.segments.totals();
        (hwm > 0.0 && cap > 0).then_some((cap as f64 * hwm) as u64)
    }

    /// Whether a put that finds no space makes room with `demote_for` (an SSD tier
    /// is in use: evicted memory may be held back for a tier write) rather than
    /// `evict_for`.
    pub(crate) fn puts_wait_for_tier(&self) -> bool {
        self.config().enable_offload && self.tiers.has_owners()
    }

    /// For a put that found no space: evicts at least `bytes` (or the usual round's
    /// share, if larger). Whether anything was evicted. (Without a tier to demote to;
    /// with one, see [`Master::demote_for`].)
    pub(crate) fn evict_for(&self, bytes: u64) -> bool {
        let (_, cap) = self.segments.totals();
        let share = (cap as f64 * self.config().eviction_ratio) as u64;
        let r = self.evict_bytes_below(bytes.max(share).max(1), u64::MAX, false);
        r.objects > 0
    }

    /// For a put that found no space with an SSD tier in use: evicts the policy's
    /// next victims, `bytes` worth (less what evictions waiting for a tier write will
    /// free anyway), demoting them under `--offload_on_evict`, and waits, until
    /// `deadline` at most, for memory held back for a tier write to come back.
    /// Whether the put should try again (false: nothing can be freed, or the time is
    /// up, and the put answers -200). (Persisting after put, the victims are on disk
    /// already or being written, and their memory is held back the same way until
    /// the write ends: the put waits for it too, rather than failing.)
    ///
    /// Why wait rather than drop: a demoted object's memory can be freed only once
    /// its owner has written it to disk (it is the source of the write), so a put
    /// that needs memory now can only drop victims (losing objects the tier had room
    /// for) or wait for the write. The wait is one owner round trip plus the write
    /// (milliseconds: the owner's long poll is woken by the task), while a dropped
    /// object is lost to every later reader; and the puts this happens to are those
    /// that outran the rounds (a burst, or a pool kept full), which the wait paces to
    /// the tier's write rate instead of failing them. Victims that already have a
    /// disk record are dropped from DRAM without loss and free at once; a victim the
    /// tier has no room for (or whose owner has no tier) is dropped, as without a
    /// tier. Only a put whose wait runs out (an owner that stopped answering) fails,
    /// with -200, and loses nothing.
    pub(crate) fn demote_for(&self, bytes: u64, deadline: std::time::Instant) -> bool {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        let epoch = self.tiers.freed_epoch();
        let pending = self.tiers.held_back_bytes();
        let used = self.segments.totals().0;
        let r = if pending < bytes {
            self.evict_bytes_below(bytes - pending, u64::MAX, true)
        } else {
            EvictionReport::default()
        };
        self.evict_wakeup.notify_one();
        if self.segments.totals().0 < used {
            return true; // some victims were freed at once: try them first
        }
        if r.objects == 0 && self.tiers.held_back_bytes() == 0 {
            return false; // nothing evictable, nothing on its way back
        }
        // The put's thread blocks here. On the async runtime it first hands its
        // other tasks to another thread (the owner's answer, which ends the wait,
        // is served by this same runtime); on a single-threaded runtime nothing
        // could answer meanwhile, so it does not wait at all.
        let wait = || self.tiers.wait_freed(epoch, deadline);
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Err(_) => {
                wait();
            }
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => return false,
            Ok(_) => {
                tokio::task::block_in_place(wait);
            }
        }
        true
    }

    /// Evicts lowest rank first until `target` bytes are freed or no candidate is left
    /// (demoting to the SSD tier under `--offload_on_evict`).
    pub fn evict_bytes(&self, target: u64) -> EvictionReport {
        self.evict_bytes_below(target, u64::MAX, true)
    }

    /// [`Master::evict_bytes`] among objects last used before clock `floor`;
    /// `demote`: victims go to the SSD tier when `--offload_on_evict` is set.
    fn evict_bytes_below(&self, target: u64, floor: Clock, demote: bool) -> EvictionReport {
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
            let r = self.evict_pass(target - report.bytes, soft_ok, floor, demote);
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

    fn evict_pass(&self, target: u64, soft_ok: bool, floor: Clock, demote: bool) -> EvictionReport {
        let now = self.now_ms();
        let ev = &self.eviction;
        let policy = ev.policy();
        let population = self.index.len() as u64;
        ev.size_ghosts(population);
        let candidate = |o: &Object| o.evictable(now, soft_ok) && o.evict.clock() < floor;
        let round = Round { population };
        let (_, capacity) = self.segments.totals();
        let over = self.index.usage().over_share(capacity);
        let cutoffs = if over.is_empty() {
            let mut cands: Vec<(u64, u64)> = Vec::new();
            for i in 0..SHARDS {
                let shard = self.index.lock_shard(i);
                cands.extend(
                    shard
                        .values()
                        .filter(|o| candidate(o))
                        .map(|o| (policy.rank(o.evict, &round), footprint(o))),
                );
            }
            if cands.is_empty() {
                return EvictionReport::default();
            }
            Cutoffs {
                all: Some(weighted_cutoff(&mut cands, target)),
                tenants: Vec::new(),
            }
        } else {
            // Candidates of each tenant over its share apart, the rest together.
            let mut groups: Vec<Vec<(u64, u64)>> = vec![Vec::new(); over.len()];
            let mut rest: Vec<(u64, u64)> = Vec::new();
            for i in 0..SHARDS {
                let shard = self.index.lock_shard(i);
                for (k, o) in shard.iter().filter(|(_, o)| candidate(o)) {
                    let c = (policy.rank(o.evict, &round), footprint(o));
                    match tenant_slot(&over, k) {
                        Some(g) => groups[g].push(c),
                        None => rest.push(c),
                    }
                }
            }
            if rest.is_empty() && groups.iter().all(Vec::is_empty) {
                return EvictionReport::default();
            }
            fair_cutoffs(&over, groups, rest, target)
        };
        let mut report = EvictionReport::default();
        for i in 0..SHARDS {
            let mut shard = self.index.lock_shard(i);
            let doomed: Vec<Box<str>> = shard
                .iter()
                .filter(|(k, o)| candidate(o) && cutoffs.takes(k, policy.rank(o.evict, &round)))
                .map(|(k, _)| k.clone())
                .collect();
            let removed: Vec<_> = doomed
                .iter()
                .filter_map(|k| {
                    let o = shard.remove(k)?;
                    ev.evicted(&mut shard, self.index.hash(k));
                    Some((k, o))
                })
                .collect();
            // A victim goes to the tier before the shard's lock is released: a
            // reader finds it in one index or the other, never in neither.
            for (k, o) in &removed {
                self.tier_evicted(k, o, demote);
            }
            drop(shard);
            for (_, o) in &removed {
                report.objects += 1;
                report.bytes += footprint(o);
                self.free_object(o);
            }
        }
        report
    }
}

/// Which candidates a pass takes: those ranked at or below `all`, and those of a
/// tenant over its share ranked at or below that tenant's own cutoff (`tenants` is
/// sorted by tenant, as [`OverShare`]s are).
#[derive(Debug, Default, PartialEq, Eq)]
struct Cutoffs {
    all: Option<u64>,
    tenants: Vec<(Box<str>, u64)>,
}

impl Cutoffs {
    fn takes(&self, key: &str, rank: u64) -> bool {
        if self.all.is_some_and(|c| rank <= c) {
            return true;
        }
        if self.tenants.is_empty() {
            return false;
        }
        let t = split_key(key).0;
        self.tenants
            .binary_search_by(|(n, _)| (**n).cmp(t))
            .is_ok_and(|i| rank <= self.tenants[i].1)
    }
}

/// The index in `over` (sorted by tenant) of the tenant of internal key `key`, if it
/// is over its share.
fn tenant_slot(over: &[OverShare], key: &str) -> Option<usize> {
    let t = split_key(key).0;
    over.binary_search_by(|o| (*o.tenant).cmp(t)).ok()
}

/// Cutoffs that free `target` bytes from the tenants over their share first: each
/// gives up to its excess (all of them in proportion to their excess when together
/// they are over by more than `target`), lowest rank first within the tenant; what
/// that does not cover is taken from every remaining candidate by rank alone, as
/// without tenants. `groups[i]` holds the candidates (rank, bytes) of `over[i]`,
/// `rest` those of everyone else. Linear in the candidates (weighted quickselects).
fn fair_cutoffs(
    over: &[OverShare],
    mut groups: Vec<Vec<(u64, u64)>>,
    mut rest: Vec<(u64, u64)>,
    target: u64,
) -> Cutoffs {
    let excess: u128 = over.iter().map(|o| u128::from(o.excess)).sum();
    let mut taken = 0u64;
    let mut tenants = Vec::with_capacity(over.len());
    for (o, group) in over.iter().zip(groups.iter_mut()) {
        let want = if excess <= u128::from(target) {
            o.excess
        } else {
            (u128::from(o.excess) * u128::from(target) / excess) as u64
        }
        .max(1);
        let cut = weighted_cutoff(group, want);
        for &(rank, bytes) in group.iter() {
            if rank <= cut {
                taken = taken.saturating_add(bytes);
            } else {
                rest.push((rank, bytes));
            }
        }
        tenants.push((o.tenant.clone(), cut));
    }
    let all =
        (taken < target && !rest.is_empty()).then(|| weighted_cutoff(&mut rest, target - taken));
    Cutoffs { all, tenants }
}

/// Bytes an object holds in the pool (all replicas).
fn footprint(o: &Object) -> u64 {
    o.size * o.replicas.len() as u64
}

impl Master {
    /// Makes room for one more object in `shard`, which a put of a new key found at
    /// its share of the object limit: evicts `eviction_ratio` of the share (at least
    /// one object), lowest rank first, soft-pinned objects only if allowed and
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
            let r = self.evict_lowest_in_shard(shard, want - report.objects as usize, now, soft_ok);
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

    /// Evicts up to `n` of the shard's evictable objects, lowest rank first. The
    /// shard holds a uniform sample of the keys, so it stands for the whole index.
    fn evict_lowest_in_shard(
        &self,
        shard: &mut Shard,
        n: usize,
        now: u64,
        soft_ok: bool,
    ) -> EvictionReport {
        let ev = &self.eviction;
        let policy = ev.policy();
        let population = (shard.len() * SHARDS) as u64;
        ev.size_ghosts(population);
        let round = Round { population };
        let mut ranks: Vec<u64> = shard
            .values()
            .filter(|o| o.evictable(now, soft_ok))
            .map(|o| policy.rank(o.evict, &round))
            .collect();
        if ranks.is_empty() || n == 0 {
            return EvictionReport::default();
        }
        let k = n.min(ranks.len()) - 1;
        let cutoff = *ranks.select_nth_unstable(k).1;
        drop(ranks);
        let doomed: Vec<Box<str>> = shard
            .iter()
            .filter(|(_, o)| o.evictable(now, soft_ok) && policy.rank(o.evict, &round) <= cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        let mut report = EvictionReport::default();
        for k in &doomed {
            if let Some(o) = shard.remove(k) {
                ev.evicted(shard, self.index.hash(k));
                report.objects += 1;
                report.bytes += footprint(&o);
                // (The object limit is about entries, not memory: demotion's wait
                // for the write costs nothing here.)
                self.tier_evicted(k, &o, true);
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

#[cfg(test)]
mod round_tests {
    use crate::config::MasterConfig;
    use crate::master::{Master, WriteKind};
    use mooncake_common::{ErrorCode, SegmentDesc};
    use std::sync::Arc;

    const MIB: u64 = 1 << 20;

    fn pool(size: u64, high_watermark: f64) -> Arc<Master> {
        let m = Master::new(MasterConfig {
            eviction_high_watermark_ratio: high_watermark,
            ..Default::default()
        });
        let desc = SegmentDesc {
            name: "s".into(),
            owner: "s".into(),
            size,
            base: 0x1000_0000,
            protocol: "tcp".into(),
            transport_endpoint: "127.0.0.1:1".into(),
            ..Default::default()
        };
        assert_eq!(m.mount_segment("c", desc), Ok(()));
        m
    }

    fn put(m: &Master, key: &str, size: u64) -> Result<(), ErrorCode> {
        let r = m.put_start("c", key, size, &Default::default())?;
        m.write_end("c", key, r.put_id)
    }

    /// A put the next round would evict on its own (above the high watermark alone)
    /// is refused with -200 and displaces nothing.
    #[test]
    fn a_put_larger_than_eviction_can_keep_fails_with_no_available_handle() {
        let m = pool(1024 * MIB, 0.9);
        assert_eq!(put(&m, "small", MIB), Ok(()));
        assert_eq!(
            put(&m, "huge", 950 * MIB),
            Err(ErrorCode::NoAvailableHandle)
        );
        let keys = ["huge"];
        let sizes = [950 * MIB];
        let batch = m.batch_write_start(WriteKind::Put, "c", &keys, &sizes, &Default::default());
        assert_eq!(batch[0].as_ref().err(), Some(&ErrorCode::NoAvailableHandle));
        assert_eq!(m.run_eviction().objects, 0);
        assert_eq!(m.exist("small"), Ok(true), "an unrelated key stays");
        assert_eq!(m.exist("huge"), Ok(false));
        // At the watermark's size it fits and is kept.
        assert_eq!(put(&m, "fits", 900 * MIB), Ok(()));
        assert_eq!(m.exist("fits"), Ok(true));
    }

    /// Two tenants: beta's objects, older than all of alpha's and never read (the
    /// first the policy alone would take), survive while alpha floods the pool; the
    /// round and the puts' own evictions take alpha's objects instead.
    #[test]
    fn a_tenant_over_its_share_is_evicted_first() {
        use mooncake_common::auth::namespaced_key;
        let m = pool(1024 * MIB, 0.9);
        let beta: Vec<String> = (0..10)
            .map(|i| namespaced_key("beta", &format!("hot-{i}")))
            .collect();
        for k in &beta {
            assert_eq!(put(&m, k, 10 * MIB), Ok(()));
        }
        for i in 0..300 {
            let k = namespaced_key("alpha", &format!("flood-{i}"));
            assert_eq!(put(&m, &k, 10 * MIB), Ok(()), "put {i}");
            if i % 20 == 0 {
                m.run_eviction();
            }
        }
        for k in &beta {
            assert_eq!(m.exist(k), Ok(true), "{k} evicted");
        }
        assert_eq!(
            m.exist(&namespaced_key("alpha", "flood-0")),
            Ok(false),
            "the flooder's oldest stays"
        );
        let c = m.counters();
        assert!(c.evicted_objects.load(std::sync::atomic::Ordering::Relaxed) >= 200);
        // One tenant alone: eviction by rank as before, its oldest go first.
        let m = pool(1024 * MIB, 0.9);
        for i in 0..150 {
            assert_eq!(put(&m, &format!("solo-{i}"), 10 * MIB), Ok(()));
        }
        assert_eq!(m.exist("solo-0"), Ok(false));
        assert_eq!(m.exist("solo-149"), Ok(true));
    }

    /// The round a put triggers takes older objects, never the put's own, even when
    /// the policy would rank it lowest (nothing else was used after the older ones).
    #[test]
    fn an_object_is_never_evicted_by_the_round_its_own_put_triggered() {
        let m = pool(1024 * MIB, 0.9);
        for i in 0..8 {
            assert_eq!(put(&m, &format!("old-{i}"), 100 * MIB), Ok(()));
        }
        // 800 MiB used; this one takes usage to 920 MiB > 921.6? no: to 950 MiB.
        assert_eq!(put(&m, "trigger", 150 * MIB), Ok(()));
        let r = m.run_eviction();
        assert!(r.objects > 0, "{r:?}");
        assert_eq!(m.exist("trigger"), Ok(true), "evicted by its own round");
        // Even when it is the only thing left worth taking: the round stops short.
        let m = pool(1024 * MIB, 0.9);
        assert_eq!(put(&m, "only", 920 * MIB), Ok(()));
        assert_eq!(put(&m, "tip", 10 * MIB), Ok(()));
        let r = m.run_eviction();
        assert_eq!(m.exist("tip"), Ok(true), "{r:?}");
    }
}

#[cfg(test)]
mod fair_tests {
    use super::*;

    fn over(t: &str, excess: u64) -> OverShare {
        OverShare {
            tenant: t.into(),
            excess,
        }
    }

    /// The tenant over its share gives its excess, lowest rank first; the rest of the
    /// target comes from everyone by rank.
    #[test]
    fn the_excess_goes_first_and_the_remainder_by_rank() {
        // alpha: ranks 10..20 of 10 bytes each, excess 30; others: ranks 0..5.
        let alpha: Vec<(u64, u64)> = (10..20).map(|r| (r, 10)).collect();
        let rest: Vec<(u64, u64)> = (0..5).map(|r| (r, 10)).collect();
        let c = fair_cutoffs(&[over("alpha", 30)], vec![alpha.clone()], rest.clone(), 30);
        assert_eq!(c.all, None, "the excess covers the target");
        assert_eq!(c.tenants, vec![("alpha".into(), 12)]);
        let k = |t: &str| mooncake_common::auth::namespaced_key(t, "k");
        assert!(c.takes(&k("alpha"), 12) && !c.takes(&k("alpha"), 13));
        assert!(!c.takes(&k("beta"), 0) && !c.takes("k", 0));
        // A target beyond the excess: 30 from alpha, then 20 by rank (ranks 0 and 1).
        let c = fair_cutoffs(&[over("alpha", 30)], vec![alpha.clone()], rest.clone(), 50);
        assert_eq!(c.all, Some(1));
        assert!(c.takes(&k("beta"), 1) && !c.takes(&k("beta"), 2));
        // Two tenants over, together by more than the target: in proportion.
        let c = fair_cutoffs(
            &[over("alpha", 300), over("gamma", 100)],
            vec![alpha.clone(), (50..60).map(|r| (r, 10)).collect()],
            rest,
            40,
        );
        assert_eq!(c.all, None);
        assert_eq!(c.tenants, vec![("alpha".into(), 12), ("gamma".into(), 50)]);
    }
}

//! Writes: put (put-if-absent) and upsert, each as start -> end | revoke.
//!
//! Start allocates the replicas while holding the key's shard lock, so two racing
//! starts for one key cannot both allocate. When nothing fits, the shard lock is
//! released, evictable objects are evicted at once (beyond the reference, which fails
//! the put with -200), and the start is retried. A new key whose shard is at its share
//! of the object limit (`--index_memory_limit`) first evicts in that shard; when
//! nothing there is evictable the put gets -200 at once.

use super::Master;
use super::SegmentCache;
use crate::api::WriteStart;
use crate::index::SoftPinChange;
use crate::index::{Object, Pending, Replica, Replicas};
use crate::lease::{ms, resolve_pins};
use crate::placement::{place, PlacementRequest, SegmentView};
use mooncake_common::{ErrorCode, ReplicateConfig};

/// Put (first writer wins) or upsert (replace when the new value completes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Upsert,
    /// The SSD tier copying a disk-only object back into DRAM (`--promotion_on_hit`):
    /// a put that the key's disk replica does not stop, that any object in DRAM
    /// does, and that never evicts to make room.
    Promote,
}

/// A start's settings that do not depend on the key (one per batch).
struct StartSetup {
    hard_pin: bool,
    soft_pin: SoftPinChange,
    want: usize,
    /// The largest segment's capacity: anything larger can never be placed.
    largest: u64,
    /// The most bytes a write may take and not be evicted by the next round (see
    /// `Master::keepable_bytes`).
    keepable: Option<u64>,
    preferred: Vec<u32>,
    /// Segments the writer could not reach (`ReplicateConfig::avoid_segments`).
    avoid: Vec<u32>,
    /// The eviction clock reserved for the batch's writes, and the batch's length.
    clock: crate::eviction::Clock,
    batch: usize,
    /// The writing client's tag (`index::usage::client_tag`).
    client: u64,
}

/// How many times a start evicts and retries before answering -200.
const EVICT_RETRIES: usize = 3;

/// How long a start that found no space may wait for the memory of the objects it
/// evicted while the SSD tier writes them (`Master::demote_for`) before answering
/// -200. Normally
/// one owner round trip plus a write (milliseconds); this bounds the wait on an
/// owner that stopped answering.
pub(crate) const DEMOTION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Master {
    /// Starts a put: allocates replicas and records the object as in progress.
    pub fn put_start(
        &self,
        client_id: &str,
        key: &str,
        size: u64,
        rc: &ReplicateConfig,
    ) -> Result<WriteStart, ErrorCode> {
        self.write_start(WriteKind::Put, client_id, key, size, rc)
    }

    /// Starts an upsert: like a put, but an existing object is replaced at the end.
    pub fn upsert_start(
        &self,
        client_id: &str,
        key: &str,
        size: u64,
        rc: &ReplicateConfig,
    ) -> Result<WriteStart, ErrorCode> {
        self.write_start(WriteKind::Upsert, client_id, key, size, rc)
    }

    pub fn write_start(
        &self,
        kind: WriteKind,
        client_id: &str,
        key: &str,
        size: u64,
        rc: &ReplicateConfig,
    ) -> Result<WriteStart, ErrorCode> {
        let now = self.now_ms();
        self.liveness.touch(client_id, now);
        if key.is_empty() || size == 0 {
            return Err(ErrorCode::InvalidParams);
        }
        let setup = self.start_setup(rc, now, 1, client_id);
        let mut views = self.segments.views();
        let r = self.start_one(
            kind,
            key,
            size,
            &setup,
            (now, 0),
            &mut views,
            &mut SegmentCache::default(),
        );
        if r.is_ok() {
            self.check_watermark(setup.clock);
        }
        r
    }

    /// Starts a batch of puts (`Put`) or upserts: one liveness touch, one clock read,
    /// the pins, replica count and preferred segments resolved once, and one placement
    /// snapshot for the whole batch (kept current as the batch allocates). Answers in
    /// the request's order; `keys` and `sizes` have the same length.
    pub fn batch_write_start<K: AsRef<str>>(
        &self,
        kind: WriteKind,
        client_id: &str,
        keys: &[K],
        sizes: &[u64],
        rc: &ReplicateConfig,
    ) -> Vec<Result<WriteStart, ErrorCode>> {
        debug_assert_eq!(keys.len(), sizes.len());
        let now = self.now_ms();
        self.liveness.touch(client_id, now);
        let setup = self.start_setup(rc, now, keys.len(), client_id);
        let mut views = Vec::new();
        let mut segs = SegmentCache::default();
        let out: Vec<_> = keys
            .iter()
            .zip(sizes)
            .enumerate()
            .map(|(i, (key, &size))| {
                let key = key.as_ref();
                if key.is_empty() || size == 0 {
                    return Err(ErrorCode::InvalidParams);
                }
                if views.is_empty() {
                    views = self.segments.views();
                }
                self.start_one(kind, key, size, &setup, (now, i), &mut views, &mut segs)
            })
            .collect();
        if out.iter().any(Result::is_ok) {
            self.check_watermark(setup.clock);
        }
        out
    }

    /// What a start needs besides the key: resolved once per call or batch.
    fn start_setup(
        &self,
        rc: &ReplicateConfig,
        now: u64,
        batch: usize,
        client_id: &str,
    ) -> StartSetup {
        let (hard_pin, soft_pin) = resolve_pins(rc, self.config(), now);
        // More replicas than segments can never be placed; the cap also keeps a bogus
        // replica_num from sizing buffers.
        let want = rc.replica_num.max(1).min(self.segments.count().max(1));
        let preferred: Vec<u32> = rc
            .preferred_segments
            .iter()
            .filter_map(|n| self.segments.by_name(n).map(|s| s.id))
            .collect();
        StartSetup {
            hard_pin,
            soft_pin,
            want,
            largest: self.segments.largest_capacity(),
            keepable: self.keepable_bytes(),
            preferred,
            avoid: rc
                .avoid_segments
                .iter()
                .filter_map(|n| self.segments.by_name(n).map(|s| s.id))
                .collect(),
            clock: self.eviction.reserve(batch),
            batch,
            client: crate::index::usage::client_tag(client_id),
        }
    }

    /// One start against a placement snapshot (`views`, refreshed where this start
    /// allocates, retaken after an eviction).
    #[allow(clippy::too_many_arguments)]
    fn start_one(
        &self,
        kind: WriteKind,
        key: &str,
        size: u64,
        setup: &StartSetup,
        (now, position): (u64, usize),
        views: &mut Vec<SegmentView>,
        segs: &mut SegmentCache,
    ) -> Result<WriteStart, ErrorCode> {
        let want = setup.want;
        // Larger than every segment: no eviction could make room, so evict nothing.
        // Above the high watermark on its own: the next round would evict it (with
        // whatever it displaced), so refuse it before it costs anything (a hard-pinned
        // one is never evicted, so it may).
        if size > setup.largest
            || (!setup.hard_pin
                && setup
                    .keepable
                    .is_some_and(|k| size.saturating_mul(want as u64) > k))
        {
            return Err(ErrorCode::NoAvailableHandle);
        }
        // The tenant's quota and the bounds on writes in flight, before anything is
        // allocated (a promotion from the SSD tier is the master's own copy). The
        // quota's bytes stay reserved until this returns: charged by the index then,
        // or given back on failure.
        let _reserved = if kind != WriteKind::Promote {
            let usage = self.index.usage();
            Some(usage.admit(key, size.saturating_mul(want as u64), setup.client)?)
        } else {
            None
        };
        let evict = (
            crate::eviction::Eviction::write_clock(setup.clock, setup.batch, position),
            position,
        );
        // Authentication on and a tenant's own segment mounted: this key's objects go
        // only to segments that may hold them (`tenancy`).
        let mut own_views = self.placeable(views, key, &setup.avoid);
        // Set on the first eviction: with an SSD tier the start retries until then
        // (each retry waits for memory held back for a tier write), else
        // EVICT_RETRIES times.
        let mut demote_until: Option<std::time::Instant> = None;
        for attempt in 0.. {
            let here: &mut Vec<SegmentView> = match own_views.as_mut() {
                Some(v) => v,
                None => &mut *views,
            };
            let pending = |put_id, replicas| Pending {
                put_id,
                client: setup.client,
                started_ms: now,
                size,
                replicas: Replicas::from(replicas),
                hard_pin: setup.hard_pin,
                soft_pin: setup.soft_pin,
            };
            match self.try_start(
                kind,
                key,
                size,
                want,
                &setup.preferred,
                (now, evict),
                here,
                pending,
            ) {
                Ok((put_id, replicas)) => {
                    if attempt > 0 {
                        super::counters::add(&self.counters().sync_evictions, 1);
                    }
                    // The generations are read after the shard lock is released:
                    // only a write that ends well uses them, and one that does held
                    // its allocations from the start to its end (a taken-over or
                    // timed-out write fails its end), so a later lookup naming one
                    // with the same generation means it was not freed in between.
                    let mut placed = Vec::with_capacity(replicas.len());
                    let mut generations = Vec::with_capacity(replicas.len());
                    for r in replicas.iter() {
                        if let Some(p) = segs.placed(self, r) {
                            generations.push(p.segment.generation_of(r.handle));
                            placed.push(p);
                        }
                    }
                    return Ok(WriteStart {
                        put_id,
                        size,
                        replicas: placed,
                        generations,
                    });
                }
                // (Not when the index is full of unevictable objects: freeing space
                // would not help.)
                Err(ErrorCode::NoAvailableHandle)
                    if kind != WriteKind::Promote && self.shard_has_room(key) =>
                {
                    let bytes = size.saturating_mul(want as u64);
                    let more = if self.puts_wait_for_tier() {
                        let until = *demote_until
                            .get_or_insert_with(|| std::time::Instant::now() + DEMOTION_WAIT);
                        self.demote_for(bytes, until)
                    } else {
                        attempt < EVICT_RETRIES && self.evict_for(bytes)
                    };
                    if !more {
                        break;
                    }
                    *views = self.segments.views();
                    if own_views.is_some() {
                        own_views = self.placeable(views, key, &setup.avoid);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.evict_wakeup.notify_one();
        Err(ErrorCode::NoAvailableHandle)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_start(
        &self,
        kind: WriteKind,
        key: &str,
        size: u64,
        want: usize,
        preferred: &[u32],
        (now, (clock, position)): (u64, (crate::eviction::Clock, usize)),
        views: &mut [SegmentView],
        pending: impl Fn(u64, Box<[Replica]>) -> Pending,
    ) -> Result<(u64, Box<[Replica]>), ErrorCode> {
        let discard = ms(self.config().put_start_discard_timeout);
        let mut shard = self.index.lock(key);
        // A new key into a shard at its share of the object limit evicts there first.
        if shard.len() >= self.index_limit().per_shard
            && !shard.contains_key(key)
            && !self.make_room_in_shard(&mut shard)
        {
            return Err(ErrorCode::NoAvailableHandle);
        }
        let existing = shard.get(key);
        if existing.is_some() && kind == WriteKind::Promote {
            return Err(ErrorCode::ObjectAlreadyExists);
        }
        if let Some(o) = existing {
            let stale = o
                .pending
                .as_ref()
                .map(|p| now.saturating_sub(p.started_ms) >= discard);
            match (kind, o.is_complete(), stale) {
                (WriteKind::Put, true, _) => return Err(ErrorCode::ObjectAlreadyExists),
                (WriteKind::Put, false, Some(false)) => return Err(ErrorCode::ObjectAlreadyExists),
                (WriteKind::Upsert, _, Some(false)) => return Err(ErrorCode::ObjectReplicaBusy),
                _ => {}
            }
        }
        // A key held only by the SSD tier exists too.
        if existing.is_none() && kind == WriteKind::Put && self.tiers.contains(key) {
            return Err(ErrorCode::ObjectAlreadyExists);
        }
        let exists = existing.is_some();
        let replicas = self.allocate_replicas(size, want, preferred, views)?;
        let put_id = self.new_put_id();
        let p = Box::new(pending(put_id, replicas.clone()));
        if !exists {
            let evict = self
                .eviction
                .created(&mut shard, || self.index.hash(key), clock, position);
            shard.insert(key.into(), Object::in_progress(p, evict));
        } else if let Some(mut o) = shard.edit(key) {
            // Taking over a stale write: its space goes back first.
            if let Some(old) = o.pending.replace(p) {
                self.free_replicas(&old.replicas, old.size);
            }
        }
        drop(shard);
        // A segment unmounted while we allocated: its unmount walk may have missed us.
        if replicas
            .iter()
            .any(|r| self.segments.get(r.seg).is_none_or(|s| !s.is_alive()))
        {
            self.drop_dead_replicas_of(key);
        }
        Ok((put_id, replicas))
    }

    /// Chooses segments and allocates `size` bytes on each (distinct owners). `views`
    /// is the placement snapshot (in id order); the entries of segments allocated on
    /// are refreshed, so a batch's later starts see its earlier allocations.
    fn allocate_replicas(
        &self,
        size: u64,
        want: usize,
        preferred: &[u32],
        views: &mut [SegmentView],
    ) -> Result<Box<[Replica]>, ErrorCode> {
        let mut out: Vec<Replica> = Vec::with_capacity(want);
        let mut used_owners: Vec<u32> = Vec::with_capacity(want);
        let mut excluded: Vec<u32> = Vec::new();
        let mut rng = rand::rng();
        while out.len() < want {
            let req = PlacementRequest {
                size,
                replicas: want - out.len(),
                preferred,
                used_owners: &used_owners,
                excluded: &excluded,
                strategy: self.config().allocation_strategy,
            };
            let chosen = place(views, &req, &mut rng);
            if chosen.is_empty() {
                break;
            }
            for id in chosen {
                let seg = self.segments.get(id);
                match seg.as_ref().and_then(|s| s.allocate(size).map(|h| (s, h))) {
                    Some((s, handle)) => {
                        out.push(Replica { seg: id, handle });
                        used_owners.push(s.owner_id);
                        if let Ok(at) = views.binary_search_by_key(&id, |v| v.id) {
                            views[at] = s.view();
                        }
                    }
                    None => excluded.push(id),
                }
            }
        }
        if out.is_empty() {
            Err(ErrorCode::NoAvailableHandle)
        } else {
            Ok(out.into_boxed_slice())
        }
    }

    /// The segments a start for `key` may use when that is not all of `views`: only
    /// those that may hold the key's tenant's objects (`tenancy`), and none the writer
    /// could not reach (`avoid`: a retry after a write to a dead owner, which stays
    /// mounted until its heartbeats run out). `None`: all of them.
    fn placeable(
        &self,
        views: &[SegmentView],
        key: &str,
        avoid: &[u32],
    ) -> Option<Vec<SegmentView>> {
        let tenants = self.segment_tenants.any();
        if !tenants && avoid.is_empty() {
            return None;
        }
        let mut v = if tenants {
            self.segment_tenants.allowed(views, key)
        } else {
            views.to_vec()
        };
        v.retain(|s| !avoid.contains(&s.id));
        Some(v)
    }
}

//! Writes: put (put-if-absent) and upsert, each as start -> end | revoke.
//!
//! Start allocates the replicas while holding the key's shard lock, so two racing
//! starts for one key cannot both allocate. When nothing fits, the shard lock is
//! released, evictable objects are evicted at once (beyond the reference, which fails
//! the put with -200), and the start is retried. A new key whose shard is at its share
//! of the object limit (`--index_memory_limit`) first evicts in that shard; when
//! nothing there is evictable the put gets -200 at once.

use super::Master;
use crate::index::{Object, Pending, Replica, Replicas};
use crate::lease::{ms, resolve_pins};
use crate::placement::{place, PlacementRequest};
use mooncake_common::ErrorCode;
use mooncake_proto::{PutStartResponse, ReplicateConfig};

/// Put (first writer wins) or upsert (replace when the new value completes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Upsert,
}

/// How many times a start evicts and retries before answering -200.
const EVICT_RETRIES: usize = 3;

fn fail(code: ErrorCode) -> PutStartResponse {
    PutStartResponse {
        code: code.code(),
        ..Default::default()
    }
}

impl Master {
    /// Starts a put: allocates replicas and records the object as in progress.
    pub fn put_start(
        &self,
        client_id: &str,
        key: &str,
        size: u64,
        rc: Option<&ReplicateConfig>,
    ) -> PutStartResponse {
        self.write_start(WriteKind::Put, client_id, key, size, rc)
    }

    /// Starts an upsert: like a put, but an existing object is replaced at the end.
    pub fn upsert_start(
        &self,
        client_id: &str,
        key: &str,
        size: u64,
        rc: Option<&ReplicateConfig>,
    ) -> PutStartResponse {
        self.write_start(WriteKind::Upsert, client_id, key, size, rc)
    }

    fn write_start(
        &self,
        kind: WriteKind,
        client_id: &str,
        key: &str,
        size: u64,
        rc: Option<&ReplicateConfig>,
    ) -> PutStartResponse {
        let now = self.now_ms();
        self.liveness.touch(client_id, now);
        if key.is_empty() || size == 0 {
            return fail(ErrorCode::InvalidParams);
        }
        let (hard_pin, soft_pin) = match resolve_pins(rc, self.config(), now) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        // More replicas than segments can never be placed; the cap also keeps a bogus
        // replica_num from sizing buffers.
        let want = rc
            .map_or(1, |r| r.replica_num.max(1) as usize)
            .min(self.segments.count().max(1));
        // Larger than every segment: no eviction could make room, so evict nothing.
        if size > self.segments.largest_capacity() {
            return fail(ErrorCode::NoAvailableHandle);
        }
        let preferred: Vec<u32> = rc
            .map(|r| {
                r.preferred_segments
                    .iter()
                    .filter_map(|n| self.segments.by_name(n).map(|s| s.id))
                    .collect()
            })
            .unwrap_or_default();
        for attempt in 0..=EVICT_RETRIES {
            let pending = |put_id, replicas| Pending {
                put_id,
                started_ms: now,
                size,
                replicas: Replicas::from(replicas),
                hard_pin,
                soft_pin,
            };
            match self.try_start(kind, key, size, want, &preferred, now, pending) {
                Ok((put_id, replicas)) => {
                    if attempt > 0 {
                        super::counters::add(&self.counters().sync_evictions, 1);
                    }
                    return PutStartResponse {
                        code: 0,
                        replicas: replicas
                            .iter()
                            .filter_map(|r| self.replica_proto(r, size))
                            .collect(),
                        put_id,
                    };
                }
                // (Not when the index is full of unevictable objects: freeing space
                // would not help.)
                Err(ErrorCode::NoAvailableHandle)
                    if attempt < EVICT_RETRIES && self.shard_has_room(key) =>
                {
                    if !self.evict_for(size.saturating_mul(want as u64)) {
                        break;
                    }
                }
                Err(e) => return fail(e),
            }
        }
        self.evict_wakeup.notify_one();
        fail(ErrorCode::NoAvailableHandle)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_start(
        &self,
        kind: WriteKind,
        key: &str,
        size: u64,
        want: usize,
        preferred: &[u32],
        now: u64,
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
        let existing = shard.get_mut(key);
        if let Some(o) = &existing {
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
        let replicas = self.allocate_replicas(size, want, preferred)?;
        let put_id = self.new_put_id();
        let p = Box::new(pending(put_id, replicas.clone()));
        match existing {
            Some(o) => {
                // Taking over a stale write: its space goes back first.
                if let Some(old) = o.pending.replace(p) {
                    self.free_replicas(&old.replicas, old.size);
                }
                shard.changed(key);
            }
            None => {
                let tick = self.tick();
                shard.insert(key.into(), Object::in_progress(p, tick));
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

    /// Chooses segments and allocates `size` bytes on each (distinct owners).
    fn allocate_replicas(
        &self,
        size: u64,
        want: usize,
        preferred: &[u32],
    ) -> Result<Box<[Replica]>, ErrorCode> {
        let views = self.segments.views();
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
            let chosen = place(&views, &req, &mut rng);
            if chosen.is_empty() {
                break;
            }
            for id in chosen {
                let seg = self.segments.get(id);
                match seg.as_ref().and_then(|s| s.allocate(size).map(|h| (s, h))) {
                    Some((s, handle)) => {
                        out.push(Replica { seg: id, handle });
                        used_owners.push(s.owner_id);
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
}

//! Reads: replica lists and existence checks. Both grant a lease of
//! `default_kv_lease_ttl` on complete objects they find (CONTRACT §5): while it runs,
//! remove answers -706. Eviction skips the object for the lease's first part, the
//! read guard (`lease::read_guard_ms`): long enough for the reader to copy its bytes
//! (a replica list's guard grows with the bytes its batch reads), short enough that
//! objects read a few seconds ago stay in the policy's order instead of blocking eviction.

use super::{Master, SegmentCache};
use crate::api::{Placed, ReplicaList};
use crate::index::Replicas;
use crate::lease::read_guard_ms;
use mooncake_common::ErrorCode;

impl Master {
    /// Where a complete object's replicas are. -704 missing, -703 still being written.
    pub fn get_replica_list(&self, key: &str) -> Result<ReplicaList, ErrorCode> {
        self.replica_list_in_batch(key, 1, self.now_ms(), self.eviction.now())
    }

    /// `get_replica_list` for many keys; one clock read and one eviction-clock value for the batch.
    /// The reader copies the whole batch, so each object's read guard assumes a batch
    /// of `keys.len()` objects of its size. Keys are hashed once and grouped by shard
    /// (one lock per shard); answers come in the request's order.
    pub fn batch_get_replica_list<K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<ReplicaList, ErrorCode>> {
        let now = self.now_ms();
        let clock = self.eviction.now();
        let lease = self.lease_ms();
        let batch = keys.len() as u64;
        let groups = self.index.group(keys);
        let mut found: Vec<Result<ReplicaList, ErrorCode>> = Vec::with_capacity(keys.len());
        found.resize_with(keys.len(), || Err(ErrorCode::InvalidParams));
        // Descriptors of the segments this batch touches, looked up once each.
        let mut segs = SegmentCache::default();
        for (s, positions) in groups.runs() {
            let mut shard = self.index.lock_shard(s);
            for &i in positions {
                let i = i as usize;
                let key = keys[i].as_ref();
                if key.is_empty() {
                    continue;
                }
                found[i] = match shard.touch_hashed(key, groups.hashes[i]) {
                    None => Err(ErrorCode::ObjectNotFound),
                    Some(o) if !o.is_complete() => Err(ErrorCode::ReplicaIsNotReady),
                    Some(o) => {
                        let bytes = o.size.saturating_mul(batch);
                        o.grant_lease(now + lease, now + read_guard_ms(lease, bytes));
                        self.eviction.read(o, clock, i);
                        Ok(self.listed(&mut segs, o.size, &o.replicas, lease))
                    }
                };
            }
        }
        found
            .into_iter()
            .enumerate()
            .map(|(i, f)| match f {
                Err(ErrorCode::ObjectNotFound) => self.tier_list(keys[i].as_ref(), now, true),
                // Being written (an upsert, or a promotion from the SSD tier): the
                // value on disk, if there is one, is the current one.
                Err(ErrorCode::ReplicaIsNotReady) => self
                    .tier_list(keys[i].as_ref(), now, false)
                    .map_err(|_| ErrorCode::ReplicaIsNotReady),
                f => f,
            })
            .collect()
    }

    /// The answer for a complete object, built under its shard's lock: while the
    /// object is in the index its allocations are live, so the generations read here
    /// are theirs (a free after the lock is released changes them for good).
    fn listed(
        &self,
        segs: &mut SegmentCache,
        size: u64,
        replicas: &Replicas,
        lease: u64,
    ) -> ReplicaList {
        let mut placed = Vec::with_capacity(replicas.len());
        let mut generations = Vec::with_capacity(replicas.len());
        for r in replicas.iter() {
            if let Some(segment) = segs.get(self, r.seg) {
                generations.push(segment.generation_of(r.handle));
                placed.push(Placed {
                    offset: segment.offset_of(r.handle),
                    segment,
                });
            }
        }
        ReplicaList {
            size,
            lease_ttl_ms: lease,
            replicas: placed,
            generations,
        }
    }

    fn replica_list_in_batch(
        &self,
        key: &str,
        batch: u64,
        now: u64,
        clock: crate::eviction::Clock,
    ) -> Result<ReplicaList, ErrorCode> {
        if key.is_empty() {
            return Err(ErrorCode::InvalidParams);
        }
        let lease = self.lease_ms();
        let mut segs = SegmentCache::default();
        let mut shard = self.index.lock(key);
        {
            let Some(o) = shard.touch(key) else {
                drop(shard);
                return self.tier_list(key, now, true);
            };
            if !o.is_complete() {
                drop(shard);
                // Being written: the value on disk, if there is one, is current.
                return self
                    .tier_list(key, now, false)
                    .map_err(|_| ErrorCode::ReplicaIsNotReady);
            }
            let bytes = o.size.saturating_mul(batch);
            o.grant_lease(now + lease, now + read_guard_ms(lease, bytes));
            self.eviction.read(o, clock, 0);
            Ok(self.listed(&mut segs, o.size, &o.replicas, lease))
        }
    }

    /// Whether a complete object exists (and leases it); not while it is being
    /// written. An empty key is `INVALID_PARAMS`.
    pub fn exist(&self, key: &str) -> Result<bool, ErrorCode> {
        if key.is_empty() {
            return Err(ErrorCode::InvalidParams);
        }
        let (until, guard) = self.exist_lease();
        let mut shard = self.index.lock(key);
        match shard.touch(key) {
            Some(o) if o.is_complete() => {
                o.grant_lease(until, guard);
                self.eviction.checked(o, self.eviction.now(), 0);
                Ok(true)
            }
            Some(_) | None => {
                drop(shard);
                Ok(self.tier_exists(key, self.now_ms()))
            }
        }
    }

    /// `exist` for many keys; one clock read and one eviction-clock value for the whole batch.
    /// Keys are hashed once and grouped by shard (one lock per shard); answers come in
    /// the request's order.
    pub fn batch_exist<K: AsRef<str>>(&self, keys: &[K]) -> Vec<Result<bool, ErrorCode>> {
        let (until, guard) = self.exist_lease();
        // One clock value for the batch: its keys were used together (in order).
        let clock = self.eviction.now();
        let groups = self.index.group(keys);
        let mut codes = vec![Err(ErrorCode::InvalidParams); keys.len()];
        for (s, positions) in groups.runs() {
            let mut shard = self.index.lock_shard(s);
            for &i in positions {
                let i = i as usize;
                let key = keys[i].as_ref();
                if key.is_empty() {
                    continue;
                }
                codes[i] = match shard.touch_hashed(key, groups.hashes[i]) {
                    Some(o) if o.is_complete() => {
                        o.grant_lease(until, guard);
                        self.eviction.checked(o, clock, i);
                        Ok(true)
                    }
                    // Looked up in the SSD tier below, without the shard lock (a
                    // key being written exists if its disk replica does).
                    Some(_) | None => Err(ErrorCode::ObjectNotFound),
                };
            }
        }
        let now = self.now_ms();
        for (i, c) in codes.iter_mut().enumerate() {
            if *c == Err(ErrorCode::ObjectNotFound) {
                *c = Ok(self.tier_exists(keys[i].as_ref(), now));
            }
        }
        codes
    }

    /// A key missing from DRAM, answered from the SSD tier (-704 when not there);
    /// `promote`: it is not in DRAM at all (see `tier_replica`).
    fn tier_list(&self, key: &str, now: u64, promote: bool) -> Result<ReplicaList, ErrorCode> {
        let (size, placed) = self
            .tier_replica(key, now, promote)
            .ok_or(ErrorCode::ObjectNotFound)?;
        Ok(ReplicaList {
            size,
            lease_ttl_ms: self.lease_ms(),
            replicas: vec![placed],
            // The SSD tier's file is rewritten in place: no generation, so clients
            // never read it speculatively.
            generations: vec![],
        })
    }

    /// (lease end, read guard end) for an existence check: it copies nothing, so its
    /// guard is the base one (it covers the usual get that follows).
    fn exist_lease(&self) -> (u64, u64) {
        let now = self.now_ms();
        let lease = self.lease_ms();
        (now + lease, now + read_guard_ms(lease, 0))
    }
}

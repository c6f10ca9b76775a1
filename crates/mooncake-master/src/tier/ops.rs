//! The tier's operations on the master: scheduling persists, answering reads,
//! removing, and the owners' reports.

use super::{
    add, DemotingMem, DiskEntry, Inflight, TierOwner, Tiers, DISK_BASE, PROMOTIONS_IN_FLIGHT,
    TASKS_PER_ANSWER,
};
use crate::alloc::AllocHandle;
use crate::api::Placed;
use crate::index::{Object, Replica, Replicas};
use crate::master::{Master, WriteKind};
use crate::segments::Segment;
use mooncake_common::{ErrorCode, ReplicateConfig, SegmentDesc};
use mooncake_proto::{TierRecord, TierTask, TierTaskKind, TierTaskResult, TierWorkRequest};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long an owner's call waits for work before answering empty.
const LONG_POLL: Duration = Duration::from_millis(500);

impl Tiers {
    /// Holds back the free of a memory replica a persist task still reads; whether it
    /// was held (it is freed when the task ends).
    pub(crate) fn defer_free(&self, r: &Replica, size: u64) -> bool {
        let mut pins = self.pins.lock();
        if pins.is_empty() {
            return false;
        }
        match pins.get_mut(&(r.seg, r.handle.offset)) {
            Some(p) if p.tasks > 0 || p.lease_until_ms > 0 => {
                p.deferred = Some((r.seg, r.handle, size));
                true
            }
            _ => false,
        }
    }

    /// Bytes of memory replicas already evicted whose free waits for a tier write
    /// still running (a demotion's, or a persist's): memory on its way back.
    pub(crate) fn held_back_bytes(&self) -> u64 {
        self.pins
            .lock()
            .values()
            .filter(|p| p.tasks > 0)
            .filter_map(|p| p.deferred.as_ref().map(|d| d.2))
            .sum()
    }

    fn pin(&self, key: (u32, u32)) {
        self.pins.lock().entry(key).or_default().tasks += 1;
    }

    /// Ends a task's pin; the free it held back, if it was the last and no reader's
    /// lease on the replica runs on (then [`expired_pins`](Self::expired_pins) frees it).
    fn unpin(&self, key: (u32, u32), now: u64) -> Option<(u32, AllocHandle, u64)> {
        let mut pins = self.pins.lock();
        let p = pins.get_mut(&key)?;
        p.tasks = p.tasks.saturating_sub(1);
        if p.tasks > 0 || p.lease_until_ms > now {
            return None;
        }
        pins.remove(&key).and_then(|p| p.deferred)
    }

    /// Lets a reader's lease on a demoting memory replica hold back its free.
    fn lease_pin(&self, key: (u32, u32), until: u64) {
        if let Some(p) = self.pins.lock().get_mut(&key) {
            p.lease_until_ms = p.lease_until_ms.max(until);
        }
    }

    /// The frees held back only by readers' leases that have ended.
    fn expired_pins(&self, now: u64) -> Vec<(u32, AllocHandle, u64)> {
        let mut pins = self.pins.lock();
        if pins.is_empty() {
            return Vec::new();
        }
        let done: Vec<(u32, u32)> = pins
            .iter()
            .filter(|(_, p)| p.tasks == 0 && p.lease_until_ms <= now)
            .map(|(k, _)| *k)
            .collect();
        done.iter()
            .filter_map(|k| pins.remove(k).and_then(|p| p.deferred))
            .collect()
    }

    /// Frees an entry's extent and tells its owner to discard the record.
    fn release(&self, e: DiskEntry) {
        e.owner.free(e.handle, e.disk_len);
        let id = self.task_id();
        e.owner.push(
            TierTask {
                task_id: id,
                kind: TierTaskKind::TierDiscard as i32,
                key: String::new(),
                mem_offset: 0,
                size: 0,
                disk_offset: e.disk_offset,
                disk_len: e.disk_len,
                demotion: false,
            },
            Inflight::Discard,
        );
        add(&self.stats.discards, 1);
    }

    /// An extent of `len` bytes in `owner`'s tier, evicting its least recently used
    /// unleased entries when it is full.
    fn allocate(&self, owner: &Arc<TierOwner>, len: u64, now: u64) -> Option<AllocHandle> {
        let seg = owner.segment();
        if len > seg.capacity() {
            return None;
        }
        for _ in 0..8 {
            if let Some(h) = seg.allocate(len) {
                return Some(h);
            }
            // Free a little more than asked, so that every put does not scan.
            let want = len.max(seg.capacity() / 100);
            if !self.evict(owner, want, now) {
                return None;
            }
        }
        None
    }

    /// Evicts `owner`'s least recently used written, unleased entries until `want`
    /// bytes are freed; whether anything was.
    fn evict(&self, owner: &Arc<TierOwner>, want: u64, now: u64) -> bool {
        let doomed: Vec<DiskEntry> = {
            let mut entries = self.entries.lock();
            let mut cands: Vec<(u64, Box<str>, u64)> = entries
                .iter()
                .filter(|(_, e)| Arc::ptr_eq(&e.owner, owner) && e.ready && e.lease_until_ms <= now)
                .map(|(k, e)| (e.last_used_ms, k.clone(), e.disk_len))
                .collect();
            cands.sort_unstable();
            let mut freed = 0;
            let mut out = Vec::new();
            for (_, k, len) in cands {
                if freed >= want {
                    break;
                }
                if let Some(e) = entries.remove(&k) {
                    freed += len;
                    out.push(e);
                }
            }
            out
        };
        add(&self.stats.disk_evictions, doomed.len() as u64);
        let any = !doomed.is_empty();
        for e in doomed {
            self.release(e);
        }
        any
    }

    /// Schedules the write of a memory replica (`pin`: its segment and unit) at
    /// `mem_offset` in `owner`'s segment into a new extent of its tier.
    #[allow(clippy::too_many_arguments)]
    fn schedule_persist(
        &self,
        key: &str,
        size: u64,
        owner: &Arc<TierOwner>,
        mem: (&Arc<Segment>, (u32, u32), u64),
        now: u64,
        demotion: bool,
    ) -> bool {
        let (mem_seg, pin, mem_offset) = mem;
        let disk_len = mooncake_tier::record_len(key.len(), size);
        let Some(handle) = self.allocate(owner, disk_len, now) else {
            add(&self.stats.skipped_full, 1);
            return false;
        };
        let disk_offset = owner.segment().offset_of(handle);
        let id = self.task_id();
        self.pin(pin);
        if demotion {
            self.demoting.fetch_add(size, Ordering::Relaxed);
        }
        let old = self.entries.lock().insert(
            key.into(),
            DiskEntry {
                owner: owner.clone(),
                handle,
                disk_offset,
                disk_len,
                size,
                ready: false,
                task: id,
                lease_until_ms: 0,
                last_used_ms: now,
                // (A persist's too: eviction may take the object out of DRAM
                // before the owner has written it.)
                demoting: Some(DemotingMem {
                    seg: mem_seg.clone(),
                    offset: mem_offset,
                    pin,
                }),
            },
        );
        if let Some(old) = old {
            self.release(old);
        }
        owner.push(
            TierTask {
                task_id: id,
                kind: TierTaskKind::TierPersist as i32,
                key: key.to_string(),
                mem_offset,
                size,
                disk_offset,
                disk_len,
                demotion,
            },
            Inflight::Persist {
                key: key.into(),
                pin,
                size,
                demotion,
            },
        );
        add(&self.stats.persists_started, 1);
        true
    }

    /// A promotion of `key` asked for or running no more.
    fn promotion_ended(&self, key: &str) {
        self.promoting.lock().remove(key);
    }

    /// Drops `key`'s entry whatever its lease (its memory object was removed or
    /// replaced, so the record is stale).
    pub(crate) fn forget(&self, key: &str) {
        if !self.has_owners() {
            return;
        }
        let e = self.entries.lock().remove(key);
        if let Some(e) = e {
            self.release(e);
        }
    }
}

impl Master {
    /// The SSD tiers (metrics, views).
    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    /// After a put or upsert ended: persist the new value (or, when objects go to the
    /// tier only on eviction, drop the record of the old one).
    pub(crate) fn tier_put_ended(&self, key: &str, size: u64, replicas: &Replicas) {
        if !self.config().enable_offload || !self.tiers.has_owners() {
            return;
        }
        if self.config().offload_on_evict {
            self.tiers.forget(key);
            return;
        }
        self.tier_persist(key, size, replicas, false);
    }

    /// An object eviction took out of DRAM (its memory is freed right after). Under
    /// `--offload_on_evict`, one without a disk replica is demoted when `demote`: its
    /// owner writes it to its tier, and the free of the memory replica it reads from
    /// waits for that (`defer_free`). When its tier has no room (or its owner has no
    /// tier) it is dropped, and counted. (A put that finds no space demotes too and
    /// waits for the memory: `Master::demote_for`.)
    pub(crate) fn tier_evicted(&self, key: &str, o: &Object, demote: bool) {
        let cfg = self.config();
        if !cfg.enable_offload
            || !cfg.offload_on_evict
            || !o.is_complete()
            || !self.tiers.has_owners()
            || self.tiers.contains(key)
        {
            return; // no tier, or already on disk (promoted back, or being demoted)
        }
        if !demote || !self.tier_persist(key, o.size, &o.replicas, true) {
            add(&self.tiers.stats.evict_drops, 1);
        }
    }

    /// Schedules the write of `key` from its first memory replica whose owner has a
    /// tier; whether one was scheduled.
    pub(crate) fn tier_persist(
        &self,
        key: &str,
        size: u64,
        replicas: &Replicas,
        demotion: bool,
    ) -> bool {
        for r in replicas.iter() {
            let Some(seg) = self.segments.get(r.seg) else {
                continue;
            };
            let Some(owner) = self.tiers.owner(&seg.desc.name) else {
                continue;
            };
            let mem_offset = seg.offset_of(r.handle);
            return self.tiers.schedule_persist(
                key,
                size,
                &owner,
                (&seg, (r.seg, r.handle.offset), mem_offset),
                self.now_ms(),
                demotion,
            );
        }
        false
    }

    /// A key's disk replica for a reader, leased; `None` when it has none written.
    /// `promote`: the key is not in DRAM at all, and under `--promotion_on_hit` a
    /// copy back into its owner's DRAM is asked for (started on the owner's next
    /// call, never on the reader's path; skipped when [`PROMOTIONS_IN_FLIGHT`] are
    /// asked for or running).
    pub(crate) fn tier_replica(&self, key: &str, now: u64, promote: bool) -> Option<(u64, Placed)> {
        if !self.tiers.has_owners() {
            return None;
        }
        let mut entries = self.tiers.entries.lock();
        let e = entries.get_mut(key)?;
        if !e.ready {
            // Being demoted (or persisted, and evicted meanwhile): the memory
            // replica the owner writes from still holds the bytes, and its free
            // waits for this reader's lease.
            let m = e.demoting.as_ref()?;
            let until = now + self.lease_ms();
            self.tiers.lease_pin(m.pin, until);
            e.lease_until_ms = e.lease_until_ms.max(until);
            e.last_used_ms = now;
            add(&self.tiers.stats.demoting_hits, 1);
            return Some((
                e.size,
                Placed {
                    segment: m.seg.clone(),
                    offset: m.offset,
                },
            ));
        }
        e.lease_until_ms = e.lease_until_ms.max(now + self.lease_ms());
        e.last_used_ms = now;
        let offset = e.disk_offset + mooncake_tier::record::header_len(key.len(), e.size);
        let placed = Placed {
            segment: e.owner.segment(),
            offset,
        };
        let size = e.size;
        let owner = e.owner.clone();
        drop(entries);
        add(&self.tiers.stats.disk_hits, 1);
        add(&self.tiers.stats.disk_hit_bytes, size);
        if promote && self.config().promotion_on_hit {
            self.tier_ask_promotion(&owner, key);
        }
        Some((size, placed))
    }

    /// Asks `owner` to copy `key` back into its DRAM (unless that is asked already or
    /// too many are).
    fn tier_ask_promotion(&self, owner: &Arc<TierOwner>, key: &str) {
        {
            let mut p = self.tiers.promoting.lock();
            if p.contains(key) {
                return;
            }
            if p.len() >= PROMOTIONS_IN_FLIGHT {
                drop(p);
                add(&self.tiers.stats.promotions_skipped, 1);
                return;
            }
            p.insert(key.into());
        }
        owner.promotions.lock().push(key.into());
        owner.wake.notify_one();
    }

    /// Starts the promotions asked of `owner`: each allocates a memory replica in the
    /// owner's own segment as a put (never evicting for it: a promotion takes free
    /// memory or none) and hands the owner a task to read the record into it. The
    /// object is readable from disk meanwhile; it becomes a memory hit when the
    /// owner answers.
    fn tier_start_promotions(&self, owner: &Arc<TierOwner>) {
        let keys: Vec<Box<str>> = std::mem::take(&mut *owner.promotions.lock());
        for key in keys {
            if !self.tier_start_promotion(owner, &key) {
                self.tiers.promotion_ended(&key);
                add(&self.tiers.stats.promotion_failures, 1);
            }
        }
    }

    fn tier_start_promotion(&self, owner: &Arc<TierOwner>, key: &str) -> bool {
        let Some(mem) = self.segments.by_name(&owner.segment().desc.name) else {
            return false;
        };
        let (size, disk_offset, disk_len) = {
            let entries = self.tiers.entries.lock();
            match entries
                .get(key)
                .filter(|e| e.ready && Arc::ptr_eq(&e.owner, owner))
            {
                Some(e) => (e.size, e.disk_offset, e.disk_len),
                None => return false,
            }
        };
        let rc = ReplicateConfig {
            replica_num: 1,
            preferred_segments: vec![mem.desc.name.clone()],
            ..Default::default()
        };
        let client = owner.client_id.lock().clone();
        let Ok(start) = self.write_start(WriteKind::Promote, &client, key, size, &rc) else {
            return false;
        };
        let local = match start.replicas.as_slice() {
            [r] if Arc::ptr_eq(&r.segment, &mem) => Some(r.offset),
            _ => None,
        };
        let Some(mem_offset) = local else {
            let _ = self.write_revoke(&client, key, start.put_id);
            return false;
        };
        let id = self.tiers.task_id();
        owner.push(
            TierTask {
                task_id: id,
                kind: TierTaskKind::TierPromote as i32,
                key: key.to_string(),
                mem_offset,
                size,
                disk_offset,
                disk_len,
                demotion: false,
            },
            Inflight::Promote {
                key: key.into(),
                put_id: start.put_id,
            },
        );
        true
    }

    /// `key`'s written disk replica, as `/query_key` shows it (no lease).
    pub(crate) fn tier_replica_info(&self, key: &str) -> Option<crate::master::ReplicaInfo> {
        if !self.tiers.has_owners() {
            return None;
        }
        let entries = self.tiers.entries.lock();
        let e = entries.get(key).filter(|e| e.ready)?;
        Some(crate::master::ReplicaInfo {
            segment: e.owner.segment().desc.name.clone(),
            offset: e.disk_offset + mooncake_tier::record::header_len(key.len(), e.size),
            size: e.size,
            medium: "disk",
        })
    }

    /// A key only the SSD tier holds, as `/query_key` shows it.
    pub(crate) fn tier_query(&self, key: &str, now: u64) -> Option<crate::master::KeyInfo> {
        let r = self.tier_replica_info(key)?;
        let lease = self
            .tiers
            .entries
            .lock()
            .get(key)
            .map_or(0, |e| e.lease_until_ms.saturating_sub(now));
        Some(crate::master::KeyInfo {
            size: r.size,
            complete: true,
            replicas: vec![r],
            lease_remaining_ms: lease,
            hard_pinned: false,
            soft_pinned: false,
        })
    }

    /// Whether `key` has a written disk replica (leased like a read).
    pub(crate) fn tier_exists(&self, key: &str, now: u64) -> bool {
        if !self.tiers.has_owners() {
            return false;
        }
        let mut entries = self.tiers.entries.lock();
        match entries
            .get_mut(key)
            .filter(|e| e.ready || e.demoting.is_some())
        {
            Some(e) => {
                e.lease_until_ms = e.lease_until_ms.max(now + self.lease_ms());
                e.last_used_ms = now;
                true
            }
            None => false,
        }
    }

    /// Removes `key`'s disk entry: -706 while a reader holds its lease (unless
    /// forced); whether there was one.
    pub(crate) fn tier_remove(&self, key: &str, force: bool, now: u64) -> Result<bool, ErrorCode> {
        if !self.tiers.has_owners() {
            return Ok(false);
        }
        let mut entries = self.tiers.entries.lock();
        match entries.get(key) {
            None => return Ok(false),
            Some(e) if !e.ready => return Err(ErrorCode::ReplicaIsNotReady),
            Some(e) if e.lease_until_ms > now && !force => return Err(ErrorCode::ObjectHasLease),
            Some(_) => {}
        }
        let e = entries.remove(key);
        drop(entries);
        if let Some(e) = e {
            self.tiers.release(e);
        }
        Ok(true)
    }

    /// Removes the written, removable disk entries whose key matches; their keys.
    pub(crate) fn tier_remove_where(
        &self,
        force: bool,
        now: u64,
        matches: &dyn Fn(&str) -> bool,
    ) -> Vec<Box<str>> {
        if !self.tiers.has_owners() {
            return Vec::new();
        }
        let mut entries = self.tiers.entries.lock();
        let doomed: Vec<Box<str>> = entries
            .iter()
            .filter(|(k, e)| e.ready && (force || e.lease_until_ms <= now) && matches(k))
            .map(|(k, _)| k.clone())
            .collect();
        let removed: Vec<DiskEntry> = doomed.iter().filter_map(|k| entries.remove(k)).collect();
        drop(entries);
        for e in removed {
            self.tiers.release(e);
        }
        doomed
    }

    /// Frees a memory replica whose free a finished task held back.
    fn tier_unpin(&self, pin: (u32, u32)) {
        if let Some((seg, handle, size)) = self.tiers.unpin(pin, self.now_ms()) {
            if let Some(s) = self.segments.get(seg) {
                s.free(handle, size);
            }
            self.tiers.note_freed();
        }
    }

    /// Frees the demoted memory replicas whose readers' leases have ended.
    fn tier_free_expired(&self) {
        let expired = self.tiers.expired_pins(self.now_ms());
        if expired.is_empty() {
            return;
        }
        for (seg, handle, size) in expired {
            if let Some(s) = self.segments.get(seg) {
                s.free(handle, size);
            }
        }
        self.tiers.note_freed();
    }

    /// The owner's answers to the tasks it was handed.
    fn tier_done(&self, owner: &Arc<TierOwner>, done: &[TierTaskResult]) {
        for d in done {
            let Some(what) = owner.inflight.lock().remove(&d.task_id) else {
                continue;
            };
            self.tier_finish(owner, d.task_id, d.code, what);
        }
    }

    fn tier_finish(&self, owner: &Arc<TierOwner>, task: u64, code: i32, what: Inflight) {
        let (key, pin, size, demotion) = match what {
            Inflight::Persist {
                key,
                pin,
                size,
                demotion,
            } => (key, pin, size, demotion),
            Inflight::Promote { key, put_id } => {
                self.tier_promoted(owner, &key, put_id, code);
                return;
            }
            Inflight::Discard => return,
        };
        if demotion {
            self.tiers.demoting.fetch_sub(size, Ordering::Relaxed);
        }
        // The entry is settled before the pin ends: a reader that finds it still
        // being demoted (and is given the memory replica) has leased the pin.
        self.tier_settle(owner, task, code, &key, size, demotion);
        self.tier_unpin(pin);
    }

    fn tier_settle(
        &self,
        owner: &Arc<TierOwner>,
        task: u64,
        code: i32,
        key: &str,
        size: u64,
        demotion: bool,
    ) {
        let mut entries = self.tiers.entries.lock();
        let mine = entries
            .get(key)
            .is_some_and(|e| e.task == task && Arc::ptr_eq(&e.owner, owner));
        if !mine {
            return; // replaced or removed meanwhile; its extent went back then
        }
        let stats = &self.tiers.stats;
        if code == 0 {
            if let Some(e) = entries.get_mut(key) {
                e.ready = true;
                e.demoting = None;
            }
            add(&stats.persisted, 1);
            add(&stats.persisted_bytes, size);
            if demotion {
                add(&stats.demotions, 1);
            }
        } else {
            let e = entries.remove(key);
            drop(entries);
            if let Some(e) = e {
                self.tiers.release(e);
            }
            add(&stats.persist_failures, 1);
            tracing::warn!(key = %key, owner = %owner.segment().desc.name, code, "SSD tier: a write failed; the object stays in DRAM only");
        }
    }

    /// A promotion's answer: the memory replica becomes the object's (a memory hit
    /// from now on), or goes back.
    fn tier_promoted(&self, owner: &Arc<TierOwner>, key: &str, put_id: u64, code: i32) {
        self.tiers.promotion_ended(key);
        let client = owner.client_id.lock().clone();
        if code == 0 && self.write_end_promoted(&client, key, put_id).is_ok() {
            add(&self.tiers.stats.promotions, 1);
            return;
        }
        let _ = self.write_revoke(&client, key, put_id);
        add(&self.tiers.stats.promotion_failures, 1);
        if code != 0 {
            tracing::warn!(key = %key, owner = %owner.segment().desc.name, code, "SSD tier: a promotion failed; the object stays on disk only");
        }
    }

    /// A restarted owner never answers the tasks handed to its previous run: they
    /// failed.
    fn tier_owner_restarted(&self, owner: &Arc<TierOwner>) {
        let lost: Vec<(u64, Inflight)> = owner.inflight.lock().drain().collect();
        for (id, what) in lost {
            self.tier_finish(owner, id, ErrorCode::InternalError.code(), what);
        }
    }

    /// Takes an owner's report of every record its tier holds.
    fn tier_reconcile(&self, owner: &Arc<TierOwner>, fresh: bool, records: &[TierRecord]) {
        let seg = owner.segment();
        // Looked up before the entries' lock is taken: eviction takes that lock
        // under a shard's (a victim is handed to the tier before it leaves the
        // index), so the two are never taken the other way round.
        let in_dram: std::collections::HashSet<&str> = if fresh {
            records
                .iter()
                .filter(|r| self.index.lock(&r.key).contains_key(r.key.as_str()))
                .map(|r| r.key.as_str())
                .collect()
        } else {
            Default::default()
        };
        let mut entries = self.tiers.entries.lock();
        let reported: HashMap<u64, &TierRecord> = records.iter().map(|r| (r.offset, r)).collect();
        // Entries whose record the owner no longer has.
        let lost: Vec<Box<str>> = entries
            .iter()
            .filter(|(k, e)| {
                Arc::ptr_eq(&e.owner, owner)
                    && e.ready
                    && !reported
                        .get(&e.disk_offset)
                        .is_some_and(|r| r.key == ***k && r.len == e.disk_len)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut dropped: Vec<DiskEntry> = lost.iter().filter_map(|k| entries.remove(k)).collect();
        // Extents the master knows for this owner (records there are current, or
        // about to be replaced by a write already queued).
        let mut known: Vec<(u64, u64)> = entries
            .values()
            .filter(|e| Arc::ptr_eq(&e.owner, owner))
            .map(|e| (e.disk_offset, e.disk_len))
            .collect();
        known.sort_unstable();
        let overlaps_known = |off: u64, len: u64| {
            let i = known.partition_point(|&(o, _)| o < off + len);
            i > 0 && known[i - 1].0 + known[i - 1].1 > off
        };
        let mut discards: Vec<(u64, u64)> = Vec::new();
        let mut adopted = 0usize;
        if fresh {
            // A master that did not know this tier: adopt its records (unless the
            // key lives in DRAM or another tier: that copy may be newer).
            let shift = seg.unit_shift();
            let unit = 1u64 << shift;
            let mut take: Vec<&TierRecord> = Vec::new();
            for r in records {
                let taken =
                    entries.contains_key(r.key.as_str()) || in_dram.contains(r.key.as_str());
                if taken || r.offset % unit != 0 || overlaps_known(r.offset, r.len) {
                    discards.push((r.offset, r.len));
                } else {
                    take.push(r);
                }
            }
            let ranges: Vec<(u32, u32)> = take
                .iter()
                .map(|r| {
                    let units = seg
                        .with_allocator(|a| a.units_of(r.len))
                        .unwrap_or(u32::MAX);
                    ((r.offset >> shift) as u32, units)
                })
                .collect();
            match seg.with_allocator(|a| a.reproduce(&ranges)) {
                Ok(handles) => {
                    let now = self.now_ms();
                    for (r, h) in take.iter().zip(handles) {
                        let Some(handle) = h else { continue };
                        adopted += 1;
                        entries.insert(
                            r.key.as_str().into(),
                            DiskEntry {
                                owner: owner.clone(),
                                handle,
                                disk_offset: r.offset,
                                disk_len: r.len,
                                size: r.value_len,
                                ready: true,
                                task: 0,
                                lease_until_ms: 0,
                                last_used_ms: now,
                                demoting: None,
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(owner = %owner.segment().desc.name, "SSD tier: cannot adopt the reported records ({e}); they are discarded");
                    discards.extend(take.iter().map(|r| (r.offset, r.len)));
                }
            }
        } else {
            for r in records {
                let matched = entries.get(r.key.as_str()).is_some_and(|e| {
                    Arc::ptr_eq(&e.owner, owner) && e.disk_offset == r.offset && e.disk_len == r.len
                });
                if !matched && !overlaps_known(r.offset, r.len) {
                    discards.push((r.offset, r.len));
                }
            }
        }
        drop(entries);
        tracing::info!(
            owner = %owner.segment().desc.name,
            reported = records.len(),
            adopted,
            lost = dropped.len(),
            stale = discards.len(),
            "SSD tier: an owner reported its records"
        );
        for e in dropped.drain(..) {
            // Its record is gone already: just the extent back.
            e.owner.free(e.handle, e.disk_len);
        }
        for (off, len) in discards {
            let id = self.tiers.task_id();
            owner.push(
                TierTask {
                    task_id: id,
                    kind: TierTaskKind::TierDiscard as i32,
                    key: String::new(),
                    mem_offset: 0,
                    size: 0,
                    disk_offset: off,
                    disk_len: len,
                    demotion: false,
                },
                Inflight::Discard,
            );
        }
    }

    /// Schedules the write of every object already in the owner's DRAM that has no
    /// disk copy (puts that ended before its tier first called).
    fn tier_backfill(&self, owner: &Arc<TierOwner>) {
        if self.config().offload_on_evict {
            return;
        }
        let Some(mem) = self.segments.by_name(&owner.segment().desc.name) else {
            return;
        };
        let mut todo: Vec<(Box<str>, u64, Replicas)> = Vec::new();
        for i in 0..crate::index::SHARDS {
            let shard = self.index.lock_shard(i);
            for (k, o) in shard.iter() {
                if o.is_complete() && o.replicas.iter().any(|r| r.seg == mem.id) {
                    todo.push((k.clone(), o.size, o.replicas.clone()));
                }
            }
        }
        let mut n = 0;
        for (k, size, replicas) in todo {
            if !self.tiers.contains(&k) && self.tier_persist(&k, size, &replicas, false) {
                n += 1;
            }
        }
        if n > 0 {
            tracing::info!(owner = %mem.desc.name, objects = n, "SSD tier: writing the objects put before the tier was known");
        }
    }

    /// One `SegmentTier.Work` call: register or refresh the owner's tier, take its
    /// answers and report, and hand out the next tasks (waiting briefly for some).
    pub async fn tier_work(
        self: &Arc<Self>,
        req: TierWorkRequest,
    ) -> Result<mooncake_proto::TierWorkResponse, String> {
        if !self.config().enable_offload {
            return Err(
                "this master runs without --enable_offload: the SSD tier is not used".into(),
            );
        }
        if req.segment_name.is_empty() || req.client_id.is_empty() || req.tier_id.is_empty() {
            return Err("a tier's call needs its client id, segment name and tier id".into());
        }
        let desc = SegmentDesc {
            name: req.segment_name.clone(),
            owner: req.segment_name.clone(),
            base: DISK_BASE,
            size: req.capacity,
            protocol: req.protocol.clone(),
            transport_endpoint: req.transport_endpoint.clone(),
            shm_path: String::new(),
            host_id: req.host_id.clone(),
            generation: String::new(),
        };
        let mut purged = Vec::new();
        let registered = self
            .tiers
            .register(&req.client_id, &req.tier_id, desc, &mut purged);
        for old in &purged {
            for k in std::mem::take(&mut *old.promotions.lock()) {
                self.tiers.promotion_ended(&k);
            }
            // Its tasks will never be answered: the memory they pinned goes back.
            let queued: Vec<(TierTask, Inflight)> = old.queue.lock().drain(..).collect();
            for (t, what) in queued {
                self.tier_finish(old, t.task_id, ErrorCode::InternalError.code(), what);
            }
            self.tier_owner_restarted(old);
        }
        let (owner, fresh, restarted) = registered?;
        owner
            .last_seen_ms
            .store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
        if let Some(c) = req.counters {
            *owner.counters.lock() = c;
        }
        if restarted {
            self.tier_owner_restarted(&owner);
        }
        self.tier_done(&owner, &req.done);
        self.tier_free_expired();
        let report_needed = if req.report {
            self.tier_reconcile(&owner, fresh, &req.records);
            if fresh {
                self.tier_backfill(&owner);
            }
            false
        } else {
            fresh || restarted
        };
        self.tier_start_promotions(&owner);
        let mut tasks = take_tasks(&owner);
        // A call that brings results is answered at once, tasks or none: its owner
        // may still be doing others, whose results must not wait for a task to come.
        if tasks.is_empty() && !report_needed && req.done.is_empty() {
            let _ = tokio::time::timeout(LONG_POLL, owner.wake.notified()).await;
            self.tier_start_promotions(&owner);
            tasks = take_tasks(&owner);
        }
        Ok(mooncake_proto::TierWorkResponse {
            code: 0,
            tasks,
            report_needed,
        })
    }
}

fn take_tasks(owner: &TierOwner) -> Vec<TierTask> {
    let mut q = owner.queue.lock();
    let n = q.len().min(TASKS_PER_ANSWER);
    let mut inflight = owner.inflight.lock();
    q.drain(..n)
        .map(|(t, what)| {
            inflight.insert(t.task_id, what);
            t
        })
        .collect()
}

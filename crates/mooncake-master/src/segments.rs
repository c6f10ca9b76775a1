//! The segment registry: every mounted segment, its allocator, and the interned ids
//! that objects use to refer to segments and owners (a `u32` instead of a name keeps
//! each replica at 12 bytes).
//!
//! Segment ids are never reused, so a replica can never point at a different segment
//! that happened to get the same id. A removed segment is marked dead before the
//! index drops its replicas; allocation on a dead segment fails and frees into it
//! are skipped (its memory is gone with its owner).

use crate::alloc::{AllocHandle, SegmentAllocator};
use crate::generation::Generations;
use crate::placement::SegmentView;
use mooncake_common::ErrorCode;
use mooncake_common::SegmentDesc;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One mounted segment.
#[derive(Debug)]
pub struct Segment {
    pub id: u32,
    pub owner_id: u32,
    pub client_id: Box<str>,
    /// What clients are told about this segment (cloned into replies).
    pub desc: SegmentDesc,
    unit_shift: u32,
    capacity: u64,
    alloc: Mutex<SegmentAllocator>,
    /// The allocator's generation table, read by lookups without the allocator lock.
    gens: Arc<Generations>,
    alive: AtomicBool,
    /// Its owner went away without unmounting: kept (objects and all) until this time
    /// (ms on the master clock) for the owner to come back with the same memory; out of
    /// placement meanwhile. 0 = serving.
    held_until_ms: AtomicU64,
    /// Being drained, or drained: takes no new replicas.
    draining: AtomicBool,
    used: AtomicU64,
    largest_free: AtomicU64,
}

impl Segment {
    /// Allocates `bytes` unless the segment is full or already unmounted.
    pub fn allocate(&self, bytes: u64) -> Option<AllocHandle> {
        let mut a = self.alloc.lock();
        if !self.alive.load(Ordering::SeqCst) || !self.takes_replicas() {
            return None;
        }
        let h = a.allocate(bytes);
        self.refresh(&a);
        h
    }

    /// Frees an allocation made here (skipped once the segment is unmounted).
    pub fn free(&self, handle: AllocHandle, bytes: u64) {
        let mut a = self.alloc.lock();
        if self.alive.load(Ordering::SeqCst) {
            a.free(handle, bytes);
            self.refresh(&a);
        }
    }

    /// Runs `f` on the allocator under its lock (an HA takeover reproducing the
    /// previous leader's layout on a fresh segment), then refreshes the figures.
    pub fn with_allocator<T>(&self, f: impl FnOnce(&mut SegmentAllocator) -> T) -> T {
        let mut a = self.alloc.lock();
        let out = f(&mut a);
        if !Arc::ptr_eq(&a.generations(), &self.gens) {
            // `f` replaced the allocator: its allocations are new ones.
            self.gens.renew();
            a.use_generations(self.gens.clone());
        }
        self.refresh(&a);
        out
    }

    fn refresh(&self, a: &SegmentAllocator) {
        self.used.store(a.used(), Ordering::Relaxed);
        self.largest_free.store(a.largest_free(), Ordering::Relaxed);
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Whether new replicas may go here (neither held for a restart nor draining).
    pub fn takes_replicas(&self) -> bool {
        self.held_until_ms.load(Ordering::Relaxed) == 0 && !self.draining.load(Ordering::Relaxed)
    }

    /// Until when the segment is held for its owner's return (0: serving).
    pub fn held_until_ms(&self) -> u64 {
        self.held_until_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn hold_until(&self, ms: u64) {
        let _guard = self.alloc.lock();
        self.held_until_ms.store(ms.max(1), Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn set_draining(&self, on: bool) {
        let _guard = self.alloc.lock();
        self.draining.store(on, Ordering::SeqCst);
    }

    /// The allocation unit's shift (offsets are `handle.offset << shift`).
    pub fn unit_shift(&self) -> u32 {
        self.unit_shift
    }

    /// Byte offset of `handle` in this segment.
    pub fn offset_of(&self, handle: AllocHandle) -> u64 {
        u64::from(handle.offset) << self.unit_shift
    }

    /// The generation of the live allocation `handle` (`generation.rs`): read under
    /// the index lock that keeps the object holding it in place.
    pub fn generation_of(&self, handle: AllocHandle) -> u64 {
        self.gens.of(handle.offset)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> SegmentView {
        let used = self.used();
        SegmentView {
            id: self.id,
            owner: self.owner_id,
            capacity: self.capacity,
            free: self.capacity.saturating_sub(used),
            largest_free: self.largest_free.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Table {
    by_id: Vec<Option<Arc<Segment>>>,
    by_name: HashMap<String, u32>,
    owners: HashMap<String, u32>,
    live: usize,
    /// The capacity of the largest live segment (kept on mount and removal: every
    /// put start asks).
    largest: u64,
}

impl Table {
    fn refresh_largest(&mut self) {
        self.largest = self
            .by_id
            .iter()
            .flatten()
            .map(|s| s.capacity())
            .max()
            .unwrap_or(0);
    }
}

/// Outcome of a mount.
pub enum Mounted {
    New(Arc<Segment>),
    /// The same client mounted the same segment before: nothing changed.
    Existing(Arc<Segment>),
}

/// All segments, by id and by name.
#[derive(Default)]
pub struct SegmentRegistry {
    table: RwLock<Table>,
}

impl SegmentRegistry {
    /// Registers `desc` for `client_id`. The same client mounting the same name again is
    /// idempotent; another client's name is `SegmentAlreadyExists`.
    pub fn mount(&self, client_id: &str, desc: SegmentDesc) -> Result<Mounted, ErrorCode> {
        if desc.name.is_empty() || desc.size == 0 {
            return Err(ErrorCode::InvalidParams);
        }
        let mut t = self.table.write();
        if let Some(&id) = t.by_name.get(&desc.name) {
            let seg = t.by_id[id as usize]
                .clone()
                .ok_or(ErrorCode::InternalError)?;
            return if &*seg.client_id == client_id {
                Ok(Mounted::Existing(seg))
            } else {
                Err(ErrorCode::SegmentAlreadyExists)
            };
        }
        let alloc = SegmentAllocator::new(desc.size).map_err(|_| ErrorCode::InvalidParams)?;
        let owner_key = if desc.owner.is_empty() {
            desc.name.clone()
        } else {
            desc.owner.clone()
        };
        let next_owner = t.owners.len() as u32;
        let owner_id = *t.owners.entry(owner_key).or_insert(next_owner);
        let id = u32::try_from(t.by_id.len()).map_err(|_| ErrorCode::InternalError)?;
        let seg = Arc::new(Segment {
            id,
            owner_id,
            client_id: client_id.into(),
            unit_shift: alloc.unit().trailing_zeros(),
            capacity: alloc.capacity(),
            largest_free: AtomicU64::new(alloc.largest_free()),
            used: AtomicU64::new(0),
            gens: alloc.generations(),
            alloc: Mutex::new(alloc),
            alive: AtomicBool::new(true),
            held_until_ms: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            desc,
        });
        t.by_name.insert(seg.desc.name.clone(), id);
        t.by_id.push(Some(seg.clone()));
        t.live += 1;
        t.largest = t.largest.max(seg.capacity());
        Ok(Mounted::New(seg))
    }

    /// The segment whose memory carries `generation` (never matches an empty one).
    pub fn by_generation(&self, generation: &str) -> Option<Arc<Segment>> {
        if generation.is_empty() {
            return None;
        }
        let t = self.table.read();
        t.by_id
            .iter()
            .flatten()
            .find(|s| s.desc.generation == generation)
            .cloned()
    }

    /// Gives `old` (same memory, proven by its generation) to its returning owner:
    /// the same id and allocator, so every replica stays where it is, under the new
    /// client id and descriptor (a restarted owner maps the memory elsewhere, may
    /// listen on another port, may even carry another name). Serving again. The old
    /// handle is marked dead.
    pub fn resume(
        &self,
        old: &Arc<Segment>,
        client_id: &str,
        desc: SegmentDesc,
    ) -> Result<Arc<Segment>, ErrorCode> {
        let mut t = self.table.write();
        let id = old.id;
        match t.by_id.get(id as usize) {
            Some(Some(cur)) if Arc::ptr_eq(cur, old) => {}
            _ => return Err(ErrorCode::SegmentNotFound),
        }
        if desc.name != old.desc.name && t.by_name.contains_key(&desc.name) {
            return Err(ErrorCode::SegmentAlreadyExists);
        }
        let owner_key = if desc.owner.is_empty() {
            desc.name.clone()
        } else {
            desc.owner.clone()
        };
        let next_owner = t.owners.len() as u32;
        let owner_id = *t.owners.entry(owner_key).or_insert(next_owner);
        let alloc = {
            let mut a = old.alloc.lock();
            old.alive.store(false, Ordering::SeqCst);
            let empty =
                SegmentAllocator::new(old.capacity).map_err(|_| ErrorCode::InternalError)?;
            std::mem::replace(&mut *a, empty)
        };
        let seg = Arc::new(Segment {
            id,
            owner_id,
            client_id: client_id.into(),
            unit_shift: old.unit_shift,
            capacity: old.capacity,
            largest_free: AtomicU64::new(alloc.largest_free()),
            used: AtomicU64::new(alloc.used()),
            gens: alloc.generations(),
            alloc: Mutex::new(alloc),
            alive: AtomicBool::new(true),
            held_until_ms: AtomicU64::new(0),
            draining: AtomicBool::new(old.is_draining()),
            desc,
        });
        t.by_name.remove(&old.desc.name);
        t.by_name.insert(seg.desc.name.clone(), id);
        t.by_id[id as usize] = Some(seg.clone());
        Ok(seg)
    }

    /// Unregisters a segment by name and marks it dead; the caller then drops its
    /// replicas from the index.
    pub fn remove(&self, name: &str) -> Option<Arc<Segment>> {
        let mut t = self.table.write();
        let id = t.by_name.remove(name)?;
        let seg = t.by_id[id as usize].take()?;
        t.live -= 1;
        t.refresh_largest();
        // Under the allocator lock so that no allocation is in flight across the flip.
        let _guard = seg.alloc.lock();
        seg.alive.store(false, Ordering::SeqCst);
        drop(_guard);
        Some(seg)
    }

    pub fn get(&self, id: u32) -> Option<Arc<Segment>> {
        self.table.read().by_id.get(id as usize)?.clone()
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<Segment>> {
        let t = self.table.read();
        let id = *t.by_name.get(name)?;
        t.by_id[id as usize].clone()
    }

    /// Placement's snapshot of every live segment that takes replicas.
    pub fn views(&self) -> Vec<SegmentView> {
        let t = self.table.read();
        t.by_id
            .iter()
            .flatten()
            .filter(|s| s.takes_replicas())
            .map(|s| s.view())
            .collect()
    }

    pub fn list(&self) -> Vec<Arc<Segment>> {
        self.table.read().by_id.iter().flatten().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.table.read().live
    }

    /// The capacity of the largest live segment (0 when none).
    pub fn largest_capacity(&self) -> u64 {
        self.table.read().largest
    }

    /// (used, capacity) over all live segments, except those held for their owner's
    /// restart (out of capacity until it returns).
    pub fn totals(&self) -> (u64, u64) {
        let t = self.table.read();
        t.by_id
            .iter()
            .flatten()
            .filter(|s| s.held_until_ms() == 0)
            .fold((0, 0), |(u, c), s| (u + s.used(), c + s.capacity()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(name: &str, owner: &str, size: u64) -> SegmentDesc {
        SegmentDesc {
            name: name.into(),
            owner: owner.into(),
            size,
            ..Default::default()
        }
    }

    #[test]
    fn mount_is_idempotent_per_client_and_exclusive_across_clients() {
        let r = SegmentRegistry::default();
        assert!(matches!(
            r.mount("c1", desc("a:1", "a:1", 1 << 20)),
            Ok(Mounted::New(_))
        ));
        assert!(matches!(
            r.mount("c1", desc("a:1", "a:1", 1 << 20)),
            Ok(Mounted::Existing(_))
        ));
        assert!(matches!(
            r.mount("c2", desc("a:1", "a:1", 1 << 20)),
            Err(ErrorCode::SegmentAlreadyExists)
        ));
        assert!(matches!(
            r.mount("c2", desc("", "x", 1 << 20)),
            Err(ErrorCode::InvalidParams)
        ));
        assert!(matches!(
            r.mount("c2", desc("b:1", "b", 0)),
            Err(ErrorCode::InvalidParams)
        ));
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn removed_segments_refuse_allocations_and_ids_are_not_reused() {
        let r = SegmentRegistry::default();
        let Ok(Mounted::New(a)) = r.mount("c1", desc("a:1", "a", 1 << 20)) else {
            panic!("mount")
        };
        let h = a.allocate(4096).unwrap();
        assert_eq!(r.totals(), (4096, 1 << 20));
        let gone = r.remove("a:1").unwrap();
        assert!(!gone.is_alive());
        assert!(gone.allocate(64).is_none());
        gone.free(h, 4096); // skipped, no panic
        let Ok(Mounted::New(b)) = r.mount("c1", desc("a:1", "a", 1 << 20)) else {
            panic!("mount")
        };
        assert_ne!(a.id, b.id);
        assert_eq!(r.largest_capacity(), 1 << 20);
        let Ok(Mounted::New(_)) = r.mount("c1", desc("big:1", "b", 4 << 20)) else {
            panic!("mount")
        };
        assert_eq!(r.largest_capacity(), 4 << 20);
        r.remove("big:1").unwrap();
        assert_eq!(r.largest_capacity(), 1 << 20);
        assert_eq!(a.owner_id, b.owner_id, "owners are interned by name");
        assert!(r.get(a.id).is_none());
    }
}

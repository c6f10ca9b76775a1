//! Segments and liveness: mount, remount, unmount, heartbeat, and dropping a gone
//! segment's replicas from the index (objects with another complete replica stay;
//! objects left with none are dropped).

use super::Master;
use crate::api::Heartbeat;
use crate::index::{Replica, Replicas, Walked, SHARDS};
use crate::liveness::Sweep;
use crate::segments::{Mounted, Segment};
use mooncake_common::ErrorCode;
use mooncake_common::SegmentDesc;
use std::sync::Arc;

/// The largest segment the master registers (1 PiB): far above any machine's memory
/// or disk tier, and low enough that a bogus size (u64::MAX) is refused before its
/// allocator (tens of MB of bookkeeping at the largest) is built.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 50;

/// Why `desc` cannot be a segment, if it cannot: an empty or absurd size, or a range
/// that wraps around the address space.
pub fn check_segment_desc(desc: &SegmentDesc) -> Result<(), String> {
    if desc.size == 0 {
        return Err(format!("segment {:?} has size 0", desc.name));
    }
    if desc.size > MAX_SEGMENT_BYTES {
        return Err(format!(
            "segment {:?} claims {} bytes, more than the {MAX_SEGMENT_BYTES}-byte limit",
            desc.name, desc.size
        ));
    }
    if desc.base.checked_add(desc.size).is_none() {
        return Err(format!(
            "segment {:?}: base {:#x} + size {} passes the end of the address space",
            desc.name, desc.base, desc.size
        ));
    }
    Ok(())
}

impl Master {
    /// Registers a segment for `client_id`. Mounting the same segment again from the
    /// same client is a no-op success; another client's segment name is -102.
    pub fn mount_segment(&self, client_id: &str, desc: SegmentDesc) -> Result<(), ErrorCode> {
        self.mount_inner(client_id, desc, false)
    }

    /// Like mount, for a client re-registering after `remount_needed` or a new view: a
    /// segment of the same name held by another client id (e.g. the same store before
    /// a restart) is replaced.
    pub fn remount_segment(&self, client_id: &str, desc: SegmentDesc) -> Result<(), ErrorCode> {
        self.mount_inner(client_id, desc, true)
    }

    fn mount_inner(
        &self,
        client_id: &str,
        desc: SegmentDesc,
        replace: bool,
    ) -> Result<(), ErrorCode> {
        if client_id.is_empty() {
            return Err(ErrorCode::InvalidParams);
        }
        if let Err(why) = check_segment_desc(&desc) {
            tracing::warn!(client_id, "mount refused (INVALID_PARAMS): {why}");
            return Err(ErrorCode::InvalidParams);
        }
        if let Some(r) = self.try_resume(client_id, &desc) {
            return r;
        }
        let name = desc.name.clone();
        let mut result = self.segments.mount(client_id, desc.clone());
        if replace && matches!(result, Err(ErrorCode::SegmentAlreadyExists)) {
            if let Some(old) = self.segments.remove(&name) {
                self.liveness.remove_segment(&old.client_id, &name);
                self.drop_segment(&old);
            }
            result = self.segments.mount(client_id, desc);
        }
        match result {
            Ok(Mounted::New(seg) | Mounted::Existing(seg)) => {
                self.index.log().segment_mounted(&seg);
                self.liveness.add_segment(client_id, &name, self.now_ms());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A segment's owner returning with the same memory (a restarted store or client
    /// that took its segment file back): the held segment whose generation matches
    /// (never by name alone) and whose size is the same is given back to the new
    /// client id with its objects; its unfinished writes are dropped. `None`: not a
    /// return, mount as usual.
    fn try_resume(&self, client_id: &str, desc: &SegmentDesc) -> Option<Result<(), ErrorCode>> {
        let old = self.segments.by_generation(&desc.generation)?;
        if &*old.client_id == client_id && old.desc.name == desc.name {
            return None; // the same client mounting again: idempotent as before
        }
        if old.desc.size != desc.size {
            tracing::warn!(segment = %old.desc.name, "a segment with the same generation came back with another size; treated as a new segment");
            return None;
        }
        let held = old.held_until_ms() != 0;
        let seg = match self.segments.resume(&old, client_id, desc.clone()) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        self.liveness.remove_segment(&old.client_id, &old.desc.name);
        let dropped = self.drop_pending_on(seg.id);
        self.index.log().segment_mounted(&seg);
        self.liveness
            .add_segment(client_id, &seg.desc.name, self.now_ms());
        super::counters::add(&self.counters().resumed_segments, 1);
        tracing::info!(
            segment = %seg.desc.name,
            previous = %old.desc.name,
            generation = %desc.generation,
            was_held = held,
            unfinished_writes_dropped = dropped,
            "segment owner came back with the same memory; its objects are served again"
        );
        Some(Ok(()))
    }

    /// Takes `seg` out of placement and keeps its objects for `segment_restart_grace`
    /// (its owner went away without unmounting). Writes in flight on it are dropped.
    /// Segments without a generation (memory that cannot outlive its process) and a
    /// zero grace are dropped at once; returns how many objects that dropped.
    pub(crate) fn hold_or_drop(&self, seg: &Arc<Segment>, announced: bool) -> u64 {
        let grace = crate::lease::ms(self.config().segment_restart_grace);
        if grace == 0 || seg.desc.generation.is_empty() {
            if let Some(seg) = self.segments.remove(&seg.desc.name) {
                return self.drop_segment(&seg);
            }
            return 0;
        }
        seg.hold_until(self.now_ms() + grace);
        let dropped = self.drop_pending_on(seg.id);
        if announced {
            tracing::info!(segment = %seg.desc.name, grace_ms = grace, unfinished_writes_dropped = dropped, "segment owner left to restart; objects kept for its return");
        } else {
            tracing::warn!(segment = %seg.desc.name, grace_ms = grace, unfinished_writes_dropped = dropped, "segment owner gone; objects kept for its return");
        }
        0
    }

    /// The owner of `name` stops to be restarted with the same memory: the segment
    /// leaves placement and capacity at once and is held for the restart grace
    /// (dropped at once without one). Returns how long it is held (0: dropped, and
    /// the owner need not keep its memory).
    ///
    /// A segment that was drained and holds nothing is dropped at once too: the drain
    /// was the operator saying the store leaves for good, and there is nothing to
    /// give back, so holding it would only keep its memory (the owner's segment file)
    /// for a restart that brings nothing back.
    pub fn leave_for_restart(&self, client_id: &str, name: &str) -> Result<u64, ErrorCode> {
        let Some(seg) = self.segments.by_name(name) else {
            return Err(ErrorCode::SegmentNotFound);
        };
        if &*seg.client_id != client_id {
            return Err(ErrorCode::IllegalClient);
        }
        self.liveness.remove_segment(client_id, name);
        if seg.is_draining() && seg.used() == 0 {
            if let Some(seg) = self.segments.remove(name) {
                self.drop_segment(&seg);
            }
            tracing::info!(segment = %name, "drained segment's owner left: nothing to hold; segment unmounted");
            return Ok(0);
        }
        let dropped = self.hold_or_drop(&seg, true);
        let until = seg.held_until_ms();
        if until == 0 {
            tracing::info!(segment = %name, dropped, "segment owner left (no restart grace): segment unmounted");
            return Ok(0);
        }
        Ok(until.saturating_sub(self.now_ms()))
    }

    /// Drops the segments whose owner did not come back within the grace.
    pub(crate) fn expire_held(&self) {
        let now = self.now_ms();
        for seg in self.segments.list() {
            let until = seg.held_until_ms();
            if until != 0 && now >= until {
                if let Some(seg) = self.segments.remove(&seg.desc.name) {
                    let dropped = self.drop_segment(&seg);
                    tracing::warn!(segment = %seg.desc.name, dropped, "segment owner did not come back within the restart grace; segment unmounted");
                }
            }
        }
    }

    /// Removes the unfinished writes' replicas on segment `seg` (freeing their
    /// ranges); writes left without a replica end. Returns how many writes lost one.
    fn drop_pending_on(&self, seg: u32) -> u64 {
        let Some(segment) = self.segments.get(seg) else {
            return 0;
        };
        let mut hit_count = 0;
        for i in 0..SHARDS {
            let mut shard = self.index.lock_shard(i);
            shard.edit_each(|_, o| {
                let Some(p) = &mut o.pending else {
                    return Walked::Untouched;
                };
                if !p.replicas.iter().any(|r| r.seg == seg) {
                    return Walked::Untouched;
                }
                for r in p.replicas.iter().filter(|r| r.seg == seg) {
                    segment.free(r.handle, p.size);
                }
                strip(&mut p.replicas, seg);
                hit_count += 1;
                if p.replicas.is_empty() {
                    o.pending = None;
                }
                if o.replicas.is_empty() && o.pending.is_none() {
                    Walked::Remove
                } else {
                    Walked::Changed
                }
            });
        }
        hit_count
    }

    /// Unmounts a segment at once (a clean close): how many objects lost their last
    /// replica.
    pub fn unmount_segment(&self, client_id: &str, name: &str) -> Result<u64, ErrorCode> {
        let Some(seg) = self.segments.by_name(name) else {
            return Err(ErrorCode::SegmentNotFound);
        };
        if &*seg.client_id != client_id {
            return Err(ErrorCode::IllegalClient);
        }
        self.liveness.touch(client_id, self.now_ms());
        let Some(seg) = self.segments.remove(name) else {
            return Err(ErrorCode::SegmentNotFound);
        };
        self.liveness.remove_segment(client_id, name);
        Ok(self.drop_segment(&seg))
    }

    /// Whether `client_id` owns a segment that has no grant secret (restored by a
    /// restart or taken over by a standby): it must mount again to learn one.
    pub(crate) fn owns_segment_without_secret(&self, client_id: &str) -> bool {
        self.liveness
            .any_segment(client_id, |name| !self.grant_secrets.has(name))
    }

    pub fn heartbeat(&self, client_id: &str) -> Heartbeat {
        Heartbeat {
            view_id: self.view_id(),
            remount_needed: !client_id.is_empty()
                && self.liveness.heartbeat(client_id, self.now_ms()),
        }
    }

    /// One liveness sweep: unmounts the segments of clients silent for `client_ttl`
    /// (or grants everyone a fresh TTL after a master stall).
    pub fn sweep_clients(&self) -> Sweep {
        let ttl = crate::lease::ms(self.config().client_ttl);
        let period = crate::lease::ms(crate::liveness::sweep_interval(self.config().client_ttl));
        let sweep = self.liveness.sweep(self.now_ms(), ttl, period);
        self.expire_held();
        if let Sweep::Expired(dead) = &sweep {
            for (client, names) in dead {
                super::counters::add(&self.counters().expired_clients, 1);
                for name in names {
                    let ours = self
                        .segments
                        .by_name(name)
                        .is_some_and(|s| &*s.client_id == client.as_str());
                    let seg = ours.then(|| self.segments.by_name(name)).flatten();
                    if let Some(seg) = seg {
                        let dropped = self.hold_or_drop(&seg, false);
                        if seg.held_until_ms() == 0 {
                            tracing::warn!(client = %client, segment = %name, dropped, "client missed its heartbeats; segment unmounted");
                        }
                    }
                }
            }
        }
        sweep
    }

    /// Removes a dead segment's replicas everywhere; returns how many complete objects
    /// lost their last replica and were dropped.
    pub(crate) fn drop_segment(&self, seg: &Arc<Segment>) -> u64 {
        self.index.log().segment_unmounted(seg.id);
        let mut dropped = 0;
        for i in 0..SHARDS {
            let mut shard = self.index.lock_shard(i);
            shard.edit_each(|_, o| {
                let was_complete = o.is_complete();
                let mut hit = strip(&mut o.replicas, seg.id);
                if hit && o.replicas.is_empty() && was_complete {
                    dropped += 1;
                }
                if let Some(p) = &mut o.pending {
                    if strip(&mut p.replicas, seg.id) {
                        hit = true;
                        if p.replicas.is_empty() {
                            o.pending = None;
                        }
                    }
                }
                if o.replicas.is_empty() && o.pending.is_none() {
                    Walked::Remove
                } else if hit {
                    Walked::Changed
                } else {
                    Walked::Untouched
                }
            });
        }
        dropped
    }

    /// After a put raced with an unmount: strips dead segments from one object.
    pub(crate) fn drop_dead_replicas_of(&self, key: &str) {
        let alive = |r: &Replica| self.segments.get(r.seg).is_some_and(|s| s.is_alive());
        let mut shard = self.index.lock(key);
        let Some(mut o) = shard.edit(key) else { return };
        if let Some(p) = &mut o.pending {
            if p.replicas.iter().any(|r| !alive(r)) {
                p.replicas = p.replicas.iter().copied().filter(alive).collect();
                if p.replicas.is_empty() {
                    o.pending = None;
                }
            }
        }
        let gone = o.replicas.is_empty() && o.pending.is_none();
        drop(o);
        if gone {
            shard.remove(key);
        }
    }
}

/// Drops replicas on segment `seg`; whether any were dropped.
fn strip(replicas: &mut Replicas, seg: u32) -> bool {
    if replicas.iter().any(|r| r.seg == seg) {
        *replicas = replicas.iter().copied().filter(|r| r.seg != seg).collect();
        true
    } else {
        false
    }
}

#[cfg(test)]
mod desc_tests {
    use super::*;
    use crate::config::MasterConfig;

    fn desc(base: u64, size: u64) -> SegmentDesc {
        SegmentDesc {
            name: "s".into(),
            owner: "s".into(),
            base,
            size,
            protocol: "tcp".into(),
            transport_endpoint: "127.0.0.1:1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn absurd_segments_are_refused_before_anything_is_built() {
        let m = Master::new(MasterConfig::default());
        for (base, size) in [
            (0x1000_0000, u64::MAX),
            (0x1000_0000, MAX_SEGMENT_BYTES + 1),
            (0x1000_0000, 0),
            (u64::MAX - 10, 1 << 20),
        ] {
            assert_eq!(
                m.mount_segment("c", desc(base, size)),
                Err(ErrorCode::InvalidParams),
                "base {base:#x} size {size}"
            );
        }
        assert!(m.segments().is_empty(), "nothing registered");
        let e = check_segment_desc(&desc(0x1000, u64::MAX)).unwrap_err();
        assert!(e.contains("limit"), "{e}");
        assert_eq!(m.mount_segment("c", desc(0x1000_0000, 1 << 20)), Ok(()));
    }

    #[test]
    fn only_a_drained_empty_segment_is_let_go_when_its_owner_leaves_to_restart() {
        let m = Master::new(MasterConfig::default());
        let mount = |name: &str, base: u64| {
            let mut d = desc(base, 1 << 20);
            d.name = name.into();
            d.owner = name.into();
            d.generation = format!("gen-{name}");
            m.mount_segment(name, d).unwrap();
            m.segments.by_name(name).unwrap()
        };
        let listed = |name: &str| m.segments().iter().any(|s| s.name == name);
        // Drained and empty: nothing to hold, dropped at once.
        mount("drained", 0x1000_0000).set_draining(true);
        assert_eq!(m.leave_for_restart("drained", "drained"), Ok(0));
        assert!(!listed("drained"));
        // Not drained: held for the restart grace.
        mount("plain", 0x2000_0000);
        assert!(m.leave_for_restart("plain", "plain").unwrap() > 0);
        assert!(listed("plain"));
        // Drained but still holding a range (a drain that has not finished, or that
        // left an object it could not place): held.
        let busy = mount("busy", 0x3000_0000);
        assert!(busy.allocate(4096).is_some());
        busy.set_draining(true);
        assert!(m.leave_for_restart("busy", "busy").unwrap() > 0);
        assert!(listed("busy"));
        // Someone else's segment: refused, nothing changes.
        let other = mount("other", 0x4000_0000);
        other.set_draining(true);
        assert_eq!(
            m.leave_for_restart("drained", "other"),
            Err(ErrorCode::IllegalClient)
        );
        assert!(listed("other"));
    }
}

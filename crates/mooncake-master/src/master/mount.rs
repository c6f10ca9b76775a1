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
        if let Sweep::Expired(dead) = &sweep {
            for (client, names) in dead {
                super::counters::add(&self.counters().expired_clients, 1);
                for name in names {
                    let ours = self
                        .segments
                        .by_name(name)
                        .is_some_and(|s| &*s.client_id == client.as_str());
                    if let Some(seg) = ours.then(|| self.segments.remove(name)).flatten() {
                        let dropped = self.drop_segment(&seg);
                        tracing::warn!(client = %client, segment = %name, dropped, "client missed its heartbeats; segment unmounted");
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

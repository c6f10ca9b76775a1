//! The segment this process contributes (store daemons, and clients started with
//! `global_segment_size > 0`): mapped memory registered with the transfer engine and
//! mounted at the master, kept alive by a heartbeat every second. When the master says
//! it does not know us (`remount_needed`) or its `view_id` changes (a new master), the
//! segment is mounted again.
//!
//! Metadata a restart forgets is learned again: the transfer engine's descriptor is
//! published again when the master answers after heartbeats failed (a restarted
//! master's embedded metadata server starts empty), after every re-mount, and every
//! [`REPUBLISH_EVERY`] heartbeats (a standalone metadata server that restarted).

use crate::config::HEARTBEAT_INTERVAL;
use crate::errors::check_code;
use crate::rpc::MasterRpc;
use mooncake_common::Result;
use mooncake_proto::{HeartbeatRequest, MountSegmentRequest, SegmentDesc, UnmountSegmentRequest};
use mooncake_segment::SegmentMemory;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A mounted segment. Dropping it does not unmount (that needs the network); `close`
/// does, and the master drops it after `client_ttl` otherwise.
pub(crate) struct LocalSegment {
    /// Taken (unmapped) by `close` once the engine no longer serves it.
    pub memory: parking_lot::Mutex<Option<SegmentMemory>>,
    /// Whether a mount ever succeeded (later mounts use RemountSegment).
    pub ever_mounted: AtomicBool,
    pub desc: SegmentDesc,
    pub mounted: AtomicBool,
    pub view_id: AtomicU64,
    /// Where the grant secret each mount answers goes: this process's transfer
    /// engine checks tenants' grants for the segment with it.
    pub grant_keys: Arc<mooncake_transfer::tcp::grant::GrantKeys>,
}

/// Liveness state shared by the heartbeat task and `health()`.
#[derive(Default)]
pub(crate) struct Liveness {
    /// Whether the last heartbeat reached the master.
    pub master_ok: AtomicBool,
    /// Heartbeats that did not reach the master (or got no answer) since start.
    pub heartbeat_failures: AtomicU64,
    /// Heartbeats answered since start.
    pub beats: AtomicU64,
}

/// Heartbeats between two publications of the transfer descriptor (module docs).
pub(crate) const REPUBLISH_EVERY: u64 = 30;

impl LocalSegment {
    pub async fn mount(&self, rpc: &MasterRpc, client_id: &str, again: bool) -> Result<()> {
        let req = MountSegmentRequest {
            client_id: client_id.to_string(),
            segment: Some(self.desc.clone()),
        };
        let resp = if again {
            rpc.call("remount_segment", |mut c| async move {
                c.remount_segment(req).await
            })
            .await?
        } else {
            rpc.call("mount_segment", |mut c| async move {
                c.mount_segment(req).await
            })
            .await?
        };
        let resp = match resp {
            r if again
                && r.code != 0
                && r.code != mooncake_common::ErrorCode::SegmentAlreadyExists.code() =>
            {
                let req = MountSegmentRequest {
                    client_id: client_id.to_string(),
                    segment: Some(self.desc.clone()),
                };
                rpc.call("mount_segment", |mut c| async move {
                    c.mount_segment(req).await
                })
                .await?
            }
            r => r,
        };
        // Re-mounting a segment the master still knows is fine.
        if resp.code != mooncake_common::ErrorCode::SegmentAlreadyExists.code() {
            check_code(resp.code, "mount_segment")?;
        }
        // Installed before the segment counts as mounted: the master signs tenants'
        // grants with this secret from its answer on.
        match <[u8; mooncake_common::grant::SECRET_LEN]>::try_from(&resp.grant_secret[..]) {
            Ok(s) => self.grant_keys.set(&self.desc.name, Some(s)),
            Err(_) => self.grant_keys.set(&self.desc.name, None),
        }
        self.view_id.store(resp.view_id, Ordering::Relaxed);
        self.mounted.store(true, Ordering::Release);
        self.ever_mounted.store(true, Ordering::Release);
        tracing::info!(segment = %self.desc.name, size = self.desc.size, view_id = resp.view_id, "segment mounted");
        Ok(())
    }

    pub async fn unmount(&self, rpc: &MasterRpc, client_id: &str) -> Result<()> {
        self.mounted.store(false, Ordering::Release);
        let req = UnmountSegmentRequest {
            client_id: client_id.to_string(),
            segment_name: self.desc.name.clone(),
        };
        let resp = rpc
            .call("unmount_segment", |mut c| async move {
                c.unmount_segment(req).await
            })
            .await?;
        if resp.code != mooncake_common::ErrorCode::SegmentNotFound.code() {
            check_code(resp.code, "unmount_segment")?;
        }
        tracing::info!(segment = %self.desc.name, dropped = resp.objects_dropped, "segment unmounted");
        Ok(())
    }
}

/// What the heartbeat task needs; it holds the client weakly and ends with it.
pub(crate) trait HeartbeatHost: Send + Sync + 'static {
    /// Master calls for a task on the runtime's workers (never blocking).
    fn background_rpc(&self) -> &MasterRpc;
    fn client_id(&self) -> &str;
    fn segment(&self) -> Option<&LocalSegment>;
    fn liveness(&self) -> &Liveness;
    fn is_closed(&self) -> bool;
    /// Publishes this process's transfer descriptor to the metadata server again.
    fn republish(&self) -> impl std::future::Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// Heartbeats every second until the host is dropped or closed.
pub(crate) fn spawn_heartbeat<H: HeartbeatHost>(host: Weak<H>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(h) = host.upgrade() else { return };
            if h.is_closed() {
                return;
            }
            beat(&h).await;
        }
    })
}

async fn beat<H: HeartbeatHost>(h: &Arc<H>) {
    let req = HeartbeatRequest {
        client_id: h.client_id().to_string(),
    };
    let resp = h
        .background_rpc()
        .call("heartbeat", |mut c| async move { c.heartbeat(req).await })
        .await;
    let Ok(resp) = resp else {
        h.liveness().master_ok.store(false, Ordering::Relaxed);
        h.liveness()
            .heartbeat_failures
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    let was_ok = h.liveness().master_ok.swap(true, Ordering::Relaxed);
    let n = h.liveness().beats.fetch_add(1, Ordering::Relaxed) + 1;
    if !was_ok && n > 1 || n.is_multiple_of(REPUBLISH_EVERY) {
        h.republish().await;
    }
    let Some(seg) = h.segment() else { return };
    let view_changed = seg.view_id.load(Ordering::Relaxed) != resp.view_id;
    let lost = !seg.mounted.load(Ordering::Acquire);
    if resp.remount_needed || view_changed || lost {
        let again = seg.ever_mounted.load(Ordering::Acquire);
        if again {
            tracing::warn!(
                segment = %seg.desc.name,
                remount_needed = resp.remount_needed,
                view_changed,
                "re-mounting segment"
            );
        } else {
            // The first mount of a store that started before its master answered.
            tracing::info!(segment = %seg.desc.name, "mounting segment");
        }
        if let Err(e) = seg.mount(h.background_rpc(), h.client_id(), again).await {
            tracing::warn!(error = %e, "re-mount failed; retrying at the next heartbeat");
            seg.mounted.store(false, Ordering::Release);
        } else if again {
            h.republish().await;
        }
    }
}

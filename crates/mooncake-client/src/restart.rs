//! Leaving to be restarted: the segment is not unmounted and its file is kept, so
//! that the same owner started again (same shared-memory directory, same identity)
//! takes the memory back and the master gives it its objects back
//! (`mooncake_segment::SegmentMemory::create_retained`, the master's restart grace).

use crate::client::Client;
use mooncake_proto::segment_owner_client::SegmentOwnerClient;
use mooncake_proto::LeaveRequest;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Best effort: a master that does not answer in time learns it from the missed
/// heartbeats. `Some(ms)`: the master holds the segment's objects that long; `Some(0)`:
/// it holds nothing (the segment was drained, or there is no restart grace), so the
/// memory need not outlive this process. `None`: not known.
async fn tell_master(
    master_addr: &str,
    client_id: &str,
    segment: &str,
    auth: Option<crate::auth::ClientAuth>,
) -> Option<u64> {
    let Ok((ch, origin)) = crate::auth::master_service_channel(
        master_addr,
        Duration::from_secs(1),
        Duration::from_secs(2),
        auth,
    ) else {
        return None;
    };
    let mut rpc = SegmentOwnerClient::with_origin(ch, origin);
    let req = LeaveRequest {
        client_id: client_id.to_string(),
        segment_name: segment.to_string(),
    };
    match rpc.leave_for_restart(req).await {
        Ok(r) if r.get_ref().code == 0 => {
            let ms = r.get_ref().held_for_ms;
            if ms > 0 {
                tracing::info!(
                    segment,
                    held_for_ms = ms,
                    "the master holds the segment's objects for the restart"
                );
            }
            Some(ms)
        }
        Ok(r) => {
            tracing::warn!(
                segment,
                code = r.get_ref().code,
                "the master refused to hold the segment"
            );
            None
        }
        Err(e) => {
            tracing::warn!(segment, error = %e.message(), "could not tell the master; it notices after client_ttl");
            None
        }
    }
}

impl Client {
    /// Stops this client without unmounting its segment: the master at
    /// `master_addr` is told (`SegmentOwner.LeaveForRestart`: the segment leaves
    /// placement and capacity at once and its objects are held for the master's
    /// restart grace; a master that cannot be told notices the missed heartbeats
    /// after `client_ttl`), heartbeats stop, the memory is no longer served and is
    /// unmapped, but its file stays for the next run, unless the master answered that
    /// it holds nothing (a drained, empty segment, or no restart grace): then nothing
    /// would come back, and the file, which holds the segment's memory, is removed. A
    /// memory that cannot outlive the process (a memfd) is simply gone. Use
    /// [`Client::close`] to leave for good.
    pub async fn leave_for_restart(&self, master_addr: &str) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(seg) = &self.inner.segment {
            let mut held = None;
            if seg.mounted.load(Ordering::Acquire) {
                let auth = self.inner.tuning.client_auth();
                // Under HA (an `etcd://` address) the leader is the one told.
                let addr = if master_addr.trim() == self.inner.rpc.addr() {
                    self.inner.rpc.current_addr().await.ok()
                } else {
                    Some(master_addr.to_string())
                };
                if let Some(addr) = addr {
                    held = tell_master(&addr, &self.inner.client_id, &seg.desc.name, auth).await;
                }
            }
            seg.mounted.store(false, Ordering::Release);
            let mem = seg.memory.lock().take();
            if let Some(mut mem) = mem {
                // Kept unless the master said it holds nothing: a master that could not
                // be told may still give the objects back to the next run.
                if held == Some(0) {
                    tracing::info!(
                        segment = %seg.desc.name,
                        "the master holds nothing for this segment (drained, or no restart grace): its file is removed"
                    );
                } else {
                    mem.keep_file_on_drop();
                }
                let engine = self.inner.data.engine.clone();
                // Unregistering waits for in-flight peer accesses; keep it off the runtime.
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = engine.unregister_memory(mem.addr());
                    drop(mem);
                })
                .await;
            }
        }
        self.inner.data.engine.shutdown().await;
    }
}

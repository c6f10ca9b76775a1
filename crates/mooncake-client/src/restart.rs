//! Leaving to be restarted: the segment is not unmounted and its file is kept, so
//! that the same owner started again (same shared-memory directory, same identity)
//! takes the memory back and the master gives it its objects back
//! (`mooncake_segment::SegmentMemory::create_retained`, the master's restart grace).

use crate::client::Client;
use std::sync::atomic::Ordering;

impl Client {
    /// Stops this client without unmounting its segment: heartbeats stop, the
    /// memory is no longer served and is unmapped, but its file stays for the next
    /// run. The master takes the segment out of placement once the heartbeats are
    /// missed (`client_ttl`) and keeps its objects for its restart grace. A memory
    /// that cannot outlive the process (a memfd) is simply gone. Use
    /// [`Client::close`] to leave for good.
    pub async fn leave_for_restart(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(seg) = &self.inner.segment {
            seg.mounted.store(false, Ordering::Release);
            let mem = seg.memory.lock().take();
            if let Some(mut mem) = mem {
                mem.keep_file_on_drop();
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

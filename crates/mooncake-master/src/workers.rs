//! The master's background workers, each a named tokio task whose status the admin
//! port shows: `eviction` (above the watermark, or woken by a put that found no
//! space), `liveness` (expires silent clients, with stall grace) and `put_reaper`
//! (frees stuck puts, and upserted-away space once readers' leases end). They stop
//! when [`WorkerHandles`] is dropped.

use crate::liveness::{sweep_interval, Sweep};
use crate::master::Master;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the eviction worker checks the watermark.
pub const EVICTION_INTERVAL: Duration = Duration::from_millis(100);
/// How often space freed by upserts (held for readers' leases) is returned.
pub const DEFERRED_FREE_INTERVAL: Duration = Duration::from_millis(250);

/// Owns the worker tasks; dropping it aborts them.
#[derive(Debug)]
pub struct WorkerHandles {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for WorkerHandles {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn reap_interval(release: Duration) -> Duration {
    (release / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

impl Master {
    /// Starts the background workers on the current tokio runtime.
    pub fn spawn_workers(self: &Arc<Self>) -> WorkerHandles {
        let mut tasks = Vec::new();
        let m = self.clone();
        self.set_worker_status("eviction", "idle".into());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(EVICTION_INTERVAL) => {}
                    _ = m.evict_wakeup.notified() => {}
                }
                let m2 = m.clone();
                // A round walks the whole index: keep it off the async threads.
                let Ok(r) = tokio::task::spawn_blocking(move || m2.run_eviction()).await else {
                    continue;
                };
                if r.objects > 0 {
                    m.set_worker_status(
                        "eviction",
                        format!(
                            "last round evicted {} objects, {} bytes",
                            r.objects, r.bytes
                        ),
                    );
                }
            }
        }));
        let m = self.clone();
        self.set_worker_status("liveness", "watching".into());
        tasks.push(tokio::spawn(async move {
            let period = sweep_interval(m.config().client_ttl);
            loop {
                tokio::time::sleep(period).await;
                match m.sweep_clients() {
                    Sweep::StallGrace { stalled_ms } => {
                        tracing::warn!(
                            stalled_ms,
                            "master stalled longer than client_ttl; every client gets a fresh ttl"
                        );
                        m.set_worker_status(
                            "liveness",
                            format!("stall of {stalled_ms} ms detected; fresh ttl granted"),
                        );
                    }
                    Sweep::Expired(v) if !v.is_empty() => {
                        m.set_worker_status("liveness", format!("expired {} clients", v.len()));
                    }
                    Sweep::Expired(_) => {}
                }
            }
        }));
        let m = self.clone();
        self.set_worker_status("put_reaper", "idle".into());
        tasks.push(tokio::spawn(async move {
            // Deferred frees are cheap and checked every tick; the stuck-put scan walks
            // the index and runs every `reap_interval`.
            let scan_every = reap_interval(m.config().put_start_release_timeout);
            let tick = scan_every.min(DEFERRED_FREE_INTERVAL);
            let mut since_scan = Duration::ZERO;
            loop {
                tokio::time::sleep(tick).await;
                m.run_deferred_frees();
                since_scan += tick;
                if since_scan < scan_every {
                    continue;
                }
                since_scan = Duration::ZERO;
                let m2 = m.clone();
                if let Ok(n) = tokio::task::spawn_blocking(move || m2.reap_stuck_puts()).await {
                    if n > 0 {
                        m.set_worker_status("put_reaper", format!("freed {n} stuck puts"));
                    }
                }
            }
        }));
        WorkerHandles { tasks }
    }
}

//! Which master should win the next election: one that holds the replicated state.
//!
//! When a leader dies, every master waiting on the leader key campaigns once etcd
//! expires the dead leader's lease. A standby that followed the leader holds its state
//! in a shadow and continues its view with no loss; a master that holds none (just
//! restarted, or still receiving its snapshot) would start an empty index under a new
//! view, and every store would re-mount into it: every object would be gone. A killed
//! leader restarted by a supervisor within the lease TTL is exactly such a master, and
//! it races the standby for the free key; left to chance, it wins about half the time.
//!
//! So a master with a usable shadow says so in etcd: `<prefix>/standby_ready/<its
//! address>` on a lease of its own, kept alive only while the shadow is usable, and
//! revoked (the key goes with it) as soon as it is not (taken for a takeover,
//! discarded, or its stream broke too long ago). A master without a usable shadow
//! does not campaign while another master's key exists ([`others_ready`]); if that
//! master dies or loses etcd, its lease expires within the TTL and the election goes
//! on as before. With no shadow anywhere (a cluster's first start) nothing changes.

use super::election::{keepalive_every, Election, ElectionResult};
use super::replication::shadow::usable_after_disconnect;
use super::state::HaState;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the shadow's usability is re-checked (an in-memory look).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The folder of readiness keys of a cluster.
pub fn ready_prefix(cluster_id: &str) -> String {
    format!("mooncake-store/{cluster_id}/standby_ready/")
}

/// Whether this process holds a shadow a takeover would use right now.
pub fn has_usable_shadow(state: &HaState) -> bool {
    !state.fence.is_leader_now()
        && state
            .shadow
            .is_usable(usable_after_disconnect(state.config().ha_lease_ttl))
}

/// The other masters that hold a usable shadow (their addresses), as etcd lists them.
pub async fn others_ready<E: Election>(e: &mut E, state: &HaState) -> ElectionResult<Vec<String>> {
    Ok(e.ready()
        .await?
        .into_iter()
        .filter(|a| *a != state.advertised)
        .collect())
}

/// The key while it is held: its lease and when it was last kept alive.
struct Held {
    lease: i64,
    last_keepalive: Instant,
}

/// Keeps this master's readiness key in step with its shadow until `shutdown`
/// resolves; the key's lease is revoked on the way out. `election` is this task's
/// own (its own connection).
pub async fn run<E: Election>(
    state: Arc<HaState>,
    mut election: E,
    shutdown: impl Future<Output = ()>,
) {
    let mut held: Option<Held> = None;
    tokio::select! {
        _ = advertise(&state, &mut election, &mut held) => {}
        _ = shutdown => {}
    }
    if let Some(h) = held {
        let _ = election.revoke(h.lease).await;
    }
}

async fn advertise<E: Election>(state: &HaState, e: &mut E, held: &mut Option<Held>) {
    let ttl = state.config().ha_lease_ttl;
    let period = keepalive_every(ttl);
    let mut last_error = String::new();
    loop {
        let ready = has_usable_shadow(state);
        let r = match (ready, held.as_mut()) {
            (true, None) => {
                let sent = Instant::now();
                e.put_ready(ttl).await.map(|lease| {
                    tracing::info!(
                        "HA: holding the replicated state; told etcd ({}{})",
                        ready_prefix(&state.config().cluster_id),
                        state.advertised
                    );
                    *held = Some(Held {
                        lease,
                        last_keepalive: sent,
                    });
                })
            }
            (true, Some(h)) if h.last_keepalive.elapsed() >= period => {
                let sent = Instant::now();
                match e.keep_alive(h.lease, period * 2).await {
                    Ok(granted) if granted > 0 => {
                        h.last_keepalive = sent;
                        Ok(())
                    }
                    Ok(_) => Err("etcd reports the readiness lease expired".to_string()),
                    Err(e) => Err(e),
                }
            }
            (false, Some(h)) => {
                let r = e.revoke(h.lease).await;
                *held = None;
                tracing::info!("HA: no usable replicated state any more; readiness key withdrawn");
                r
            }
            _ => Ok(()),
        };
        match r {
            Ok(()) => last_error.clear(),
            Err(e) => {
                if e != last_error {
                    tracing::warn!("HA: readiness key: {e}; trying again");
                    last_error = e;
                }
                // A fresh lease and connection next time (the old lease, if alive,
                // expires within the TTL).
                *held = None;
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

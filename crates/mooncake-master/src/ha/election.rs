//! Leader election through etcd: campaign for `mooncake-store/<cluster_id>/master_view`
//! with a create-revision == 0 transaction under a short lease, keep the lease alive
//! while leading, and wait (watching the key) while another master leads.

use super::fence::Fence;
use super::state::HaState;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, EventType, PutOptions, Txn, TxnOp};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The leader key's lease.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// Keep-alive period while leading.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
/// How long a standby waits on the watch before reading the key again anyway.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Pause after an etcd error before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// Bound on every single etcd request.
const ETCD_TIMEOUT: Duration = Duration::from_secs(2);

/// The etcd key holding the leader's address.
pub fn view_key(cluster_id: &str) -> String {
    format!("mooncake-store/{cluster_id}/master_view")
}

type EtcdResult<T> = Result<T, String>;

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> EtcdResult<T> {
    match tokio::time::timeout(ETCD_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("etcd {what}: {e}")),
        Err(_) => Err(format!("etcd {what}: no answer within {ETCD_TIMEOUT:?}")),
    }
}

async fn connect(endpoints: &[String]) -> EtcdResult<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_timeout(ETCD_TIMEOUT);
    bounded("connect", Client::connect(endpoints, Some(opts))).await
}

/// Runs the election until `shutdown` resolves; then stops serving and revokes the
/// lease, so a standby takes over at once instead of after the TTL.
pub async fn run(state: Arc<HaState>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = campaign_forever(&state) => {}
        _ = shutdown => {}
    }
    state.fence.revoke();
    state.retire();
    let lease = state.lease.swap(0, Ordering::SeqCst);
    if lease != 0 {
        let endpoints = &state.config().etcd_endpoints;
        let r = match connect(endpoints).await {
            Ok(mut c) => bounded("lease revoke", c.lease_revoke(lease))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => tracing::info!("HA: stopped; lease revoked, a standby can take over now"),
            Err(e) => tracing::warn!("HA: stopped; {e} (a standby takes over after the TTL)"),
        }
    }
}

async fn campaign_forever(state: &HaState) {
    let endpoints = state.config().etcd_endpoints.clone();
    let key = view_key(&state.config().cluster_id);
    let mut last_error = String::new();
    loop {
        let r = match connect(&endpoints).await {
            Ok(mut c) => round(&mut c, state, &key).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            if e != last_error {
                tracing::warn!("HA: {e}; retrying");
                last_error = e;
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
}

/// Waits for the key to be free, campaigns, and leads while the lease lives.
/// Returns Ok after losing a campaign or a term (the caller starts another round).
async fn round(c: &mut Client, state: &HaState, key: &str) -> EtcdResult<()> {
    loop {
        wait_until_free(c, state, key).await?;
        let sent = Instant::now();
        let ttl = LEASE_TTL.as_secs() as i64;
        let lease = bounded("lease grant", c.lease_grant(ttl, None)).await?;
        let granted = Duration::from_secs(lease.ttl().max(0) as u64);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(
                key,
                state.advertised.as_str(),
                Some(PutOptions::new().with_lease(lease.id())),
            )]);
        let won = bounded("campaign", c.txn(txn)).await?.succeeded();
        if !won {
            let _ = bounded("lease revoke", c.lease_revoke(lease.id())).await;
            continue;
        }
        lead(c, state, lease.id(), Fence::deadline_for(sent, granted)).await;
        return Ok(());
    }
}

/// Reads the key; while someone holds it, records them and waits for a change.
async fn wait_until_free(c: &mut Client, state: &HaState, key: &str) -> EtcdResult<()> {
    loop {
        let got = bounded("get", c.get(key, None)).await?;
        let Some(kv) = got.kvs().first() else {
            return Ok(());
        };
        let holder = String::from_utf8_lossy(kv.value()).into_owned();
        state.set_leader(&holder);
        let mut watch = bounded("watch", c.watch(key, None)).await?;
        // Any delete ends the wait; a timeout or a broken watch re-reads the key.
        let deleted = tokio::time::timeout(RECHECK_EVERY * 5, async {
            while let Ok(Some(resp)) = watch.message().await {
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return true;
                }
            }
            false
        })
        .await;
        if matches!(deleted, Ok(false)) {
            tokio::time::sleep(RECHECK_EVERY.min(RETRY_AFTER)).await;
        }
    }
}

/// Serves one term: opens the fence, keeps the lease alive, closes the fence as soon
/// as a keep-alive is refused or the deadline passes.
async fn lead(c: &mut Client, state: &HaState, lease: i64, until: Instant) {
    let term = state.fence.term() + 1;
    state.lease.store(lease, Ordering::SeqCst);
    state.install(term);
    let began = state.fence.begin(until);
    debug_assert_eq!(term, began);
    state.set_leader(&state.advertised);
    tracing::info!(
        "HA: elected leader as {} (lease {lease:x}, term {term})",
        state.advertised
    );
    let why = keep_alive(c, state, lease, term).await;
    state.fence.revoke();
    state.retire();
    tracing::warn!("HA: leadership lost: {why}");
    let _ = bounded("lease revoke", c.lease_revoke(lease)).await;
    let _ = state
        .lease
        .compare_exchange(lease, 0, Ordering::SeqCst, Ordering::SeqCst);
}

async fn keep_alive(c: &mut Client, state: &HaState, lease: i64, term: u64) -> String {
    let (mut keeper, mut stream) = match bounded("keep-alive", c.lease_keep_alive(lease)).await {
        Ok(k) => k,
        Err(e) => return e,
    };
    loop {
        if !state.fence.holds(term) {
            return "the lease deadline passed without an acknowledged keep-alive".into();
        }
        let sent = Instant::now();
        if let Err(e) = bounded("keep-alive", keeper.keep_alive()).await {
            return e;
        }
        match bounded("keep-alive", stream.message()).await {
            Ok(Some(r)) if r.ttl() > 0 => {
                let ttl = Duration::from_secs(r.ttl() as u64);
                state.fence.extend(term, Fence::deadline_for(sent, ttl));
            }
            Ok(Some(_)) => return "etcd reports the lease expired".into(),
            Ok(None) => return "the keep-alive stream closed".into(),
            Err(e) => return e,
        }
        let next = sent + KEEPALIVE_EVERY;
        tokio::time::sleep_until(next.into()).await;
    }
}

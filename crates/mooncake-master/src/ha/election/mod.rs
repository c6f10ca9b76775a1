//! Leader election through etcd: campaign for `mooncake-store/<cluster_id>/master_view`
//! with a create-revision == 0 transaction under a short lease, keep the lease alive
//! while leading, and wait (watching the key) while another master leads.

use super::fence::Fence;
use super::state::HaState;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, WatchOptions,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The leader key's lease by default (`--ha_lease_ttl_sec`). A killed leader holds the
/// key until etcd expires it, so this is most of the failover time.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// Keep-alive period while leading: six per TTL (500 ms for 3 s), so with the fence's
/// margin of a third of the TTL a leader rides out about three lost or slow
/// keep-alives in a row before it stops serving.
pub fn keepalive_every(ttl: Duration) -> Duration {
    (ttl / 6).max(Duration::from_millis(100))
}
/// How long a standby waits on the watch before reading the key again anyway.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Pause after an etcd error before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// How often a master that defers to a standby holding the replicated state looks
/// again (the standby wins within a campaign's round trip, or its key goes).
const DEFER_RECHECK: Duration = Duration::from_millis(100);
/// Bound on every single etcd request.
const ETCD_TIMEOUT: Duration = Duration::from_secs(2);

/// The etcd key holding the leader's address.
pub fn view_key(cluster_id: &str) -> String {
    format!("mooncake-store/{cluster_id}/master_view")
}

pub(super) type EtcdResult<T> = Result<T, String>;

pub(super) async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> EtcdResult<T> {
    match tokio::time::timeout(ETCD_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("etcd {what}: {e}")),
        Err(_) => Err(format!("etcd {what}: no answer within {ETCD_TIMEOUT:?}")),
    }
}

pub(super) async fn connect(endpoints: &[String]) -> EtcdResult<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_timeout(ETCD_TIMEOUT);
    bounded("connect", Client::connect(endpoints, Some(opts))).await
}

/// The etcd members, used one at a time. A client given every endpoint balances
/// requests over them and keeps sending some to a dead member (each such request
/// fails, and a campaign needs several in a row), so instead each connection goes to
/// one member and any error moves on to the next one.
struct Members {
    endpoints: Vec<String>,
    at: usize,
}

impl Members {
    fn new(endpoints: &[String]) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
            at: 0,
        }
    }

    async fn connect(&self) -> EtcdResult<Client> {
        match self.endpoints.get(self.at) {
            Some(ep) => connect(std::slice::from_ref(ep)).await,
            None => Err("no etcd endpoints".into()),
        }
    }

    /// Moves to the next member; true when every member has been tried since the
    /// first (time to pause before another pass).
    fn advance(&mut self) -> bool {
        self.at = (self.at + 1) % self.endpoints.len().max(1);
        self.at == 0
    }
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
        // Each member in turn until one takes the revoke (one may be down).
        let mut r = Err("no etcd endpoints".to_string());
        for ep in &state.config().etcd_endpoints {
            r = match connect(std::slice::from_ref(ep)).await {
                Ok(mut c) => bounded("lease revoke", c.lease_revoke(lease))
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if r.is_ok() {
                break;
            }
        }
        match r {
            Ok(()) => tracing::info!("HA: stopped; lease revoked, a standby can take over now"),
            Err(e) => tracing::warn!("HA: stopped; {e} (a standby takes over after the TTL)"),
        }
    }
}

async fn campaign_forever(state: &HaState) {
    let mut members = Members::new(&state.config().etcd_endpoints);
    let key = view_key(&state.config().cluster_id);
    let mut last_error = String::new();
    loop {
        let r = match members.connect().await {
            Ok(mut c) => round(&mut c, state, &key, &mut members).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            if e != last_error {
                tracing::warn!("HA: {e}; trying the next etcd member");
                last_error = e;
            }
            let pause = if members.advance() {
                RETRY_AFTER
            } else {
                Duration::from_millis(10)
            };
            tokio::time::sleep(pause).await;
        }
    }
}

/// Waits for the key to be free, campaigns, and leads while the lease lives.
/// Returns Ok after losing a campaign or a term (the caller starts another round).
async fn round(
    c: &mut Client,
    state: &HaState,
    key: &str,
    members: &mut Members,
) -> EtcdResult<()> {
    let mut deferred_to = Vec::new();
    loop {
        wait_until_free(c, state, key).await?;
        // A master without the replicated state lets one that has it win (ready.rs).
        if !super::ready::has_usable_shadow(state) {
            let others = super::ready::others_ready(c, state).await?;
            if !others.is_empty() {
                if others != deferred_to {
                    tracing::info!(
                        "HA: not campaigning: {} holds the replicated state and takes over",
                        others.join(", ")
                    );
                    deferred_to = others;
                }
                tokio::time::sleep(DEFER_RECHECK).await;
                continue;
            }
        }
        deferred_to.clear();
        let sent = Instant::now();
        let ttl = state.config().ha_lease_ttl.as_secs().max(1) as i64;
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
        lead(c, state, lease.id(), sent, granted, members).await;
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
        // Watch from just after the revision read, so a delete between the read and
        // the watch is still seen (else the wait would last until the re-read).
        let from = got.header().map_or(0, |h| h.revision()) + 1;
        let opts = WatchOptions::new().with_start_revision(from);
        let mut watch = bounded("watch", c.watch(key, Some(opts))).await?;
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
async fn lead(
    c: &mut Client,
    state: &HaState,
    lease: i64,
    sent: Instant,
    granted: Duration,
    members: &mut Members,
) {
    let term = state.fence.term() + 1;
    state.lease.store(lease, Ordering::SeqCst);
    state.install(term);
    let began = state.fence.begin(Fence::deadline_for(sent, granted));
    debug_assert_eq!(term, began);
    state.set_leader(&state.advertised);
    tracing::info!(
        "HA: elected leader as {} (lease {lease:x}, TTL {:?}, term {term})",
        state.advertised,
        state.config().ha_lease_ttl
    );
    let why = keep_alive(c, state, lease, term, (sent, granted), members).await;
    state.fence.revoke();
    state.retire();
    tracing::warn!("HA: leadership lost: {why}");
    let _ = bounded("lease revoke", c.lease_revoke(lease)).await;
    let _ = state
        .lease
        .compare_exchange(lease, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// Keeps the lease alive until etcd says it is gone. The fence closes by itself when
/// its deadline passes without an acknowledged keep-alive; that pauses serving but
/// does not end the term: if etcd later acknowledges a keep-alive with a TTL left, the
/// lease (and the key on it) never lapsed, no other master can have led meanwhile, and
/// the fence opens again with the same index. This is what lets the leader ride out
/// an etcd leader election (1-2 s without answers) or the loss of the member it talked
/// to. An etcd error is retried at once on a fresh connection to the next member.
/// The term ends when etcd reports the lease expired,
/// or when nothing was acknowledged for twice the TTL (the lease must be gone).
async fn keep_alive(
    c: &mut Client,
    state: &HaState,
    lease: i64,
    term: u64,
    (mut acked_sent, mut ttl): (Instant, Duration),
    members: &mut Members,
) -> String {
    let period = keepalive_every(state.config().ha_lease_ttl);
    let mut streams: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut last_error = String::new();
    let mut paused = false;
    loop {
        if state.fence.term() != term {
            return "a newer term began".into();
        }
        if acked_sent.elapsed() > ttl * 2 {
            return format!(
                "no keep-alive acknowledged for {:?} (twice the lease TTL; last etcd error: {last_error})",
                acked_sent.elapsed()
            );
        }
        if !paused && !state.fence.holds(term) {
            paused = true;
            tracing::warn!(
                "HA: the lease deadline passed without an acknowledged keep-alive; not serving until etcd acknowledges one"
            );
        }
        let sent = Instant::now();
        match keep_alive_once(c, &mut streams, lease, period * 2).await {
            Ok(granted) if granted > 0 => {
                ttl = Duration::from_secs(granted as u64);
                acked_sent = sent;
                state.fence.extend(term, Fence::deadline_for(sent, ttl));
                if paused || !last_error.is_empty() {
                    tracing::info!("HA: keep-alive acknowledged again; serving");
                    paused = false;
                    last_error.clear();
                }
            }
            Ok(_) => return "etcd reports the lease expired".into(),
            Err(e) => {
                if e != last_error {
                    tracing::warn!("HA: {e}; retrying the keep-alive on the next etcd member");
                    last_error = e;
                }
                streams = None;
                members.advance();
                match members.connect().await {
                    Ok(fresh) => *c = fresh,
                    Err(e) => last_error = e,
                }
                tokio::time::sleep(KEEPALIVE_RETRY.min(period)).await;
                continue;
            }
        }
        tokio::time::sleep_until((sent + period).into()).await;
    }
}

/// Pause before retrying a failed keep-alive.
const KEEPALIVE_RETRY: Duration = Duration::from_millis(100);

/// One keep-alive round trip (opening the stream first if needed), bounded by
/// `within`; the TTL etcd granted (0: the lease is gone).
pub(super) async fn keep_alive_once(
    c: &mut Client,
    streams: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    lease: i64,
    within: Duration,
) -> EtcdResult<i64> {
    let attempt = async {
        if streams.is_none() {
            *streams = Some(
                c.lease_keep_alive(lease)
                    .await
                    .map_err(|e| format!("etcd keep-alive: {e}"))?,
            );
        }
        let (keeper, stream) = streams.as_mut().expect("opened above");
        keeper
            .keep_alive()
            .await
            .map_err(|e| format!("etcd keep-alive: {e}"))?;
        match stream.message().await {
            Ok(Some(r)) => Ok(r.ttl()),
            Ok(None) => Err("etcd keep-alive: the stream closed".to_string()),
            Err(e) => Err(format!("etcd keep-alive: {e}")),
        }
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("etcd keep-alive: no answer within {within:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::fence::margin_for;

    #[test]
    fn keepalives_fit_several_times_inside_the_fence() {
        for secs in [2, 3, 5, 30, 300] {
            let ttl = Duration::from_secs(secs);
            let serving = ttl - margin_for(ttl);
            assert!(
                keepalive_every(ttl) * 3 < serving,
                "TTL {ttl:?}: a keep-alive every {:?} leaves too little room in {serving:?}",
                keepalive_every(ttl)
            );
        }
        assert_eq!(keepalive_every(LEASE_TTL), Duration::from_millis(500));
    }
}

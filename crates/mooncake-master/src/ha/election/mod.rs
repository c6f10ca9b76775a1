//! Leader election: campaign for `mooncake-store/<cluster_id>/master_view` under a
//! short lease, keep the lease alive while leading, and wait (watching the key) while
//! another master leads.
//!
//! The rules (when to campaign, deferring to a master that holds the replicated state,
//! opening and extending the fence, pausing when keep-alives go unacknowledged, ending
//! the term, revoking on the way out) live here and are written against [`Election`],
//! the handful of operations they need from the store holding the key. [`etcd`] is the
//! real one; [`local`] is an election without rivals; the tests drive the rules
//! through a scripted one, with no etcd.

pub mod etcd;
pub mod local;
#[cfg(test)]
mod scripted;

use super::fence::Fence;
use super::ready;
use super::state::HaState;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use etcd::EtcdElection;
pub use local::LocalElection;

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
/// Pause after a full pass of failures before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// Pause after a failure while other members remain to be tried.
const RETRY_NEXT: Duration = Duration::from_millis(10);
/// How often a master that defers to a standby holding the replicated state looks
/// again (the standby wins within a campaign's round trip, or its key goes).
const DEFER_RECHECK: Duration = Duration::from_millis(100);
/// Pause before retrying a failed keep-alive.
const KEEPALIVE_RETRY: Duration = Duration::from_millis(100);

/// The etcd key holding the leader's address.
pub fn view_key(cluster_id: &str) -> String {
    format!("mooncake-store/{cluster_id}/master_view")
}

/// An error from the election's store, as it will be logged.
pub type ElectionResult<T> = Result<T, String>;

/// The leader key as read: who holds it, and the store's revision at the read (a wait
/// for the key to go starts right after it, so a delete in between is not missed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub addr: String,
    pub revision: i64,
}

/// How a wait for the leader key to go ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watched {
    /// The key was deleted (its lease expired or was revoked).
    Deleted,
    /// The watch broke without a delete.
    Ended,
    /// Nothing happened within the bound.
    Quiet,
}

/// A campaign's outcome: the lease granted for it, the TTL granted, and whether the
/// key was created on it (false: someone else holds the key; the lease is unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub lease: i64,
    pub granted: Duration,
    pub won: bool,
}

/// What the election needs from the store holding the leader key. One value serves
/// one task (the election, or the readiness key): each keeps its own connection.
///
/// Errors are for the caller to log and retry; after one, the caller calls
/// [`Election::rotate`] before trying again.
pub trait Election: Send {
    /// Who holds the leader key right now (None: nobody).
    fn holder(&mut self) -> impl Future<Output = ElectionResult<Option<Holder>>> + Send;

    /// Waits at most `within` for the leader key to be deleted after `revision`.
    fn wait_for_delete(
        &mut self,
        revision: i64,
        within: Duration,
    ) -> impl Future<Output = ElectionResult<Watched>> + Send;

    /// The addresses in every master's readiness key (this master's included).
    fn ready(&mut self) -> impl Future<Output = ElectionResult<Vec<String>>> + Send;

    /// Grants a lease of `ttl` and creates the leader key on it, holding this master's
    /// address, if the key does not exist.
    fn campaign(&mut self, ttl: Duration) -> impl Future<Output = ElectionResult<Campaign>> + Send;

    /// One keep-alive of `lease`, answered within `within`: the TTL granted in whole
    /// seconds (0: the lease is gone).
    fn keep_alive(
        &mut self,
        lease: i64,
        within: Duration,
    ) -> impl Future<Output = ElectionResult<i64>> + Send;

    /// Revokes `lease` (one attempt; the key on it goes with it).
    fn revoke(&mut self, lease: i64) -> impl Future<Output = ElectionResult<()>> + Send;

    /// Revokes `lease` on the way out, trying harder than [`Election::revoke`] (a
    /// standby then takes over at once instead of after the TTL).
    fn revoke_on_exit(&mut self, lease: i64) -> impl Future<Output = ElectionResult<()>> + Send {
        self.revoke(lease)
    }

    /// Writes this master's readiness key on a fresh lease of `ttl`; the lease.
    fn put_ready(&mut self, ttl: Duration) -> impl Future<Output = ElectionResult<i64>> + Send;

    /// After an error: moves on (etcd: to the next member). True when every way has
    /// failed since the last pass (time to pause before another).
    fn rotate(&mut self) -> bool;
}

/// Runs the election until `shutdown` resolves; then stops serving and revokes the
/// lease, so a standby takes over at once instead of after the TTL.
pub async fn run<E: Election>(
    state: Arc<HaState>,
    mut election: E,
    shutdown: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = campaign_forever(&mut election, &state) => {}
        _ = shutdown => {}
    }
    state.fence.revoke();
    state.retire();
    let lease = state.lease.swap(0, Ordering::SeqCst);
    if lease != 0 {
        match election.revoke_on_exit(lease).await {
            Ok(()) => tracing::info!("HA: stopped; lease revoked, a standby can take over now"),
            Err(e) => tracing::warn!("HA: stopped; {e} (a standby takes over after the TTL)"),
        }
    }
}

async fn campaign_forever<E: Election>(e: &mut E, state: &HaState) {
    let mut last_error = String::new();
    loop {
        if let Err(err) = round(e, state).await {
            if err != last_error {
                tracing::warn!("HA: {err}; trying the next etcd member");
                last_error = err;
            }
            let pause = if e.rotate() { RETRY_AFTER } else { RETRY_NEXT };
            tokio::time::sleep(pause).await;
        }
    }
}

/// Waits for the key to be free, campaigns, and leads while the lease lives.
/// Returns Ok after losing a campaign or a term (the caller starts another round).
async fn round<E: Election>(e: &mut E, state: &HaState) -> ElectionResult<()> {
    let mut deferred_to = Vec::new();
    loop {
        wait_until_free(e, state).await?;
        // A master without the replicated state lets one that has it win (ready.rs).
        if !ready::has_usable_shadow(state) {
            let others = ready::others_ready(e, state).await?;
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
        let campaign = e.campaign(state.config().ha_lease_ttl).await?;
        if !campaign.won {
            let _ = e.revoke(campaign.lease).await;
            continue;
        }
        lead(e, state, campaign.lease, sent, campaign.granted).await;
        return Ok(());
    }
}

/// Reads the key; while someone holds it, records them and waits for a change.
async fn wait_until_free<E: Election>(e: &mut E, state: &HaState) -> ElectionResult<()> {
    loop {
        let Some(holder) = e.holder().await? else {
            return Ok(());
        };
        state.set_leader(&holder.addr);
        // Any delete ends the wait; a quiet spell or a broken watch re-reads the key.
        if e.wait_for_delete(holder.revision, RECHECK_EVERY * 5)
            .await?
            == Watched::Ended
        {
            tokio::time::sleep(RECHECK_EVERY.min(RETRY_AFTER)).await;
        }
    }
}

/// Serves one term: opens the fence, keeps the lease alive, closes the fence as soon
/// as a keep-alive is refused or the deadline passes.
async fn lead<E: Election>(
    e: &mut E,
    state: &HaState,
    lease: i64,
    sent: Instant,
    granted: Duration,
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
    let why = keep_alive(e, state, lease, term, (sent, granted)).await;
    state.fence.revoke();
    state.retire();
    tracing::warn!("HA: leadership lost: {why}");
    let _ = e.revoke(lease).await;
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
/// to. An etcd error is retried at once on the next member.
/// The term ends when etcd reports the lease expired,
/// or when nothing was acknowledged for twice the TTL (the lease must be gone).
async fn keep_alive<E: Election>(
    e: &mut E,
    state: &HaState,
    lease: i64,
    term: u64,
    (mut acked_sent, mut ttl): (Instant, Duration),
) -> String {
    let period = keepalive_every(state.config().ha_lease_ttl);
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
        match e.keep_alive(lease, period * 2).await {
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
            Err(err) => {
                if err != last_error {
                    tracing::warn!("HA: {err}; retrying the keep-alive on the next etcd member");
                    last_error = err;
                }
                e.rotate();
                tokio::time::sleep(KEEPALIVE_RETRY.min(period)).await;
                continue;
            }
        }
        tokio::time::sleep_until((sent + period).into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::scripted::{Answer, Event, Scripted};
    use super::*;
    use crate::config::MasterConfig;
    use crate::ha::fence::margin_for;
    use crate::ha::replication::shadow::Shadow;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

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

    const ME: &str = "10.0.0.1:50051";
    const OTHER: &str = "10.0.0.2:50051";

    /// A master on a 1 s lease (shorter than flags allow, so that a pause shows within
    /// a second: the fence closes 667 ms after the last acknowledged send, the term
    /// ends 2 s after it).
    fn state() -> Arc<HaState> {
        let cfg = MasterConfig {
            enable_ha: true,
            enable_metric_reporting: false,
            ha_lease_ttl: Duration::from_secs(1),
            ..Default::default()
        };
        HaState::new(cfg, ME.into())
    }

    struct Running {
        stop: oneshot::Sender<()>,
        task: JoinHandle<()>,
    }

    fn start<E: Election + 'static>(state: &Arc<HaState>, e: E) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(state.clone(), e, async {
            let _ = stopped.await;
        }));
        Running { stop, task }
    }

    impl Running {
        async fn shut_down(self) {
            let _ = self.stop.send(());
            self.task.await.unwrap();
        }
    }

    /// Polls `cond` until it holds (a generous bound: a hang fails, slowness does not).
    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < end, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn serving_term(state: &HaState) -> Option<u64> {
        state.serving().map(|t| t.number)
    }

    #[tokio::test]
    async fn a_local_election_leads_at_once_and_lets_go_on_shutdown() {
        let state = state();
        let r = start(&state, LocalElection::default());
        until("leading", || serving_term(&state) == Some(1)).await;
        assert_eq!(state.role().role, "leader");
        r.shut_down().await;
        assert!(serving_term(&state).is_none() && !state.fence.is_leader_now());
        assert_eq!(state.lease.load(Ordering::SeqCst), 0);
    }

    /// docs/ha.md "Pause, not abdicate": unacknowledged keep-alives stop serving (the
    /// fence's deadline passes) but keep the term; one acknowledged with TTL left
    /// serves again with the same term and master, without campaigning.
    #[tokio::test]
    async fn a_leader_pauses_without_keepalives_and_serves_again_on_an_ack() {
        let state = state();
        let world = Scripted::new(ME).with_fence(state.fence.clone());
        let r = start(&state, world.clone());
        until("elected", || serving_term(&state) == Some(1)).await;
        let master = state.serving().unwrap().master.clone();
        let lease = state.lease.load(Ordering::SeqCst);
        // Refused until the fence is seen closed, then acknowledged.
        world.answer(lease, Answer::RefuseWhileServing);
        until("acknowledged while paused", || {
            world.events().contains(&Event::AckedWhilePaused(lease))
        })
        .await;
        assert!(world.events().contains(&Event::Unanswered {
            lease,
            serving: true
        }));
        until("serving again", || serving_term(&state) == Some(1)).await;
        assert!(
            Arc::ptr_eq(&state.serving().unwrap().master, &master),
            "the same term's master serves again, index and all"
        );
        assert_eq!(state.lease.load(Ordering::SeqCst), lease);
        assert_eq!(world.campaigns(), 1, "a pause is not a failover");
        assert!(
            !world.events().iter().any(|e| matches!(e, Event::Revoke(_))),
            "the lease was kept"
        );
        r.shut_down().await;
    }

    #[tokio::test]
    async fn unanswered_keepalives_stop_serving_and_end_the_term_after_twice_the_ttl() {
        let state = state();
        let world = Scripted::new(ME).with_fence(state.fence.clone());
        let r = start(&state, world.clone());
        until("elected", || serving_term(&state) == Some(1)).await;
        let lease = state.lease.load(Ordering::SeqCst);
        world.answer(lease, Answer::Silent);
        until("term over", || {
            world.events().contains(&Event::Revoke(lease))
        })
        .await;
        // Keep-alives of this lease went out only during term 1: some went while it
        // no longer served, i.e. it stopped serving before the term ended.
        assert!(
            world.events().contains(&Event::Unanswered {
                lease,
                serving: false
            }),
            "{:?}",
            world.events()
        );
        // The key went with the lease: a new term on a new lease, a fresh master.
        until("re-elected", || serving_term(&state) == Some(2)).await;
        assert_eq!(world.campaigns(), 2);
        assert_ne!(state.lease.load(Ordering::SeqCst), lease);
        r.shut_down().await;
    }

    #[tokio::test]
    async fn an_expired_lease_ends_the_term_and_the_master_campaigns_again() {
        let state = state();
        let world = Scripted::new(ME);
        let r = start(&state, world.clone());
        until("elected", || serving_term(&state) == Some(1)).await;
        let lease = state.lease.load(Ordering::SeqCst);
        world.answer(lease, Answer::Ttl(0));
        until("re-elected", || serving_term(&state) == Some(2)).await;
        assert!(world.events().contains(&Event::Revoke(lease)));
        assert_ne!(state.lease.load(Ordering::SeqCst), lease, "a new lease");
        r.shut_down().await;
    }

    /// docs/ha.md "Who may win": a master without the replicated state waits while
    /// another master leads, and then while another master's readiness key exists.
    #[tokio::test]
    async fn a_master_without_state_defers_to_one_that_has_it() {
        let state = state();
        let world = Scripted::new(ME);
        world.set_holder(Some(OTHER));
        // Its own key (left by an earlier life) is no reason to wait.
        world.set_ready(&[ME, OTHER]);
        let r = start(&state, world.clone());
        until("follows the leader", || state.role().leader == OTHER).await;
        world.set_holder(None);
        until("looked at the readiness keys", || {
            world
                .events()
                .iter()
                .filter(|e| **e == Event::ReadyListed)
                .count()
                >= 3
        })
        .await;
        assert_eq!(world.campaigns(), 0, "{:?}", world.events());
        assert!(serving_term(&state).is_none());
        world.set_ready(&[ME]);
        until("elected", || serving_term(&state) == Some(1)).await;
        assert_eq!(world.campaigns(), 1);
        r.shut_down().await;
    }

    #[tokio::test]
    async fn a_master_holding_the_state_campaigns_despite_other_ready_keys() {
        let state = state();
        state.shadow.install(Shadow::default());
        let world = Scripted::new(ME);
        world.set_ready(&[OTHER]);
        let r = start(&state, world.clone());
        until("elected", || serving_term(&state) == Some(1)).await;
        assert!(!world.events().contains(&Event::ReadyListed));
        r.shut_down().await;
    }

    #[tokio::test]
    async fn a_lost_campaign_gives_its_lease_back() {
        let state = state();
        let world = Scripted::new(ME);
        world.lose_next_campaign(OTHER);
        let r = start(&state, world.clone());
        until("lost once", || {
            world
                .events()
                .iter()
                .any(|e| matches!(e, Event::Campaign { won: false, .. }))
        })
        .await;
        let lost = world.events().into_iter().find_map(|e| match e {
            Event::Campaign { won: false, lease } => Some(lease),
            _ => None,
        });
        until("revoked", || {
            world.events().contains(&Event::Revoke(lost.unwrap()))
        })
        .await;
        assert!(serving_term(&state).is_none());
        world.set_holder(None);
        until("elected", || serving_term(&state) == Some(1)).await;
        r.shut_down().await;
    }

    #[tokio::test]
    async fn errors_move_to_the_next_member_and_the_election_goes_on() {
        let state = state();
        let world = Scripted::new(ME);
        world.fail_next(3);
        let r = start(&state, world.clone());
        until("elected", || serving_term(&state) == Some(1)).await;
        assert_eq!(
            world
                .events()
                .iter()
                .filter(|e| **e == Event::Rotate)
                .count(),
            3
        );
        r.shut_down().await;
    }

    #[tokio::test]
    async fn shutdown_stops_serving_and_revokes_the_lease() {
        let state = state();
        let world = Scripted::new(ME);
        let r = start(&state, world.clone());
        until("elected", || serving_term(&state) == Some(1)).await;
        let lease = state.lease.load(Ordering::SeqCst);
        r.shut_down().await;
        assert!(!state.fence.is_leader_now() && state.serving().is_none());
        assert_eq!(state.lease.load(Ordering::SeqCst), 0);
        assert!(world.events().contains(&Event::RevokeOnExit(lease)));
        assert_eq!(world.holder_now(), None, "the key went with the lease");
    }

    #[tokio::test]
    async fn a_standby_stopping_has_no_lease_to_revoke() {
        let state = state();
        let world = Scripted::new(ME);
        world.set_holder(Some(OTHER));
        let r = start(&state, world.clone());
        until("follows the leader", || state.role().leader == OTHER).await;
        r.shut_down().await;
        assert!(!world
            .events()
            .iter()
            .any(|e| matches!(e, Event::RevokeOnExit(_))));
    }

    /// ready.rs: the readiness key exists exactly while the shadow is usable, and goes
    /// with its lease on the way out.
    #[tokio::test]
    async fn the_readiness_key_follows_the_shadow() {
        let state = state();
        let world = Scripted::new(ME);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ready::run(state.clone(), world.clone(), async {
            let _ = stopped.await;
        }));
        state.shadow.install(Shadow::default());
        until("advertised", || world.ready_now() == vec![ME.to_string()]).await;
        state.shadow.invalidate("test");
        until("withdrawn", || world.ready_now().is_empty()).await;
        state.shadow.install(Shadow::default());
        until("advertised again", || {
            world.ready_now() == vec![ME.to_string()]
        })
        .await;
        let _ = stop.send(());
        task.await.unwrap();
        assert!(world.ready_now().is_empty(), "revoked on the way out");
        assert_eq!(
            world
                .events()
                .iter()
                .filter(|e| matches!(e, Event::PutReady(_)))
                .count(),
            2
        );
    }
}

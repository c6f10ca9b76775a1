//! The HA master's gate: every call is checked against the fence before it runs and
//! again before its answer leaves, so a master whose lease lapsed mid-call (paused,
//! partitioned) never acknowledges anything. Refusals carry
//! `UNAVAILABLE_IN_CURRENT_MODE` (-1010) and name the leader when known.
//!
//! Synchronous replication: a call whose method mutates (`api::Method::mutates`) is
//! answered only after an in-sync standby acknowledged the replication log's head as
//! it was when the call finished: one wait per call, however many items a batch
//! changed (docs/ha.md). With no standby in sync the answer leaves at once.
//!
//! `Follow` (standbys streaming the leader's log) is served on the same port behind
//! the same fence ([`follow_service`]), and so are the owners' `SegmentOwner`
//! ([`owner_service`]) and the SSD tiers' `SegmentTier.Work` ([`tier_service`]).

use super::replication::leader::FOLLOW_PREFIX;
use super::replication::log::SYNC_BOUND;
use super::state::{HaState, Term};
use crate::api::{Gate, Pass, Refused};
use crate::drain::service::{OwnerService, OWNER_PREFIX};
use crate::service::{self, refusal, Extra};
use crate::tier::service::{TierService, TIER_PREFIX};
use mooncake_proto::segment_owner_server::SegmentOwnerServer;
use mooncake_proto::segment_tier_server::SegmentTierServer;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tonic::body::Body;
use tonic::codegen::Service;

fn refused(state: &HaState) -> Refused {
    let leader = state.role().leader;
    Refused(if leader.is_empty() {
        "this master is not the leader (no leader known yet)".to_string()
    } else {
        format!("this master is not the leader; the leader is {leader}")
    })
}

impl Gate for Arc<HaState> {
    fn enter(&self) -> Result<Pass, Refused> {
        let term = self.serving().ok_or_else(|| refused(self))?;
        Ok(Pass {
            master: term.master.clone(),
            term: term.number,
        })
    }

    fn leave(
        &self,
        pass: &Pass,
        mutated: bool,
    ) -> impl Future<Output = Result<(), Refused>> + Send {
        let state = self.clone();
        let (master, term) = (pass.master.clone(), pass.term);
        async move {
            if mutated {
                let log = master.index.log();
                if log.is_active() {
                    log.wait_synced(log.head(), SYNC_BOUND).await;
                }
            }
            if state.fence.holds(term) {
                Ok(())
            } else {
                Err(refused(&state))
            }
        }
    }
}

/// A service of the serving term on the rpc port, fenced like every call: refused
/// while no term serves, and its answer withheld when the term ended meanwhile.
/// `make` builds the service from the term that takes the call.
fn fenced<S>(state: Arc<HaState>, prefix: &'static str, make: fn(&Term) -> S) -> Extra
where
    S: Service<hyper::Request<Body>, Response = hyper::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send,
{
    Extra {
        prefix,
        call: Arc::new(move |req| {
            let state = state.clone();
            Box::pin(async move {
                let Some(term) = state.serving() else {
                    return Ok(refusal(refused(&state)).into_http());
                };
                let resp = make(&term).call(req).await?;
                if !state.fence.holds(term.number) {
                    return Ok(refusal(refused(&state)).into_http());
                }
                Ok(resp)
            })
        }),
    }
}

/// The standbys' `Follow` service of the serving term.
pub fn follow_service(state: Arc<HaState>) -> Extra {
    fenced(state, FOLLOW_PREFIX, |t| t.replication.clone())
}

/// The SSD tiers' `SegmentTier.Work`, served by the serving term's master. What a
/// term's master knows of the tiers is not replicated: a term starts knowing no
/// tier, and each owner's next call is answered "report" and brings every record its
/// tier holds (`Master::tier_work`), so objects that live only on SSD are readable
/// again once their owner has called the new leader (its loop calls at least every
/// few seconds). Tasks an earlier term handed out and whose results reach this one
/// are unknown to it and ignored; their records are in the owner's report.
pub fn tier_service(state: Arc<HaState>) -> Extra {
    fenced(state, TIER_PREFIX, |t| {
        SegmentTierServer::new(TierService::new(t.master.clone()))
    })
}

/// `SegmentOwner` (an owner leaving to restart, drain work, copy and move tasks),
/// served with the serving term's master and drain jobs.
pub fn owner_service(state: Arc<HaState>) -> Extra {
    fenced(state, OWNER_PREFIX, |t| {
        SegmentOwnerServer::new(OwnerService::new(t.drains.clone()))
    })
}

/// Serves the control plane, `Follow`, the owners' calls and the tiers' work on
/// `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<HaState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tuning = state.config().tuning.clone();
    let extras = vec![
        follow_service(state.clone()),
        owner_service(state.clone()),
        tier_service(state.clone()),
    ];
    service::serve(state, extras, listener, tuning, shutdown).await
}

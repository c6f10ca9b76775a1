//! The fenced gRPC services: every RPC is checked against the fence before it runs and
//! again before its answer leaves, so a master whose lease lapsed mid-call (paused,
//! partitioned) never acknowledges anything. Refusals carry `UNAVAILABLE_IN_CURRENT_MODE`
//! (-1010) and name the leader when known.
//!
//! Synchronous replication: a client-visible mutation (mount, unmount, put/upsert
//! start/end/revoke, removals, and their batch forms) is answered only after an
//! in-sync standby acknowledged the replication log's head as it was when the call
//! finished: one wait per RPC, however many items a batch changed (docs/ha.md). With
//! no standby in sync the answer leaves at once.
//!
//! `Follow` (standbys streaming the leader's log) is a second service behind the same
//! fence. Framed calls (`mooncake_proto::frame`) on the same port go through
//! `FencedService` too.

use super::replication::log::SYNC_BOUND;
use super::state::HaState;
use crate::framed;
use crate::master::Master;
use mooncake_common::ErrorCode;
use mooncake_proto::master_replication_server::MasterReplicationServer;
use mooncake_proto::master_server::MasterServer;
use mooncake_proto::status::to_status;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::Service;
use tonic::server::NamedService;

/// The client-facing service.
#[derive(Clone)]
pub struct FencedService {
    state: Arc<HaState>,
}

impl FencedService {
    pub fn new(state: Arc<HaState>) -> Self {
        Self { state }
    }
}

/// The standbys' `Follow` service.
#[derive(Clone)]
pub struct FencedReplication {
    state: Arc<HaState>,
}

fn refusal_status(state: &HaState) -> tonic::Status {
    let leader = state.role().leader;
    let msg = if leader.is_empty() {
        "this master is not the leader (no leader known yet)".to_string()
    } else {
        format!("this master is not the leader; the leader is {leader}")
    };
    to_status(ErrorCode::UnavailableInCurrentMode, msg)
}

fn refusal(state: &HaState) -> Response<Body> {
    refusal_status(state).into_http()
}

/// Framed calls answered without the gRPC detour pass the same fence: checked before
/// the call and again before its answer leaves.
impl framed::direct::Direct for Arc<HaState> {
    fn with_master<R>(&self, f: impl FnOnce(&Master) -> R) -> Result<R, tonic::Status> {
        let Some(term) = self.serving() else {
            return Err(refusal_status(self));
        };
        let r = f(&term.master);
        if !self.fence.holds(term.number) {
            return Err(refusal_status(self));
        }
        Ok(r)
    }
}

/// Whether a `Master` method changes state a client relies on (its answer waits for
/// an in-sync standby).
pub fn is_mutation(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    matches!(
        method,
        "MountSegment"
            | "RemountSegment"
            | "UnmountSegment"
            | "PutStart"
            | "BatchPutStart"
            | "PutEnd"
            | "BatchPutEnd"
            | "PutRevoke"
            | "BatchPutRevoke"
            | "UpsertStart"
            | "BatchUpsertStart"
            | "UpsertEnd"
            | "BatchUpsertEnd"
            | "UpsertRevoke"
            | "BatchUpsertRevoke"
            | "Remove"
            | "BatchRemove"
            | "RemoveByRegex"
            | "RemoveAll"
    )
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl Service<Request<Body>> for FencedService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> BoxFut {
        let state = self.state.clone();
        Box::pin(async move {
            let Some(term) = state.serving() else {
                return Ok(refusal(&state));
            };
            let mutation = is_mutation(req.uri().path());
            let mut svc = term.server.clone();
            let resp = svc.call(req).await?;
            if mutation {
                let log = term.master.index.log();
                if log.is_active() {
                    log.wait_synced(log.head(), SYNC_BOUND).await;
                }
            }
            if !state.fence.holds(term.number) {
                return Ok(refusal(&state));
            }
            Ok(resp)
        })
    }
}

impl NamedService for FencedService {
    const NAME: &'static str = <MasterServer<crate::service::MasterService> as NamedService>::NAME;
}

impl Service<Request<Body>> for FencedReplication {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> BoxFut {
        let state = self.state.clone();
        Box::pin(async move {
            let Some(term) = state.serving() else {
                return Ok(refusal(&state));
            };
            let mut svc = term.replication.clone();
            let resp = svc.call(req).await?;
            if !state.fence.holds(term.number) {
                return Ok(refusal(&state));
            }
            Ok(resp)
        })
    }
}

impl NamedService for FencedReplication {
    const NAME: &'static str = <MasterReplicationServer<
        super::replication::leader::ReplicationService,
    > as NamedService>::NAME;
}

/// Serves the fenced services on `listener` until `shutdown` resolves: gRPC (tonic's
/// server, which also carries the standbys' `Follow` streams) and, on connections that
/// start with the framed protocol's magic, framed calls through the same
/// `FencedService` (same fence, same replication wait). The accept loop peeks each new
/// connection and hands gRPC ones to tonic.
pub async fn serve(
    state: Arc<HaState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Read (and complain about a bad value) at start, not at the first connection.
    let _ = crate::framed::poll_window();
    let (stop, stopping) = watch::channel(false);
    let (to_grpc, grpc_conns) = mpsc::channel::<std::io::Result<TcpStream>>(64);
    let mut grpc_stop = stopping.clone();
    let grpc = tonic::transport::Server::builder()
        .add_service(FencedService::new(state.clone()))
        .add_service(FencedReplication {
            state: state.clone(),
        })
        .serve_with_incoming_shutdown(ReceiverStream::new(grpc_conns), async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        });
    let fenced = FencedService::new(state.clone());
    let accept = async move {
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let to_grpc = to_grpc.clone();
                        let svc = fenced.clone();
                        let direct = state.clone();
                        let mut stopping = stopping.clone();
                        conns.spawn(async move {
                            let framed = tokio::select! {
                                f = framed::is_framed(&stream) => f,
                                _ = stopping.wait_for(|s| *s) => return,
                            };
                            if framed {
                                framed::serve_connection(stream, svc, direct, stopping).await;
                            } else {
                                let _ = to_grpc.send(Ok(stream)).await;
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("rpc accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                },
            }
        }
        let _ = stop.send(true);
        drop(to_grpc);
        while conns.join_next().await.is_some() {}
    };
    let (served, ()) = tokio::join!(grpc, accept);
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_recognised_by_method() {
        assert!(is_mutation("/mooncake.v1.Master/BatchPutEnd"));
        assert!(is_mutation("/mooncake.v1.Master/RemountSegment"));
        assert!(!is_mutation("/mooncake.v1.Master/BatchGetReplicaList"));
        assert!(!is_mutation("/mooncake.v1.Master/Heartbeat"));
        assert!(!is_mutation("/mooncake.v1.Master/GetStats"));
    }
}

//! The fenced gRPC service: every RPC is checked against the fence before it runs and
//! again before its answer leaves, so a master whose lease lapsed mid-call (paused,
//! partitioned) never acknowledges anything. Refusals carry `UNAVAILABLE_IN_CURRENT_MODE`
//! (-1010) and name the leader when known.

use super::state::HaState;
use mooncake_common::ErrorCode;
use mooncake_proto::master_server::MasterServer;
use mooncake_proto::status::to_status;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;

#[derive(Clone)]
pub struct FencedService {
    state: Arc<HaState>,
}

impl FencedService {
    pub fn new(state: Arc<HaState>) -> Self {
        Self { state }
    }
}

fn refusal(state: &HaState) -> Response<Body> {
    let leader = state.role().leader;
    let msg = if leader.is_empty() {
        "this master is not the leader (no leader known yet)".to_string()
    } else {
        format!("this master is not the leader; the leader is {leader}")
    };
    to_status(ErrorCode::UnavailableInCurrentMode, msg).into_http()
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
            let mut svc = term.server.clone();
            let resp = svc.call(req).await?;
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

/// Serves the fenced service on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<HaState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(FencedService::new(state))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

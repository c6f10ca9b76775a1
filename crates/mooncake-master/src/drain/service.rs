//! `SegmentOwner` on the rpc port: the owner of a segment leaving to be restarted
//! (`LeaveForRestart`), and the owner of a segment being drained reporting the copies
//! it made and getting the next ones (`DrainWork`, see the module above).

use super::Drains;
use crate::service::Extra;
use mooncake_proto::segment_owner_server::{SegmentOwner, SegmentOwnerServer};
use mooncake_proto::{DrainWorkRequest, DrainWorkResponse, LeaveRequest, LeaveResponse};
use std::sync::Arc;
use tonic::codegen::Service;
use tonic::{Request, Response, Status};

/// The path prefix of the service's calls.
pub const OWNER_PREFIX: &str = "/mooncake.v1.SegmentOwner/";

#[derive(Clone)]
pub struct OwnerService {
    drains: Arc<Drains>,
}

#[tonic::async_trait]
impl SegmentOwner for OwnerService {
    async fn leave_for_restart(
        &self,
        req: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        let r = req.into_inner();
        let (code, held_for_ms) = match self
            .drains
            .master()
            .leave_for_restart(&r.client_id, &r.segment_name)
        {
            Ok(ms) => (0, ms),
            Err(code) => (code.code(), 0),
        };
        Ok(Response::new(LeaveResponse { code, held_for_ms }))
    }

    async fn drain_work(
        &self,
        req: Request<DrainWorkRequest>,
    ) -> Result<Response<DrainWorkResponse>, Status> {
        let r = req.into_inner();
        match self.drains.work(&r.client_id, &r.segment_name, &r.done) {
            Ok((copies, draining)) => Ok(Response::new(DrainWorkResponse { copies, draining })),
            Err(code) => Err(Status::failed_precondition(format!(
                "drain work for {}: {code:?} ({})",
                r.segment_name,
                code.code()
            ))),
        }
    }
}

/// The service as another service on the rpc port.
pub fn extra(drains: Arc<Drains>) -> Extra {
    let svc = SegmentOwnerServer::new(OwnerService { drains });
    Extra {
        prefix: OWNER_PREFIX,
        call: Arc::new(move |req| {
            let mut svc = svc.clone();
            Box::pin(async move { svc.call(req).await })
        }),
    }
}

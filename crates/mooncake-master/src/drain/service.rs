//! `SegmentDrain.Work` on the rpc port: the owner of a segment being drained reports
//! the copies it made and gets the next ones (see the module above).

use super::Drains;
use crate::service::Extra;
use mooncake_proto::segment_drain_server::{SegmentDrain, SegmentDrainServer};
use mooncake_proto::{DrainWorkRequest, DrainWorkResponse};
use std::sync::Arc;
use tonic::codegen::Service;
use tonic::{Request, Response, Status};

/// The path prefix of the drain service's calls.
pub const DRAIN_PREFIX: &str = "/mooncake.v1.SegmentDrain/";

#[derive(Clone)]
pub struct DrainService {
    drains: Arc<Drains>,
}

#[tonic::async_trait]
impl SegmentDrain for DrainService {
    async fn work(
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

/// The drain service as another service on the rpc port.
pub fn extra(drains: Arc<Drains>) -> Extra {
    let svc = SegmentDrainServer::new(DrainService { drains });
    Extra {
        prefix: DRAIN_PREFIX,
        call: Arc::new(move |req| {
            let mut svc = svc.clone();
            Box::pin(async move { svc.call(req).await })
        }),
    }
}

//! `SegmentTier.Work` on the rpc port (beside `SegmentOwner`).

use crate::master::Master;
use crate::service::Extra;
use mooncake_proto::segment_tier_server::{SegmentTier, SegmentTierServer};
use mooncake_proto::{TierWorkRequest, TierWorkResponse};
use std::sync::Arc;
use tonic::codegen::Service;
use tonic::{Request, Response, Status};

/// The path prefix of the tier's calls.
pub const TIER_PREFIX: &str = "/mooncake.v1.SegmentTier/";

#[derive(Clone)]
pub struct TierService {
    master: Arc<Master>,
}

#[tonic::async_trait]
impl SegmentTier for TierService {
    async fn work(
        &self,
        req: Request<TierWorkRequest>,
    ) -> Result<Response<TierWorkResponse>, Status> {
        self.master
            .tier_work(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::failed_precondition)
    }
}

impl TierService {
    pub fn new(master: Arc<Master>) -> Self {
        Self { master }
    }
}

/// The tier's service as the rpc port's extra service.
pub fn extra(master: Arc<Master>) -> Extra {
    let svc = SegmentTierServer::new(TierService { master });
    Extra {
        prefix: TIER_PREFIX,
        call: Arc::new(move |req| {
            let mut svc = svc.clone();
            Box::pin(async move { svc.call(req).await })
        }),
    }
}

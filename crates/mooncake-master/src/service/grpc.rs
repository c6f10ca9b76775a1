//! The gRPC face of the control plane: tonic's generated `Master` service, each
//! method decoded by tonic and handed to its handler through the gate.

use super::handlers::{self as h, EndKind};
use super::run;
use crate::api::{Gate, Method};
use mooncake_proto::master_server::{self, MasterServer};
use mooncake_proto::*;
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// The generated service over a gate, with the message limits of the framed protocol.
pub fn server<G: Gate>(gate: G) -> MasterServer<GrpcService<G>> {
    MasterServer::new(GrpcService { gate })
        .max_decoding_message_size(frame::MAX_MESSAGE)
        .max_encoding_message_size(frame::MAX_MESSAGE)
}

/// Serves the `Master` gRPC service through a gate.
#[derive(Clone)]
pub struct GrpcService<G> {
    gate: G,
}

macro_rules! unary {
    ($self:ident, $method:ident, $r:ident, $f:expr) => {{
        let r = $r.into_inner();
        run(&$self.gate, Method::$method, |m| $f(m, r))
            .await
            .map(Response::new)
    }};
}

#[tonic::async_trait]
impl<G: Gate> master_server::Master for GrpcService<G> {
    async fn mount_segment(&self, r: Request<MountSegmentRequest>) -> Reply<MountSegmentResponse> {
        unary!(self, MountSegment, r, |m, r| h::mount_segment(m, r, false))
    }

    async fn remount_segment(
        &self,
        r: Request<MountSegmentRequest>,
    ) -> Reply<MountSegmentResponse> {
        unary!(self, RemountSegment, r, |m, r| h::mount_segment(m, r, true))
    }

    async fn unmount_segment(
        &self,
        r: Request<UnmountSegmentRequest>,
    ) -> Reply<UnmountSegmentResponse> {
        unary!(self, UnmountSegment, r, h::unmount_segment)
    }

    async fn heartbeat(&self, r: Request<HeartbeatRequest>) -> Reply<HeartbeatResponse> {
        unary!(self, Heartbeat, r, h::heartbeat)
    }

    async fn list_segments(&self, r: Request<ListSegmentsRequest>) -> Reply<ListSegmentsResponse> {
        unary!(self, ListSegments, r, h::list_segments)
    }

    async fn put_start(&self, r: Request<PutStartRequest>) -> Reply<PutStartResponse> {
        unary!(self, PutStart, r, |m, r| h::write_start(m, r, false))
    }

    async fn batch_put_start(
        &self,
        r: Request<BatchPutStartRequest>,
    ) -> Reply<BatchPutStartResponse> {
        unary!(self, BatchPutStart, r, |m, r| h::batch_write_start(
            m, r, false
        ))
    }

    async fn put_end(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, PutEnd, r, |m, r| h::write_finish(
            m,
            r,
            EndKind::PutEnd
        ))
    }

    async fn batch_put_end(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchPutEnd, r, |m, r| h::batch_write_finish(
            m,
            r,
            EndKind::PutEnd
        ))
    }

    async fn put_revoke(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, PutRevoke, r, |m, r| h::write_finish(
            m,
            r,
            EndKind::PutRevoke
        ))
    }

    async fn batch_put_revoke(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchPutRevoke, r, |m, r| h::batch_write_finish(
            m,
            r,
            EndKind::PutRevoke
        ))
    }

    async fn upsert_start(&self, r: Request<PutStartRequest>) -> Reply<PutStartResponse> {
        unary!(self, UpsertStart, r, |m, r| h::write_start(m, r, true))
    }

    async fn batch_upsert_start(
        &self,
        r: Request<BatchPutStartRequest>,
    ) -> Reply<BatchPutStartResponse> {
        unary!(self, BatchUpsertStart, r, |m, r| h::batch_write_start(
            m, r, true
        ))
    }

    async fn upsert_end(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, UpsertEnd, r, |m, r| h::write_finish(
            m,
            r,
            EndKind::UpsertEnd
        ))
    }

    async fn batch_upsert_end(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchUpsertEnd, r, |m, r| h::batch_write_finish(
            m,
            r,
            EndKind::UpsertEnd
        ))
    }

    async fn upsert_revoke(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, UpsertRevoke, r, |m, r| h::write_finish(
            m,
            r,
            EndKind::UpsertRevoke
        ))
    }

    async fn batch_upsert_revoke(
        &self,
        r: Request<BatchPutEndRequest>,
    ) -> Reply<BatchCodeResponse> {
        unary!(self, BatchUpsertRevoke, r, |m, r| h::batch_write_finish(
            m,
            r,
            EndKind::UpsertRevoke
        ))
    }

    async fn get_replica_list(&self, r: Request<KeyRequest>) -> Reply<GetReplicaListResponse> {
        unary!(self, GetReplicaList, r, h::get_replica_list)
    }

    async fn batch_get_replica_list(
        &self,
        r: Request<BatchKeyRequest>,
    ) -> Reply<BatchGetReplicaListResponse> {
        unary!(self, BatchGetReplicaList, r, h::batch_get_replica_list)
    }

    async fn exist(&self, r: Request<KeyRequest>) -> Reply<CodeResponse> {
        unary!(self, Exist, r, h::exist)
    }

    async fn batch_exist(&self, r: Request<BatchKeyRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchExist, r, |m, r: BatchKeyRequest| h::batch_exist(
            m, &r.keys
        ))
    }

    async fn remove(&self, r: Request<RemoveRequest>) -> Reply<CodeResponse> {
        unary!(self, Remove, r, h::remove)
    }

    async fn batch_remove(&self, r: Request<BatchRemoveRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchRemove, r, h::batch_remove)
    }

    async fn remove_by_regex(&self, r: Request<RemoveByRegexRequest>) -> Reply<CountResponse> {
        unary!(self, RemoveByRegex, r, h::remove_by_regex)
    }

    async fn remove_all(&self, r: Request<RemoveAllRequest>) -> Reply<CountResponse> {
        unary!(self, RemoveAll, r, h::remove_all)
    }

    async fn query_key(&self, r: Request<KeyRequest>) -> Reply<QueryKeyResponse> {
        unary!(self, QueryKey, r, h::query_key)
    }

    async fn get_stats(&self, r: Request<GetStatsRequest>) -> Reply<GetStatsResponse> {
        unary!(self, GetStats, r, h::get_stats)
    }
}

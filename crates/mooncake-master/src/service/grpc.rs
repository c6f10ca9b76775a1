//! The gRPC face of the control plane: tonic's generated `Master` service, each
//! method decoded by tonic and handed to its handler through the gate. The tenant a
//! call runs as was put in the request's extensions by the listener, which refused the
//! call if its connection proved none (`auth`); a request without one is refused.

use super::auth::{unauthenticated, Tenant};
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
    // A method that names keys or segments: runs as the connection's tenant.
    ($self:ident, $method:ident, $r:ident, |$m:ident, $t:ident, $req:ident| $body:expr) => {{
        let $t = tenant_of(&$r)?;
        let $t = &$t;
        let $req = $r.into_inner();
        run(&$self.gate, Method::$method, |$m| $body)
            .await
            .map(Response::new)
    }};
    ($self:ident, $method:ident, $r:ident, $f:expr) => {{
        let r = $r.into_inner();
        run(&$self.gate, Method::$method, |m| $f(m, r))
            .await
            .map(Response::new)
    }};
}

/// The tenant the listener attached to a call (none: the call is refused).
fn tenant_of<T>(r: &Request<T>) -> Result<Tenant, Status> {
    r.extensions()
        .get::<Tenant>()
        .cloned()
        .ok_or_else(unauthenticated)
}

#[tonic::async_trait]
impl<G: Gate> master_server::Master for GrpcService<G> {
    async fn mount_segment(&self, r: Request<MountSegmentRequest>) -> Reply<MountSegmentResponse> {
        unary!(self, MountSegment, r, |m, t, r| h::mount_segment(
            m, t, r, false
        ))
    }

    async fn remount_segment(
        &self,
        r: Request<MountSegmentRequest>,
    ) -> Reply<MountSegmentResponse> {
        unary!(self, RemountSegment, r, |m, t, r| h::mount_segment(
            m, t, r, true
        ))
    }

    async fn unmount_segment(
        &self,
        r: Request<UnmountSegmentRequest>,
    ) -> Reply<UnmountSegmentResponse> {
        unary!(self, UnmountSegment, r, |m, t, r| h::unmount_segment(
            m, t, r
        ))
    }

    async fn heartbeat(&self, r: Request<HeartbeatRequest>) -> Reply<HeartbeatResponse> {
        unary!(self, Heartbeat, r, h::heartbeat)
    }

    async fn list_segments(&self, r: Request<ListSegmentsRequest>) -> Reply<ListSegmentsResponse> {
        unary!(self, ListSegments, r, |m, t, r| h::list_segments(m, t, r))
    }

    async fn put_start(&self, r: Request<PutStartRequest>) -> Reply<PutStartResponse> {
        unary!(self, PutStart, r, |m, t, r| h::write_start(m, t, r, false))
    }

    async fn batch_put_start(
        &self,
        r: Request<BatchPutStartRequest>,
    ) -> Reply<BatchPutStartResponse> {
        unary!(self, BatchPutStart, r, |m, t, r| h::batch_write_start(
            m, t, r, false
        ))
    }

    async fn put_end(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, PutEnd, r, |m, t, r| h::write_finish(
            m,
            t,
            r,
            EndKind::PutEnd
        ))
    }

    async fn batch_put_end(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchPutEnd, r, |m, t, r| h::batch_write_finish(
            m,
            t,
            r,
            EndKind::PutEnd
        ))
    }

    async fn put_revoke(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, PutRevoke, r, |m, t, r| h::write_finish(
            m,
            t,
            r,
            EndKind::PutRevoke
        ))
    }

    async fn batch_put_revoke(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchPutRevoke, r, |m, t, r| h::batch_write_finish(
            m,
            t,
            r,
            EndKind::PutRevoke
        ))
    }

    async fn upsert_start(&self, r: Request<PutStartRequest>) -> Reply<PutStartResponse> {
        unary!(self, UpsertStart, r, |m, t, r| h::write_start(
            m, t, r, true
        ))
    }

    async fn batch_upsert_start(
        &self,
        r: Request<BatchPutStartRequest>,
    ) -> Reply<BatchPutStartResponse> {
        unary!(self, BatchUpsertStart, r, |m, t, r| h::batch_write_start(
            m, t, r, true
        ))
    }

    async fn upsert_end(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, UpsertEnd, r, |m, t, r| h::write_finish(
            m,
            t,
            r,
            EndKind::UpsertEnd
        ))
    }

    async fn batch_upsert_end(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchUpsertEnd, r, |m, t, r| h::batch_write_finish(
            m,
            t,
            r,
            EndKind::UpsertEnd
        ))
    }

    async fn upsert_revoke(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        unary!(self, UpsertRevoke, r, |m, t, r| h::write_finish(
            m,
            t,
            r,
            EndKind::UpsertRevoke
        ))
    }

    async fn batch_upsert_revoke(
        &self,
        r: Request<BatchPutEndRequest>,
    ) -> Reply<BatchCodeResponse> {
        unary!(self, BatchUpsertRevoke, r, |m, t, r| h::batch_write_finish(
            m,
            t,
            r,
            EndKind::UpsertRevoke
        ))
    }

    async fn get_replica_list(&self, r: Request<KeyRequest>) -> Reply<GetReplicaListResponse> {
        unary!(self, GetReplicaList, r, |m, t, r| h::get_replica_list(
            m, t, r
        ))
    }

    async fn batch_get_replica_list(
        &self,
        r: Request<BatchKeyRequest>,
    ) -> Reply<BatchGetReplicaListResponse> {
        unary!(self, BatchGetReplicaList, r, |m, t, r| {
            h::batch_get_replica_list(m, t, r)
        })
    }

    async fn exist(&self, r: Request<KeyRequest>) -> Reply<CodeResponse> {
        unary!(self, Exist, r, |m, t, r| h::exist(m, t, r))
    }

    async fn batch_exist(&self, r: Request<BatchKeyRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchExist, r, |m, t, r| h::batch_exist(m, t, &r.keys))
    }

    async fn remove(&self, r: Request<RemoveRequest>) -> Reply<CodeResponse> {
        unary!(self, Remove, r, |m, t, r| h::remove(m, t, r))
    }

    async fn batch_remove(&self, r: Request<BatchRemoveRequest>) -> Reply<BatchCodeResponse> {
        unary!(self, BatchRemove, r, |m, t, r| h::batch_remove(m, t, r))
    }

    async fn remove_by_regex(&self, r: Request<RemoveByRegexRequest>) -> Reply<CountResponse> {
        unary!(self, RemoveByRegex, r, |m, t, r| h::remove_by_regex(
            m, t, r
        ))
    }

    async fn remove_all(&self, r: Request<RemoveAllRequest>) -> Reply<CountResponse> {
        unary!(self, RemoveAll, r, |m, t, r| h::remove_all(m, t, r))
    }

    async fn query_key(&self, r: Request<KeyRequest>) -> Reply<QueryKeyResponse> {
        unary!(self, QueryKey, r, |m, t, r| h::query_key(m, t, r))
    }

    async fn get_stats(&self, r: Request<GetStatsRequest>) -> Reply<GetStatsResponse> {
        unary!(self, GetStats, r, h::get_stats)
    }

    async fn verify_proof(&self, r: Request<VerifyProofRequest>) -> Reply<VerifyProofResponse> {
        unary!(self, VerifyProof, r, super::verify::verify_proof)
    }
}

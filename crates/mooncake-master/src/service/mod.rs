//! The gRPC service: a thin layer that unpacks requests, calls [`Master`], counts the
//! request, and packs the answer. Per-item outcomes are contract codes in the
//! response; malformed batches answer -600 for every item. Handlers never await while
//! holding a lock (the master's operations are synchronous and short).

pub(crate) mod batch;

use crate::master::counters::count;
use crate::master::Master;
use mooncake_proto::master_server;
use mooncake_proto::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// The tonic service over one master.
#[derive(Clone)]
pub struct MasterService {
    master: Arc<Master>,
}

impl MasterService {
    pub fn new(master: Arc<Master>) -> Self {
        Self { master }
    }
}

macro_rules! counted {
    ($m:expr, $kind:ident, $kind_fail:ident, $code:expr) => {{
        let c = $m.counters();
        count(&c.$kind, &c.$kind_fail, &c.failures, $code);
    }};
}

#[tonic::async_trait]
impl master_server::Master for MasterService {
    async fn mount_segment(&self, r: Request<MountSegmentRequest>) -> Reply<MountSegmentResponse> {
        let r = r.into_inner();
        let out = self.master.mount_segment(&r.client_id, r.segment);
        counted!(self.master, mount, mount_failures, out.code);
        Ok(Response::new(out))
    }

    async fn remount_segment(
        &self,
        r: Request<MountSegmentRequest>,
    ) -> Reply<MountSegmentResponse> {
        let r = r.into_inner();
        let out = self.master.remount_segment(&r.client_id, r.segment);
        counted!(self.master, mount, mount_failures, out.code);
        Ok(Response::new(out))
    }

    async fn unmount_segment(
        &self,
        r: Request<UnmountSegmentRequest>,
    ) -> Reply<UnmountSegmentResponse> {
        let r = r.into_inner();
        let (code, objects_dropped) = self.master.unmount_segment(&r.client_id, &r.segment_name);
        counted!(self.master, unmount, unmount_failures, code);
        Ok(Response::new(UnmountSegmentResponse {
            code,
            objects_dropped,
        }))
    }

    async fn heartbeat(&self, r: Request<HeartbeatRequest>) -> Reply<HeartbeatResponse> {
        let r = r.into_inner();
        let code = if r.client_id.is_empty() { -600 } else { 0 };
        counted!(self.master, heartbeat, heartbeat_failures, code);
        if code < 0 {
            return Err(mooncake_proto::status::to_status(
                mooncake_common::ErrorCode::InvalidParams,
                "heartbeat without client_id",
            ));
        }
        Ok(Response::new(self.master.heartbeat(&r.client_id)))
    }

    async fn list_segments(&self, _r: Request<ListSegmentsRequest>) -> Reply<ListSegmentsResponse> {
        Ok(Response::new(self.master.list_segments_proto()))
    }

    async fn put_start(&self, r: Request<PutStartRequest>) -> Reply<PutStartResponse> {
        let r = r.into_inner();
        let out = self
            .master
            .put_start(&r.client_id, &r.key, r.size, r.config.as_ref());
        counted!(self.master, put_start, put_start_failures, out.code);
        Ok(Response::new(out))
    }

    async fn batch_put_start(
        &self,
        r: Request<BatchPutStartRequest>,
    ) -> Reply<BatchPutStartResponse> {
        Ok(Response::new(batch::starts(
            &self.master,
            r.into_inner(),
            false,
        )))
    }

    async fn put_end(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        let r = r.into_inner();
        let code = self.master.write_end(&r.client_id, &r.key, r.put_id);
        counted!(self.master, put_end, put_end_failures, code);
        Ok(Response::new(CodeResponse { code }))
    }

    async fn batch_put_end(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        Ok(Response::new(batch::ends(
            &self.master,
            r.into_inner(),
            batch::EndKind::PutEnd,
        )))
    }

    async fn put_revoke(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        let r = r.into_inner();
        let code = self.master.write_revoke(&r.client_id, &r.key, r.put_id);
        counted!(self.master, put_revoke, put_revoke_failures, code);
        Ok(Response::new(CodeResponse { code }))
    }

    async fn batch_put_revoke(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        Ok(Response::new(batch::ends(
            &self.master,
            r.into_inner(),
            batch::EndKind::PutRevoke,
        )))
    }

    async fn upsert_start(&self, r: Request<PutStartRequest>) -> Reply<PutStartResponse> {
        let r = r.into_inner();
        let out = self
            .master
            .upsert_start(&r.client_id, &r.key, r.size, r.config.as_ref());
        counted!(self.master, upsert_start, upsert_start_failures, out.code);
        Ok(Response::new(out))
    }

    async fn batch_upsert_start(
        &self,
        r: Request<BatchPutStartRequest>,
    ) -> Reply<BatchPutStartResponse> {
        Ok(Response::new(batch::starts(
            &self.master,
            r.into_inner(),
            true,
        )))
    }

    async fn upsert_end(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        let r = r.into_inner();
        let code = self.master.write_end(&r.client_id, &r.key, r.put_id);
        counted!(self.master, upsert_end, upsert_end_failures, code);
        Ok(Response::new(CodeResponse { code }))
    }

    async fn batch_upsert_end(&self, r: Request<BatchPutEndRequest>) -> Reply<BatchCodeResponse> {
        Ok(Response::new(batch::ends(
            &self.master,
            r.into_inner(),
            batch::EndKind::UpsertEnd,
        )))
    }

    async fn upsert_revoke(&self, r: Request<PutEndRequest>) -> Reply<CodeResponse> {
        let r = r.into_inner();
        let code = self.master.write_revoke(&r.client_id, &r.key, r.put_id);
        counted!(self.master, upsert_revoke, upsert_revoke_failures, code);
        Ok(Response::new(CodeResponse { code }))
    }

    async fn batch_upsert_revoke(
        &self,
        r: Request<BatchPutEndRequest>,
    ) -> Reply<BatchCodeResponse> {
        Ok(Response::new(batch::ends(
            &self.master,
            r.into_inner(),
            batch::EndKind::UpsertRevoke,
        )))
    }

    async fn get_replica_list(&self, r: Request<KeyRequest>) -> Reply<GetReplicaListResponse> {
        let out = self.master.get_replica_list(&r.into_inner().key);
        counted!(
            self.master,
            get_replica_list,
            get_replica_list_failures,
            out.code
        );
        Ok(Response::new(out))
    }

    async fn batch_get_replica_list(
        &self,
        r: Request<BatchKeyRequest>,
    ) -> Reply<BatchGetReplicaListResponse> {
        let results = self.master.batch_get_replica_list(&r.into_inner().keys);
        let failed = results.iter().filter(|r| r.code < 0).count();
        batch::count_batch(
            &self.master,
            results.len(),
            failed,
            batch::CodeKind::GetReplicaList,
        );
        Ok(Response::new(BatchGetReplicaListResponse { results }))
    }

    async fn exist(&self, r: Request<KeyRequest>) -> Reply<CodeResponse> {
        let code = self.master.exist(&r.into_inner().key);
        counted!(self.master, exist, exist_failures, code);
        Ok(Response::new(CodeResponse { code }))
    }

    async fn batch_exist(&self, r: Request<BatchKeyRequest>) -> Reply<BatchCodeResponse> {
        let codes = self.master.batch_exist(&r.into_inner().keys);
        batch::count_codes(&self.master, &codes, batch::CodeKind::Exist);
        Ok(Response::new(BatchCodeResponse { codes }))
    }

    async fn remove(&self, r: Request<RemoveRequest>) -> Reply<CodeResponse> {
        let r = r.into_inner();
        let code = self.master.remove(&r.key, r.force);
        counted!(self.master, remove, remove_failures, code);
        Ok(Response::new(CodeResponse { code }))
    }

    async fn batch_remove(&self, r: Request<BatchRemoveRequest>) -> Reply<BatchCodeResponse> {
        let r = r.into_inner();
        let codes: Vec<i32> = r
            .keys
            .iter()
            .map(|k| self.master.remove(k, r.force))
            .collect();
        batch::count_codes(&self.master, &codes, batch::CodeKind::Remove);
        Ok(Response::new(BatchCodeResponse { codes }))
    }

    async fn remove_by_regex(&self, r: Request<RemoveByRegexRequest>) -> Reply<CountResponse> {
        let r = r.into_inner();
        let count = self.master.remove_by_regex(&r.pattern, r.force);
        counted!(
            self.master,
            remove_by_regex,
            remove_by_regex_failures,
            count.clamp(-1, 0) as i32
        );
        Ok(Response::new(CountResponse { count }))
    }

    async fn remove_all(&self, r: Request<RemoveAllRequest>) -> Reply<CountResponse> {
        let count = self.master.remove_all(r.into_inner().force);
        counted!(self.master, remove_all, remove_all_failures, 0);
        Ok(Response::new(CountResponse { count }))
    }

    async fn query_key(&self, r: Request<KeyRequest>) -> Reply<QueryKeyResponse> {
        Ok(Response::new(
            self.master.query_key_proto(&r.into_inner().key),
        ))
    }

    async fn get_stats(&self, _r: Request<GetStatsRequest>) -> Reply<GetStatsResponse> {
        Ok(Response::new(self.master.stats_proto()))
    }
}

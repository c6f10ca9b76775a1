//! `SegmentOwner` on the rpc port: the owner of a segment leaving to be restarted
//! (`LeaveForRestart`), and the owner of a segment being drained reporting the copies
//! it made and getting the next ones (`DrainWork`, see the module above).

use super::Drains;
use crate::service::Extra;
use mooncake_proto::segment_owner_server::{SegmentOwner, SegmentOwnerServer};
use mooncake_proto::{
    CreateCopyTaskRequest, CreateMoveTaskRequest, DrainWorkRequest, DrainWorkResponse,
    LeaveRequest, LeaveResponse, QueryTaskRequest, QueryTaskResponse, TaskId, TaskIdResponse,
};
use std::sync::Arc;
use tonic::codegen::Service;
use tonic::{Request, Response, Status};

/// The path prefix of the service's calls.
pub const OWNER_PREFIX: &str = "/mooncake.v1.SegmentOwner/";

#[derive(Clone)]
pub struct OwnerService {
    drains: Arc<Drains>,
}

impl OwnerService {
    pub fn new(drains: Arc<Drains>) -> Self {
        Self { drains }
    }
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

    async fn create_copy_task(
        &self,
        req: Request<CreateCopyTaskRequest>,
    ) -> Result<Response<TaskIdResponse>, Status> {
        let r = req.into_inner();
        let m = self.drains.master();
        let out = self.drains.tasks().create_copy(m, &r.key, &r.targets);
        Ok(Response::new(task_id_response(out)))
    }

    async fn create_move_task(
        &self,
        req: Request<CreateMoveTaskRequest>,
    ) -> Result<Response<TaskIdResponse>, Status> {
        let r = req.into_inner();
        let m = self.drains.master();
        let out = self
            .drains
            .tasks()
            .create_move(m, &r.key, &r.source, &r.target);
        Ok(Response::new(task_id_response(out)))
    }

    async fn query_task(
        &self,
        req: Request<QueryTaskRequest>,
    ) -> Result<Response<QueryTaskResponse>, Status> {
        let id = req.into_inner().id.unwrap_or_default();
        let m = self.drains.master();
        let answer = match self.drains.tasks().query(m, (id.high, id.low)) {
            Ok(t) => QueryTaskResponse {
                code: 0,
                id: Some(TaskId {
                    high: t.id.0,
                    low: t.id.1,
                }),
                r#type: t.kind as i32,
                status: t.status as i32,
                created_at_ms_epoch: t.created_at_ms_epoch,
                last_updated_at_ms_epoch: t.last_updated_at_ms_epoch,
                assigned_client: t.assigned_client,
                message: t.message,
            },
            Err(code) => QueryTaskResponse {
                code,
                ..Default::default()
            },
        };
        Ok(Response::new(answer))
    }
}

/// A created task's id, or the code of the refusal (the id then `(0, 0)`).
fn task_id_response(out: Result<(u64, u64), i32>) -> TaskIdResponse {
    match out {
        Ok((high, low)) => TaskIdResponse {
            code: 0,
            id: Some(TaskId { high, low }),
        },
        Err(code) => TaskIdResponse {
            code,
            id: Some(TaskId::default()),
        },
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

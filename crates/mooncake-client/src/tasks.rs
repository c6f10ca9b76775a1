//! Copy and move tasks: asking the master to copy one object's replica to named
//! segments, or to move it from one segment to another, and asking how the task
//! went. The master runs them on its drain machinery (the source segment's owner
//! copies the bytes store to store); these calls go to the master's `SegmentOwner`
//! service over gRPC on the rpc port, whichever protocol the object calls use. A
//! master under HA does not run tasks (the calls fail).
//!
//! Answers carry the contract's codes as plain numbers, because some (-1400
//! TASK_NOT_FOUND, -1010 UNAVAILABLE_IN_CURRENT_STATUS) are the task API's own.

use crate::client::Client;
use crate::transport::DirectChannel;
use mooncake_common::ErrorCode;
use mooncake_proto::segment_owner_client::SegmentOwnerClient;
use mooncake_proto::{CreateCopyTaskRequest, CreateMoveTaskRequest, QueryTaskRequest, TaskId};
use std::time::Duration;

/// A task's state, as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: (u64, u64),
    /// 0 REPLICA_COPY, 1 REPLICA_MOVE.
    pub kind: i32,
    /// 0 PENDING, 1 PROCESSING, 2 SUCCESS, 3 FAILED.
    pub status: i32,
    pub created_at_ms_epoch: u64,
    pub last_updated_at_ms_epoch: u64,
    /// The client that copies the bytes (the owner of the source replica).
    pub assigned_client: String,
    /// Why a task failed (empty otherwise).
    pub message: String,
}

/// A task call's outcome: the answer, or a contract code.
pub type TaskResult<T> = std::result::Result<T, i32>;

impl Client {
    /// The task calls' channel: to the master, or under HA to the leader now (a task
    /// lives in the term that created it: after a takeover its id is unknown).
    async fn task_rpc(&self) -> TaskResult<SegmentOwnerClient<DirectChannel>> {
        let addr = self
            .inner
            .rpc
            .current_addr()
            .await
            .map_err(|e| e.code.code())?;
        let (ch, origin) = crate::auth::master_service_channel(
            &addr,
            Duration::from_secs(2),
            Duration::from_secs(10),
            self.inner.tuning.client_auth(),
        )
        .map_err(|_| ErrorCode::InvalidParams.code())?;
        Ok(SegmentOwnerClient::with_origin(ch, origin))
    }

    /// Copies `key`'s object to each of `targets` (segment names); the task's id.
    /// A target that already holds a replica is skipped.
    pub async fn create_copy_task(&self, key: &str, targets: &[String]) -> TaskResult<(u64, u64)> {
        let req = CreateCopyTaskRequest {
            key: key.to_string(),
            targets: targets.to_vec(),
        };
        let r = self
            .task_rpc()
            .await?
            .create_copy_task(req)
            .await
            .map_err(status_code)?
            .into_inner();
        id_of(r.code, r.id)
    }

    /// Moves `key`'s replica on segment `source` to segment `target`; the task's id.
    pub async fn create_move_task(
        &self,
        key: &str,
        source: &str,
        target: &str,
    ) -> TaskResult<(u64, u64)> {
        let req = CreateMoveTaskRequest {
            key: key.to_string(),
            source: source.to_string(),
            target: target.to_string(),
        };
        let r = self
            .task_rpc()
            .await?
            .create_move_task(req)
            .await
            .map_err(status_code)?
            .into_inner();
        id_of(r.code, r.id)
    }

    /// The task's state; -1400 for an id the master does not know.
    pub async fn query_task(&self, id: (u64, u64)) -> TaskResult<TaskInfo> {
        let req = QueryTaskRequest {
            id: Some(TaskId {
                high: id.0,
                low: id.1,
            }),
        };
        let r = self
            .task_rpc()
            .await?
            .query_task(req)
            .await
            .map_err(status_code)?
            .into_inner();
        if r.code != 0 {
            return Err(r.code);
        }
        Ok(TaskInfo {
            id,
            kind: r.r#type,
            status: r.status,
            created_at_ms_epoch: r.created_at_ms_epoch,
            last_updated_at_ms_epoch: r.last_updated_at_ms_epoch,
            assigned_client: r.assigned_client,
            message: r.message,
        })
    }
}

fn id_of(code: i32, id: Option<TaskId>) -> TaskResult<(u64, u64)> {
    match (code, id) {
        (0, Some(id)) => Ok((id.high, id.low)),
        (0, None) => Err(ErrorCode::InternalError.code()),
        (code, _) => Err(code),
    }
}

/// A failed call: the master could not be reached, or does not serve tasks (an
/// older master, or one under HA).
fn status_code(s: tonic::Status) -> i32 {
    match s.code() {
        tonic::Code::Unimplemented => ErrorCode::UnavailableInCurrentMode.code(),
        tonic::Code::DeadlineExceeded => ErrorCode::RpcTimeout.code(),
        _ => ErrorCode::RpcFail.code(),
    }
}

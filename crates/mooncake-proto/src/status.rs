//! Whole-request failures cross the gRPC edge as statuses carrying the contract code
//! in the `mc-error-code` metadata entry; transport failures map to `RPC_FAIL` /
//! `RPC_TIMEOUT`.

use mooncake_common::{ErrorCode, MooncakeError};
use tonic::{Code, Status};

pub const ERROR_CODE_KEY: &str = "mc-error-code";

/// The gRPC code that best describes a contract code.
pub fn grpc_code(code: ErrorCode) -> Code {
    use ErrorCode::*;
    match code {
        Ok => Code::Ok,
        InvalidParams | InvalidKey | BufferOverflow => Code::InvalidArgument,
        ObjectNotFound | SegmentNotFound | ClientNotFound | EtcdKeyNotExist => Code::NotFound,
        ObjectAlreadyExists | SegmentAlreadyExists => Code::AlreadyExists,
        NoAvailableHandle | TenantQuotaExceeded => Code::ResourceExhausted,
        Unauthenticated => Code::Unauthenticated,
        PermissionDenied => Code::PermissionDenied,
        ObjectHasLease | ReplicaIsNotReady | ObjectReplicaBusy | LeaseExpired => {
            Code::FailedPrecondition
        }
        IllegalClient => Code::PermissionDenied,
        RpcTimeout => Code::DeadlineExceeded,
        RpcFail | UnavailableInCurrentMode => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// A status that carries `code` for the other side to recover exactly.
pub fn to_status(code: ErrorCode, message: impl Into<String>) -> Status {
    let mut status = Status::new(grpc_code(code), message.into());
    if let Ok(v) = code.code().to_string().parse() {
        status.metadata_mut().insert(ERROR_CODE_KEY, v);
    }
    status
}

impl From<MooncakeErrorStatus> for Status {
    fn from(e: MooncakeErrorStatus) -> Status {
        to_status(e.0.code, e.0.message)
    }
}

/// Wrapper so handlers can `?` a `MooncakeError` into a `Status`.
pub struct MooncakeErrorStatus(pub MooncakeError);

/// The contract code a status stands for. Statuses without our metadata (transport
/// errors, a proxy's answer) become `RPC_FAIL`, or `RPC_TIMEOUT` on a deadline.
pub fn from_status(status: &Status) -> ErrorCode {
    if let Some(code) = status
        .metadata()
        .get(ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
    {
        return ErrorCode::from_code(code);
    }
    match status.code() {
        Code::DeadlineExceeded => ErrorCode::RpcTimeout,
        Code::InvalidArgument => ErrorCode::InvalidParams,
        _ => ErrorCode::RpcFail,
    }
}

/// A `MooncakeError` from a status, keeping its message.
pub fn error_from_status(status: &Status) -> MooncakeError {
    MooncakeError::new(from_status(status), status.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_a_status() {
        for c in ErrorCode::ALL.iter().filter(|c| **c != ErrorCode::Ok) {
            let s = to_status(*c, "x");
            assert_eq!(from_status(&s), *c);
        }
    }

    #[test]
    fn foreign_statuses_are_rpc_failures() {
        assert_eq!(
            from_status(&Status::unavailable("down")),
            ErrorCode::RpcFail
        );
        assert_eq!(
            from_status(&Status::deadline_exceeded("slow")),
            ErrorCode::RpcTimeout
        );
    }
}

//! The contract's error codes (CONTRACT §4). The numeric values cross process and
//! language boundaries (gRPC results, Python return values), so they never change.

use std::fmt;

/// Error codes with the reference's numeric values. `Ok` is 0 and is never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    Ok = 0,
    InternalError = -1,
    BufferOverflow = -10,
    SegmentNotFound = -101,
    SegmentAlreadyExists = -102,
    ClientNotFound = -103,
    NoAvailableHandle = -200,
    InvalidKey = -400,
    WriteFail = -500,
    InvalidParams = -600,
    IllegalClient = -601,
    InvalidWrite = -700,
    InvalidRead = -701,
    InvalidReplica = -702,
    ReplicaIsNotReady = -703,
    ObjectNotFound = -704,
    ObjectAlreadyExists = -705,
    ObjectHasLease = -706,
    LeaseExpired = -707,
    ObjectReplicaBusy = -714,
    TransferFail = -800,
    ChecksumMismatch = -801,
    RpcFail = -900,
    RpcTimeout = -901,
    EtcdOperationError = -1000,
    EtcdKeyNotExist = -1001,
    EtcdTransactionFail = -1002,
    EtcdCtxCancelled = -1003,
    UnavailableInCurrentMode = -1010,
    /// A put would take its tenant over its byte quota (the reference's value).
    TenantQuotaExceeded = -1700,
    /// The peer did not prove a token the master accepts (beyond the reference,
    /// which has no authentication).
    Unauthenticated = -1800,
    /// The peer's proven tenant may not do this (another tenant's segment, a
    /// `tenant_id` that is not its token's, an admin call outside the cluster tenant).
    PermissionDenied = -1801,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Ok,
        ErrorCode::InternalError,
        ErrorCode::BufferOverflow,
        ErrorCode::SegmentNotFound,
        ErrorCode::SegmentAlreadyExists,
        ErrorCode::ClientNotFound,
        ErrorCode::NoAvailableHandle,
        ErrorCode::InvalidKey,
        ErrorCode::WriteFail,
        ErrorCode::InvalidParams,
        ErrorCode::IllegalClient,
        ErrorCode::InvalidWrite,
        ErrorCode::InvalidRead,
        ErrorCode::InvalidReplica,
        ErrorCode::ReplicaIsNotReady,
        ErrorCode::ObjectNotFound,
        ErrorCode::ObjectAlreadyExists,
        ErrorCode::ObjectHasLease,
        ErrorCode::LeaseExpired,
        ErrorCode::ObjectReplicaBusy,
        ErrorCode::TransferFail,
        ErrorCode::ChecksumMismatch,
        ErrorCode::RpcFail,
        ErrorCode::RpcTimeout,
        ErrorCode::EtcdOperationError,
        ErrorCode::EtcdKeyNotExist,
        ErrorCode::EtcdTransactionFail,
        ErrorCode::EtcdCtxCancelled,
        ErrorCode::UnavailableInCurrentMode,
        ErrorCode::TenantQuotaExceeded,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
    ];

    /// The contract's numeric value.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code for a numeric value; unknown values map to `InternalError`.
    pub fn from_code(code: i32) -> ErrorCode {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.code() == code)
            .unwrap_or(ErrorCode::InternalError)
    }

    /// The upper-case name operators see in logs and CLI output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Ok => "OK",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::BufferOverflow => "BUFFER_OVERFLOW",
            ErrorCode::SegmentNotFound => "SEGMENT_NOT_FOUND",
            ErrorCode::SegmentAlreadyExists => "SEGMENT_ALREADY_EXISTS",
            ErrorCode::ClientNotFound => "CLIENT_NOT_FOUND",
            ErrorCode::NoAvailableHandle => "NO_AVAILABLE_HANDLE",
            ErrorCode::InvalidKey => "INVALID_KEY",
            ErrorCode::WriteFail => "WRITE_FAIL",
            ErrorCode::InvalidParams => "INVALID_PARAMS",
            ErrorCode::IllegalClient => "ILLEGAL_CLIENT",
            ErrorCode::InvalidWrite => "INVALID_WRITE",
            ErrorCode::InvalidRead => "INVALID_READ",
            ErrorCode::InvalidReplica => "INVALID_REPLICA",
            ErrorCode::ReplicaIsNotReady => "REPLICA_IS_NOT_READY",
            ErrorCode::ObjectNotFound => "OBJECT_NOT_FOUND",
            ErrorCode::ObjectAlreadyExists => "OBJECT_ALREADY_EXISTS",
            ErrorCode::ObjectHasLease => "OBJECT_HAS_LEASE",
            ErrorCode::LeaseExpired => "LEASE_EXPIRED",
            ErrorCode::ObjectReplicaBusy => "OBJECT_REPLICA_BUSY",
            ErrorCode::TransferFail => "TRANSFER_FAIL",
            ErrorCode::ChecksumMismatch => "CHECKSUM_MISMATCH",
            ErrorCode::RpcFail => "RPC_FAIL",
            ErrorCode::RpcTimeout => "RPC_TIMEOUT",
            ErrorCode::EtcdOperationError => "ETCD_OPERATION_ERROR",
            ErrorCode::EtcdKeyNotExist => "ETCD_KEY_NOT_EXIST",
            ErrorCode::EtcdTransactionFail => "ETCD_TRANSACTION_FAIL",
            ErrorCode::EtcdCtxCancelled => "ETCD_CTX_CANCELLED",
            ErrorCode::UnavailableInCurrentMode => "UNAVAILABLE_IN_CURRENT_MODE",
            ErrorCode::TenantQuotaExceeded => "TENANT_QUOTA_EXCEEDED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
        }
    }

    /// Whether a caller may retry the same request and expect a different outcome.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RpcFail
                | ErrorCode::RpcTimeout
                | ErrorCode::TransferFail
                | ErrorCode::NoAvailableHandle
                | ErrorCode::ObjectReplicaBusy
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// An error with a contract code and a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MooncakeError {
    pub code: ErrorCode,
    pub message: String,
}

impl MooncakeError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }
}

impl From<ErrorCode> for MooncakeError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, code.name())
    }
}

pub type Result<T, E = MooncakeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_contract() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), *c);
        }
        assert_eq!(ErrorCode::NoAvailableHandle.code(), -200);
        assert_eq!(ErrorCode::ObjectHasLease.code(), -706);
        assert_eq!(ErrorCode::RpcFail.code(), -900);
        assert_eq!(ErrorCode::from_code(-12345), ErrorCode::InternalError);
    }

    #[test]
    fn display_names_code_and_value() {
        let e = MooncakeError::invalid("empty key");
        assert_eq!(e.to_string(), "INVALID_PARAMS (-600): empty key");
    }
}

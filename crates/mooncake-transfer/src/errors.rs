//! Errors of the transfer engine. Each maps to a contract code (CONTRACT §4) so the
//! client can hand a number straight to Python: bad requests are `INVALID_PARAMS`,
//! anything the network did is `TRANSFER_FAIL`, a CRC mismatch is `CHECKSUM_MISMATCH`.

use mooncake_common::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The request itself is wrong (zero-length, overflowing range, unknown opcode...).
    #[error("invalid transfer request: {0}")]
    InvalidRequest(String),
    /// A remote or local range is not inside one registered region.
    #[error("address range [{addr:#x}, +{len}) is not inside a registered region of segment {segment:?}")]
    OutOfRegion {
        segment: String,
        addr: u64,
        len: u64,
    },
    /// Registering a region that overlaps an existing one, or unregistering an unknown one.
    #[error("memory registration: {0}")]
    Registration(String),
    /// The target segment could not be found through the metadata backend.
    #[error("segment {0:?} not found: {1}")]
    SegmentNotFound(String, String),
    /// The peer restarted: the descriptor we hold names an older generation.
    #[error("stale descriptor for segment {segment:?}: expected generation {expected}, peer has {actual}")]
    StaleDescriptor {
        segment: String,
        expected: u64,
        actual: u64,
    },
    /// Connect, I/O, or protocol failure on a data connection.
    #[error("transfer failed: {0}")]
    Io(String),
    /// The payload's CRC32C did not match.
    #[error("checksum mismatch on {0}")]
    Checksum(String),
    /// A malformed frame on the wire (bad magic, version, opcode or length).
    #[error("malformed frame: {0}")]
    Frame(String),
    /// Metadata backend failure (HTTP/etcd unreachable, bad JSON...).
    #[error("metadata: {0}")]
    Metadata(String),
    /// Bad engine configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// RDMA setup or verbs failure.
    #[error("rdma: {0}")]
    Rdma(String),
    /// The data port requires a proof of a token and this peer gave none or a wrong one.
    #[error("authentication: {0}")]
    Unauthenticated(String),
    /// The data port serves this peer's tenant only inside allocations the master
    /// granted it, and the request lies in none (no grant, a forged or expired one,
    /// or one signed with a secret the segment no longer has).
    #[error("permission denied: {0}")]
    Forbidden(String),
    /// The engine is shut down or the request was cancelled.
    #[error("transfer engine is shut down")]
    Shutdown,
}

impl TransferError {
    /// The contract code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            TransferError::InvalidRequest(_)
            | TransferError::OutOfRegion { .. }
            | TransferError::Registration(_)
            | TransferError::Config(_) => ErrorCode::InvalidParams,
            TransferError::SegmentNotFound(..) => ErrorCode::SegmentNotFound,
            TransferError::Checksum(_) => ErrorCode::ChecksumMismatch,
            TransferError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            TransferError::Forbidden(_) => ErrorCode::PermissionDenied,
            TransferError::StaleDescriptor { .. }
            | TransferError::Io(_)
            | TransferError::Frame(_)
            | TransferError::Metadata(_)
            | TransferError::Rdma(_)
            | TransferError::Shutdown => ErrorCode::TransferFail,
        }
    }

    /// Whether the same slice may succeed on another path (connection or NIC).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            TransferError::Io(_)
                | TransferError::Frame(_)
                | TransferError::Checksum(_)
                | TransferError::StaleDescriptor { .. }
        )
    }

    pub(crate) fn io(context: &str, e: std::io::Error) -> Self {
        TransferError::Io(format!("{context}: {e}"))
    }
}

impl From<TransferError> for mooncake_common::MooncakeError {
    fn from(e: TransferError) -> Self {
        mooncake_common::MooncakeError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        let oor = TransferError::OutOfRegion {
            segment: "s".into(),
            addr: 16,
            len: 4,
        };
        assert_eq!(oor.code(), ErrorCode::InvalidParams);
        assert!(!oor.retryable());
        assert!(oor.to_string().contains("not inside a registered region"));
        assert_eq!(
            TransferError::Io("x".into()).code(),
            ErrorCode::TransferFail
        );
        assert!(TransferError::Io("x".into()).retryable());
        assert_eq!(
            TransferError::Checksum("x".into()).code(),
            ErrorCode::ChecksumMismatch
        );
    }
}

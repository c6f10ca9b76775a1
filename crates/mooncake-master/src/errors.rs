//! The master's errors. Per-item outcomes are contract codes
//! ([`mooncake_common::ErrorCode`]) because they cross the wire as `int32`; this module
//! only adds the conversion from a code to the gRPC status used for whole-request
//! failures, so handlers write `Err(status(code, "why"))`.

use mooncake_common::ErrorCode;

/// A whole-request failure carrying `code` in the `mc-error-code` metadata.
pub fn status(code: ErrorCode, message: impl Into<String>) -> tonic::Status {
    mooncake_proto::status::to_status(code, message)
}

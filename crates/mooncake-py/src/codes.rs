//! Turning client results into the Python return conventions of CONTRACT §3:
//! 0 is success, a negative int is a contract error code, counts and sizes are
//! non-negative ints. Data-path calls never raise, so every error ends up here.

use mooncake_common::{ErrorCode, MooncakeError};

/// The code Python sees for an error. `Ok` never reaches Python as an error: a client
/// bug that reports one is shown as INTERNAL_ERROR so callers never read it as success.
pub fn code(e: &MooncakeError) -> i32 {
    match e.code {
        ErrorCode::Ok => ErrorCode::InternalError.code(),
        c => c.code(),
    }
}

/// 0 or the error code.
pub fn status<T>(r: &Result<T, MooncakeError>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => code(e),
    }
}

/// A count or size, or the error code.
pub fn amount(r: Result<impl TryInto<i64>, MooncakeError>) -> i64 {
    match r {
        Ok(n) => n.try_into().unwrap_or(i64::MAX),
        Err(e) => code(&e) as i64,
    }
}

/// `INVALID_PARAMS` as the int Python sees.
pub const INVALID: i32 = ErrorCode::InvalidParams as i32;

/// What every data-path call returns before `setup()` or after `close()`; the
/// reference answers INVALID_PARAMS there too (and logs "not initialized").
pub fn not_set_up() -> MooncakeError {
    MooncakeError::invalid("store is not set up (call setup() first) or was closed")
}

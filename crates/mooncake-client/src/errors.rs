//! Turning the outcomes of the control plane and the data path into contract errors.
//!
//! The client returns `mooncake_common::MooncakeError` everywhere (the seam the Python
//! package relies on); this module is the one place that decides which code a gRPC
//! status, a per-item code or a transfer failure becomes.

use mooncake_common::{ErrorCode, MooncakeError, Result};

/// `Ok(())` for 0, the contract error otherwise; `what` says which call produced it.
pub(crate) fn check_code(code: i32, what: &str) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(code_error(code, what))
    }
}

/// The error for a non-zero per-item code.
pub(crate) fn code_error(code: i32, what: &str) -> MooncakeError {
    let c = ErrorCode::from_code(code);
    let why = match c {
        ErrorCode::ObjectNotFound => "no such object",
        ErrorCode::ReplicaIsNotReady => "object is still being written",
        ErrorCode::NoAvailableHandle => "no space left in the pool",
        ErrorCode::ObjectHasLease => "object is leased by a reader; use force",
        ErrorCode::IllegalClient => "this writer's put was taken over",
        _ => c.name(),
    };
    MooncakeError::new(c, format!("{what}: {why}"))
}

/// A gRPC failure of a whole request.
pub(crate) fn status_error(status: &tonic::Status, what: &str) -> MooncakeError {
    let e = mooncake_proto::status::error_from_status(status);
    let msg = if e.message.is_empty() {
        format!("{what}: master call failed")
    } else {
        format!("{what}: {}", e.message)
    };
    MooncakeError::new(e.code, msg)
}

/// A failed data movement.
pub(crate) fn transfer_error(e: &mooncake_transfer::TransferError) -> MooncakeError {
    MooncakeError::new(e.code(), format!("{TRANSFER_FAILED}{e}"))
}

/// Whether `e` is a data port's refusal of a transfer for its grant: the segment was
/// mounted again after the master signed it (a restarted or new master draws a new
/// secret at the mount; until the owner has mounted again the master signs nothing
/// for it). The owner mounts again within a heartbeat, so the call is worth making
/// again with a fresh answer from the master ([`GRANT_RETRIES`] times, a
/// [`GRANT_RETRY_PAUSE`] apart).
pub(crate) fn grant_refused(e: &MooncakeError) -> bool {
    e.code == ErrorCode::PermissionDenied && e.message.starts_with(TRANSFER_FAILED)
}

pub(crate) const GRANT_RETRIES: usize = 8;
pub(crate) const GRANT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

/// `out` (one result per item of a call) with the items whose transfer a data port
/// refused for its grant ([`grant_refused`]) done again: `again(positions)` redoes
/// those items, asking the master afresh, and answers one result per position, in
/// order. Up to [`GRANT_RETRIES`] rounds, [`GRANT_RETRY_PAUSE`] apart (the owner
/// mounts again within a heartbeat); an item still refused after them keeps its
/// refusal.
pub(crate) async fn again_while_grants_refused<T, F, Fut>(
    mut out: Vec<Result<T>>,
    mut again: F,
) -> Vec<Result<T>>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = Vec<Result<T>>>,
{
    for _ in 0..GRANT_RETRIES {
        let refused: Vec<usize> = (0..out.len())
            .filter(|&i| matches!(&out[i], Err(e) if grant_refused(e)))
            .collect();
        if refused.is_empty() {
            break;
        }
        tokio::time::sleep(GRANT_RETRY_PAUSE).await;
        let retried = again(refused.clone()).await;
        for (i, r) in refused.into_iter().zip(retried) {
            out[i] = r;
        }
    }
    out
}

const TRANSFER_FAILED: &str = "transfer failed: ";

/// The error of a batch answer whose number of results does not match its request's
/// (`call`: the master call).
pub(crate) fn wrong_count(call: &str) -> MooncakeError {
    MooncakeError::new(
        ErrorCode::InternalError,
        format!("{call}: wrong number of results"),
    )
}

/// Fails the results at the positions `at` with `e` (the requests a batch call
/// answered wrongly, or not at all).
pub(crate) fn fail_at<T>(
    out: &mut [Result<T>],
    at: impl IntoIterator<Item = usize>,
    e: &MooncakeError,
) {
    for i in at {
        out[i] = Err(e.clone());
    }
}

/// The error every call returns after `close()`.
pub(crate) fn closed() -> MooncakeError {
    MooncakeError::new(ErrorCode::InvalidParams, "client is closed")
}

/// Validates a key the way every write and read does.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(MooncakeError::invalid("empty key"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(MooncakeError::invalid(format!(
            "key of {} bytes is longer than the limit of {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// Keys are hashes or paths in practice; a bound keeps the master's index sane.
pub const MAX_KEY_LEN: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_become_named_errors() {
        assert!(check_code(0, "put").is_ok());
        let e = check_code(-704, "get k").unwrap_err();
        assert_eq!(e.code, ErrorCode::ObjectNotFound);
        assert!(e.to_string().contains("OBJECT_NOT_FOUND (-704)"), "{e}");
        assert_eq!(check_key("").unwrap_err().code, ErrorCode::InvalidParams);
        assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(check_key("ok").is_ok());
    }

    fn refused() -> MooncakeError {
        MooncakeError::new(
            ErrorCode::PermissionDenied,
            format!("{TRANSFER_FAILED}no grant"),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn refused_grants_are_done_again_and_nothing_else_is() {
        // Item 0 succeeds at once, 1 is refused twice, 2 fails otherwise, 3 is
        // refused for good: only 1 and 3 are redone, 3 until the rounds run out.
        let first: Vec<Result<u32>> = vec![
            Ok(0),
            Err(refused()),
            Err(MooncakeError::new(
                ErrorCode::PermissionDenied,
                "put: denied",
            )),
            Err(refused()),
        ];
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let out = again_while_grants_refused(first, |again| {
            rounds.push(again.clone());
            let n = rounds.len();
            async move {
                again
                    .iter()
                    .map(|&i| match i {
                        1 if n >= 2 => Ok(10),
                        _ => Err(refused()),
                    })
                    .collect()
            }
        })
        .await;
        assert_eq!(out[0].as_ref().unwrap(), &0);
        assert_eq!(out[1].as_ref().unwrap(), &10);
        assert!(!grant_refused(out[2].as_ref().unwrap_err()));
        assert!(grant_refused(out[3].as_ref().unwrap_err()));
        assert_eq!(rounds.len(), GRANT_RETRIES);
        assert_eq!(rounds[0], vec![1, 3]);
        assert_eq!(rounds[1], vec![1, 3]);
        assert!(rounds[2..].iter().all(|r| r == &[3]));
    }

    #[test]
    fn statuses_keep_their_code() {
        let s = mooncake_proto::status::to_status(ErrorCode::NoAvailableHandle, "full");
        let e = status_error(&s, "put_start");
        assert_eq!(e.code, ErrorCode::NoAvailableHandle);
        let e = status_error(&tonic::Status::unavailable("conn refused"), "exist");
        assert_eq!(e.code, ErrorCode::RpcFail);
    }
}

//! Copy and move tasks (`create_copy_task`, `create_move_task`, `query_task`): the
//! native ends answer plain tuples; `mooncake.store` shapes them as the reference's
//! `(UUID, code)` and `(QueryTaskResponse | None, code)`.

use super::NativeStore;
use mooncake_client::tasks::TaskInfo;
use mooncake_common::ErrorCode;
use pyo3::prelude::*;

/// `(high, low, code)`: a task id, or `(0, 0, code)`.
pub(super) type IdAnswer = (u64, u64, i32);
/// `(code, type, status, created_ms, updated_ms, assigned_client, message)`.
pub(super) type TaskAnswer = (i32, i32, i32, u64, u64, String, String);

/// What the calls answer in a mode without a master connection of our own.
fn not_here() -> i32 {
    ErrorCode::UnavailableInCurrentMode.code()
}

fn id_answer(r: Result<(u64, u64), i32>) -> IdAnswer {
    match r {
        Ok((hi, lo)) => (hi, lo, 0),
        Err(code) => (0, 0, code),
    }
}

impl NativeStore {
    pub(super) fn create_copy_task_impl(
        &self,
        py: Python<'_>,
        key: &str,
        targets: &[String],
    ) -> IdAnswer {
        if self.dummy().is_some() {
            return (0, 0, not_here());
        }
        match self.session() {
            Ok(s) => id_answer(s.run(py, s.client.create_copy_task(key, targets))),
            Err(e) => (0, 0, crate::codes::code(&e)),
        }
    }

    pub(super) fn create_move_task_impl(
        &self,
        py: Python<'_>,
        key: &str,
        source: &str,
        target: &str,
    ) -> IdAnswer {
        if self.dummy().is_some() {
            return (0, 0, not_here());
        }
        match self.session() {
            Ok(s) => id_answer(s.run(py, s.client.create_move_task(key, source, target))),
            Err(e) => (0, 0, crate::codes::code(&e)),
        }
    }

    pub(super) fn query_task_impl(&self, py: Python<'_>, id: (u64, u64)) -> TaskAnswer {
        let fail = |code| (code, 0, 0, 0, 0, String::new(), String::new());
        if self.dummy().is_some() {
            return fail(not_here());
        }
        match self.session() {
            Ok(s) => match s.run(py, s.client.query_task(id)) {
                Ok(TaskInfo {
                    kind,
                    status,
                    created_at_ms_epoch,
                    last_updated_at_ms_epoch,
                    assigned_client,
                    message,
                    ..
                }) => (
                    0,
                    kind,
                    status,
                    created_at_ms_epoch,
                    last_updated_at_ms_epoch,
                    assigned_client,
                    message,
                ),
                Err(code) => fail(code),
            },
            Err(e) => fail(crate::codes::code(&e)),
        }
    }
}

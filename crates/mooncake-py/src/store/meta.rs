//! Calls about objects rather than their bytes: existence, size, removal, and the
//! store's own lifecycle (health, hostname, close).

use super::NativeStore;
use crate::codes;
use mooncake_client::Health;
use mooncake_common::MooncakeError;
use pyo3::prelude::*;

/// 1 / 0 / negative: never positive on error, since LMCache uses it as a truth value.
fn exist_code(r: Result<bool, MooncakeError>) -> i32 {
    match r {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => codes::code(&e),
    }
}

impl NativeStore {
    pub(super) fn is_exist_impl(&self, py: Python<'_>, key: &str) -> i32 {
        exist_code(self.session().and_then(|s| s.run(py, s.client.exist(key))))
    }

    /// The keys are moved into the request (no second copy of each key).
    pub(super) fn batch_is_exist_impl(&self, py: Python<'_>, keys: Vec<String>) -> Vec<i32> {
        let n = keys.len();
        match self.session() {
            Ok(s) => {
                let results = s.run(py, s.client.batch_exist_owned(keys));
                results.into_iter().map(exist_code).collect()
            }
            Err(e) => vec![codes::code(&e); n],
        }
    }

    pub(super) fn get_size_impl(&self, py: Python<'_>, key: &str) -> i64 {
        codes::amount(
            self.session()
                .and_then(|s| s.run(py, s.client.get_size(key))),
        )
    }

    pub(super) fn remove_impl(&self, py: Python<'_>, key: &str, force: bool) -> i32 {
        codes::status(
            &self
                .session()
                .and_then(|s| s.run(py, s.client.remove(key, force))),
        )
    }

    pub(super) fn remove_all_impl(&self, py: Python<'_>, force: bool) -> i64 {
        codes::amount(
            self.session()
                .and_then(|s| s.run(py, s.client.remove_all(force))),
        )
    }

    pub(super) fn remove_by_regex_impl(&self, py: Python<'_>, pattern: &str, force: bool) -> i64 {
        codes::amount(
            self.session()
                .and_then(|s| s.run(py, s.client.remove_by_regex(pattern, force))),
        )
    }

    /// 0 healthy, 1 not set up or closed, 2 master unreachable.
    pub(super) fn health_impl(&self, py: Python<'_>) -> i32 {
        match self.session() {
            Ok(s) if !s.is_closed() => s.run(py, s.client.health()) as i32,
            _ => Health::NotSetUp as i32,
        }
    }

    pub(super) fn hostname_impl(&self) -> String {
        self.session()
            .map(|s| s.client.hostname())
            .unwrap_or_default()
    }

    /// Idempotent. Unmounts this client's segment (its objects go) and forgets the
    /// session, so later calls answer "not set up" and `setup()` may be called again.
    pub(super) fn close_impl(&self, py: Python<'_>) -> i32 {
        let taken = self
            .session
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match taken {
            Some(s) => s.close(py),
            None => 0,
        }
    }
}

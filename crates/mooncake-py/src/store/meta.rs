//! Calls about objects rather than their bytes: existence, size, removal, and the
//! store's own lifecycle (health, hostname, close).

use super::NativeStore;
use crate::codes;
use mooncake_client::{Health, KeyBatch};
use mooncake_common::MooncakeError;
use mooncake_realclient::ops::{replica_view, ReplicaView};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::collections::HashMap;

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
        if let Some(d) = self.dummy() {
            let keys = [key.to_string()];
            return py.detach(|| d.exist(&keys))[0];
        }
        exist_code(self.session().and_then(|s| s.run(py, s.client.exist(key))))
    }

    /// The keys are read as borrowed UTF-8 from the Python strings and encoded
    /// straight into the request (no `String` per key); the answer list is built
    /// from the codes.
    pub(super) fn batch_is_exist_impl(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<i32>> {
        if keys.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "batch_is_exist(): keys must be a list of str, not a str",
            ));
        }
        let mut batch = KeyBatch::with_capacity(keys.len().unwrap_or(0), 48);
        for (i, k) in keys.try_iter()?.enumerate() {
            let k = k?;
            let k = k.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!("batch_is_exist(): keys[{i}] is not a str"))
            })?;
            batch.push(k.to_str()?);
        }
        if let Some(d) = self.dummy() {
            let keys: Vec<String> = keys.extract()?;
            return Ok(py.detach(|| d.exist(&keys)));
        }
        Ok(match self.session() {
            Ok(s) => s
                .run(py, s.client.batch_exist_keys(batch))
                .into_iter()
                .map(exist_code)
                .collect(),
            Err(e) => vec![codes::code(&e); batch.len()],
        })
    }

    pub(super) fn get_size_impl(&self, py: Python<'_>, key: &str) -> i64 {
        if let Some(d) = self.dummy() {
            return py.detach(|| d.get_size(key));
        }
        codes::amount(
            self.session()
                .and_then(|s| s.run(py, s.client.get_size(key))),
        )
    }

    pub(super) fn remove_impl(&self, py: Python<'_>, key: &str, force: bool) -> i32 {
        if let Some(d) = self.dummy() {
            let keys = [key.to_string()];
            return py.detach(|| d.remove(&keys, force))[0];
        }
        codes::status(
            &self
                .session()
                .and_then(|s| s.run(py, s.client.remove(key, force))),
        )
    }

    /// One code per key: 0 removed, -704 missing, -706 leased (unless `force`).
    pub(super) fn batch_remove_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        force: bool,
    ) -> Vec<i32> {
        if let Some(d) = self.dummy() {
            return py.detach(|| d.remove(keys, force));
        }
        match self.session() {
            Ok(s) => s
                .run(py, s.client.batch_remove(keys, force))
                .iter()
                .map(codes::status)
                .collect(),
            Err(e) => vec![codes::code(&e); keys.len()],
        }
    }

    /// Per key: `Ok((size, replicas))` or the code; the same for both modes.
    pub(super) fn replica_descs_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
    ) -> Vec<Result<(u64, Vec<ReplicaView>), MooncakeError>> {
        if let Some(d) = self.dummy() {
            return py.detach(|| d.replica_descs(keys));
        }
        match self.session() {
            Ok(s) => s
                .run(py, s.client.replica_descs(keys))
                .into_iter()
                .map(|r| r.map(|(reps, size)| (size, reps.iter().map(replica_view).collect())))
                .collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    pub(super) fn remove_all_impl(&self, py: Python<'_>, force: bool) -> i64 {
        if let Some(d) = self.dummy() {
            return py.detach(|| d.remove_all(force));
        }
        codes::amount(
            self.session()
                .and_then(|s| s.run(py, s.client.remove_all(force))),
        )
    }

    pub(super) fn remove_by_regex_impl(&self, py: Python<'_>, pattern: &str, force: bool) -> i64 {
        if let Some(d) = self.dummy() {
            return py.detach(|| d.remove_by_regex(pattern, force));
        }
        codes::amount(
            self.session()
                .and_then(|s| s.run(py, s.client.remove_by_regex(pattern, force))),
        )
    }

    /// 0 healthy, 1 not set up or closed, 2 master unreachable.
    pub(super) fn health_impl(&self, py: Python<'_>) -> i32 {
        if let Some(d) = self.dummy() {
            return py.detach(|| d.health());
        }
        match self.session() {
            Ok(s) if !s.is_closed() => s.run(py, s.client.health()) as i32,
            _ => Health::NotSetUp as i32,
        }
    }

    /// The location cache's counters (`hits`, `misses`, `stale`, `entries`); empty
    /// before `setup()` and after `close()`. A dummy store answers the real client's
    /// (the cache lives there and serves every dummy attached to it); empty when the
    /// real client cannot be asked.
    pub(super) fn location_cache_stats_impl(&self, py: Python<'_>) -> HashMap<&'static str, u64> {
        let st = if let Some(d) = self.dummy() {
            match py.detach(|| d.location_cache_stats()) {
                Some(st) => st,
                None => return HashMap::new(),
            }
        } else {
            let Ok(s) = self.session() else {
                return HashMap::new();
            };
            s.client.location_cache_stats()
        };
        HashMap::from([
            ("hits", st.hits),
            ("misses", st.misses),
            ("stale", st.stale),
            ("entries", st.entries),
        ])
    }

    pub(super) fn hostname_impl(&self) -> String {
        if let Some(d) = self.dummy() {
            return d.hostname();
        }
        self.session()
            .map(|s| s.client.hostname())
            .unwrap_or_default()
    }

    /// Idempotent. Unmounts this client's segment (its objects go) and forgets the
    /// session, so later calls answer "not set up" and `setup()` may be called again.
    pub(super) fn close_impl(&self, py: Python<'_>) -> i32 {
        self.sessions.clear();
        if let Some(c) = self.close_dummy(py) {
            return c;
        }
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

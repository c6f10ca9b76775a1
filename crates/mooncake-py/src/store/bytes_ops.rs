//! The bytes API: values passed as Python buffers, results returned as `bytes` or
//! buffer handles. Values are read in place (no copy on put); a get copies once, from
//! the client's buffer into the `bytes` object Python needs.

use super::session::client_config;
use super::NativeStore;
use crate::handle::BufferHandle;
use crate::pybuf::ReadBuf;
use crate::replicate::{placement_of, ReplicateConfig};
use mooncake_common::MooncakeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// Which write a single-value put performs.
#[derive(Clone, Copy)]
pub(super) enum WriteMode {
    /// Put-if-absent: an existing key is success and nothing is written.
    Insert,
    /// Insert or replace.
    Upsert,
}

impl NativeStore {
    pub(super) fn put_value(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, ReplicateConfig>>,
        mode: WriteMode,
    ) -> PyResult<Result<(), MooncakeError>> {
        let value = ReadBuf::get("value", value)?;
        Ok((|| {
            let rc = client_config(placement_of(config)?);
            let s = self.session()?;
            let bytes = value.as_slice();
            match mode {
                WriteMode::Insert => s.run(py, s.client.put(key, bytes, &rc)),
                WriteMode::Upsert => s.run(py, s.client.upsert(key, bytes, &rc)),
            }
        })())
    }

    pub(super) fn put_parts_impl(
        &self,
        py: Python<'_>,
        key: &str,
        parts: &Bound<'_, PyTuple>,
        config: Option<&Bound<'_, ReplicateConfig>>,
    ) -> PyResult<Result<(), MooncakeError>> {
        let bufs = parts
            .iter()
            .enumerate()
            .map(|(i, p)| ReadBuf::get(&format!("part {i}"), &p))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((|| {
            if bufs.is_empty() {
                return Err(MooncakeError::invalid("put_parts(): no parts given"));
            }
            let rc = client_config(placement_of(config)?);
            let s = self.session()?;
            let slices: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
            s.run(py, s.client.put_parts(key, &slices, &rc))
        })())
    }

    /// `put_batch`: 0 when every value was stored, else the first failure's code.
    pub(super) fn put_batch_impl(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        values: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, ReplicateConfig>>,
    ) -> PyResult<Result<(), MooncakeError>> {
        let bufs = values
            .try_iter()?
            .enumerate()
            .map(|(i, v)| ReadBuf::get(&format!("values[{i}]"), &v?))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((|| {
            if bufs.len() != keys.len() {
                return Err(MooncakeError::invalid(format!(
                    "put_batch(): {} keys but {} values",
                    keys.len(),
                    bufs.len()
                )));
            }
            let rc = client_config(placement_of(config)?);
            let s = self.session()?;
            let slices: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
            s.run(py, s.client.put_batch(&keys, &slices, &rc))
                .into_iter()
                .find_map(Result::err)
                .map_or(Ok(()), Err)
        })())
    }

    pub(super) fn get_value(&self, py: Python<'_>, key: &str) -> Result<Vec<u8>, MooncakeError> {
        let s = self.session()?;
        s.run(py, s.client.get(key))
    }

    pub(super) fn get_values(
        &self,
        py: Python<'_>,
        keys: &[String],
    ) -> Vec<Result<Vec<u8>, MooncakeError>> {
        match self.session() {
            Ok(s) => s.run(py, s.client.get_batch(keys)),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// A get result as a handle, or `None` on any failure.
pub(super) fn handle_of(r: Result<Vec<u8>, MooncakeError>) -> Option<BufferHandle> {
    r.ok().map(BufferHandle::new)
}

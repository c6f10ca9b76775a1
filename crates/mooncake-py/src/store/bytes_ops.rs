//! The bytes API: values passed as Python buffers, results returned as `bytes` or
//! buffer handles. Values are read in place (no copy on put); a get copies once, from
//! the client's buffer into the `bytes` object Python needs.

use super::NativeStore;
use crate::handle::BufferHandle;
use crate::pybuf::ReadBuf;
use crate::replicate::{placement_of, ReplicateConfig};
use mooncake_common::{ErrorCode, MooncakeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::dummy::from_code;

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
            let rc = placement_of(config)?;
            if let Some(d) = self.dummy() {
                let upsert = matches!(mode, WriteMode::Upsert);
                let item = [(key, vec![value.as_slice()])];
                let c = py.detach(|| d.put_values(&item, &rc, upsert))[0];
                return from_code(c, &format!("put {key:?}"));
            }
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
        mode: WriteMode,
    ) -> PyResult<Result<(), MooncakeError>> {
        let bufs = parts
            .iter()
            .enumerate()
            .map(|(i, p)| ReadBuf::get(&format!("part {i}"), &p))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((|| {
            let upsert = matches!(mode, WriteMode::Upsert);
            let what = if upsert { "upsert_parts" } else { "put_parts" };
            if bufs.is_empty() {
                return Err(MooncakeError::invalid(format!("{what}(): no parts given")));
            }
            let rc = placement_of(config)?;
            let slices: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
            if let Some(d) = self.dummy() {
                let item = [(key, slices)];
                let c = py.detach(|| d.put_values(&item, &rc, upsert))[0];
                return from_code(c, &format!("{what} {key:?}"));
            }
            let s = self.session()?;
            if upsert {
                s.run(py, s.client.upsert_parts(key, &slices, &rc))
            } else {
                s.run(py, s.client.put_parts(key, &slices, &rc))
            }
        })())
    }

    /// `put_batch` / `upsert_batch`: 0 when every value was stored, else the first
    /// failure's code.
    pub(super) fn put_batch_impl(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        values: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, ReplicateConfig>>,
        mode: WriteMode,
    ) -> PyResult<Result<(), MooncakeError>> {
        let upsert = matches!(mode, WriteMode::Upsert);
        let what = if upsert { "upsert_batch" } else { "put_batch" };
        let bufs = values
            .try_iter()?
            .enumerate()
            .map(|(i, v)| ReadBuf::get(&format!("values[{i}]"), &v?))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((|| {
            if bufs.len() != keys.len() {
                return Err(MooncakeError::invalid(format!(
                    "{what}(): {} keys but {} values",
                    keys.len(),
                    bufs.len()
                )));
            }
            let rc = placement_of(config)?;
            let slices: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
            if let Some(d) = self.dummy() {
                let items: Vec<(&str, Vec<&[u8]>)> = keys
                    .iter()
                    .zip(&slices)
                    .map(|(k, v)| (k.as_str(), vec![*v]))
                    .collect();
                let codes = py.detach(|| d.put_values(&items, &rc, upsert));
                let first = codes.into_iter().find(|&c| c != 0).unwrap_or(0);
                return from_code(first, what);
            }
            let s = self.session()?;
            let results = if upsert {
                s.run(py, s.client.upsert_batch(&keys, &slices, &rc))
            } else {
                s.run(py, s.client.put_batch(&keys, &slices, &rc))
            };
            results
                .into_iter()
                .find_map(Result::err)
                .map_or(Ok(()), Err)
        })())
    }

    /// `get()`: the object read straight into a new `bytes` (allocated once its size is
    /// known, so the value is copied once, not into a buffer and then into the
    /// `bytes`; at 32 MiB both buffers are fresh mmaps and the second copy doubled the
    /// page faults too). The GIL is released for the lookup and for the read.
    pub(super) fn get_bytes<'py>(
        &self,
        py: Python<'py>,
        key: &str,
    ) -> Result<Bound<'py, PyBytes>, MooncakeError> {
        if let Some(d) = self.dummy() {
            let keys = [key.to_string()];
            let v = py.detach(|| d.get_values(&keys)).pop().unwrap_or_else(|| {
                Err(MooncakeError::new(ErrorCode::InternalError, "no result"))
            })?;
            return Ok(PyBytes::new(py, &v));
        }
        let s = self.session()?;
        // A remembered object is read speculatively into a `bytes` of the remembered
        // size while its lookup runs; kept when the lookup names the same allocation.
        let mut spare = None;
        let guess = s
            .client
            .remembered_size(key)
            .and_then(|n| isize::try_from(n).ok());
        let loc = match guess {
            Some(size) => {
                let (obj, buf) = new_bytes(py, key, size)?;
                // SAFETY: `buf` holds `size` writable bytes while `obj` lives; with the
                // GIL released nobody else can reach the object.
                let found = s.run(py, unsafe {
                    s.client.locate_one_reading(key, buf, size as usize)
                })?;
                match found {
                    None => return Ok(obj),
                    Some(loc) => {
                        spare = Some((obj, buf, size));
                        loc
                    }
                }
            }
            None => s.run(py, s.client.locate_one(key))?,
        };
        let size = isize::try_from(loc.size()).map_err(|_| {
            MooncakeError::invalid(format!("get {key:?}: {} bytes do not fit", loc.size()))
        })?;
        let (obj, buf) = match spare {
            Some((obj, buf, n)) if n == size => (obj, buf),
            _ => new_bytes(py, key, size)?,
        };
        // SAFETY: `buf` holds `size` writable bytes while `obj` lives (it outlives the
        // call); with the GIL released nobody else can reach the object.
        s.run(py, unsafe { s.client.read_location(&loc, buf) })?;
        Ok(obj)
    }

    pub(super) fn get_value(&self, py: Python<'_>, key: &str) -> Result<Vec<u8>, MooncakeError> {
        if let Some(d) = self.dummy() {
            let keys = [key.to_string()];
            return py
                .detach(|| d.get_values(&keys))
                .pop()
                .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")));
        }
        let s = self.session()?;
        s.run(py, s.client.get(key))
    }

    pub(super) fn get_values(
        &self,
        py: Python<'_>,
        keys: &[String],
    ) -> Vec<Result<Vec<u8>, MooncakeError>> {
        if let Some(d) = self.dummy() {
            return py.detach(|| d.get_values(keys));
        }
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

/// A new, uninitialised `bytes` of `size` bytes and the address of its buffer. Nobody
/// else sees it until the caller returns it, filled completely (or drops it).
fn new_bytes<'py>(
    py: Python<'py>,
    key: &str,
    size: isize,
) -> Result<(Bound<'py, PyBytes>, usize), MooncakeError> {
    // SAFETY: a fresh object owned by the returned handle; its buffer is written only
    // by our reads before anyone else can see it.
    unsafe {
        let ptr = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        if ptr.is_null() {
            let _ = PyErr::take(py);
            return Err(MooncakeError::new(
                ErrorCode::InternalError,
                format!("get {key:?}: cannot allocate {size} bytes"),
            ));
        }
        let buf = pyo3::ffi::PyBytes_AsString(ptr) as usize;
        Ok((
            Bound::from_owned_ptr(py, ptr).cast_into_unchecked::<PyBytes>(),
            buf,
        ))
    }
}

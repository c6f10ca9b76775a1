//! Reading the bytes of any Python buffer object (bytes, bytearray, memoryview, numpy
//! arrays, ...) without copying, so `put(key, value)` hands the caller's memory
//! straight to the client. The export is held for the whole call, which also stops a
//! bytearray from being resized underneath us while the GIL is released.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// A held `PyBUF_SIMPLE` export: contiguous raw bytes whatever the item format.
pub struct ReadBuf {
    view: Box<ffi::Py_buffer>,
}

// SAFETY: the export pins the memory; it is released (which needs the GIL) in Drop, and
// callers drop it only on a thread that holds the GIL (the binding method's own).
unsafe impl Send for ReadBuf {}
unsafe impl Sync for ReadBuf {}

impl ReadBuf {
    /// Exports `obj`'s buffer. Objects without the buffer protocol, or whose buffer is
    /// not contiguous, are a `TypeError` naming the argument.
    pub fn get(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<ReadBuf> {
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: obj is a live object and view points to writable storage.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            let cause = PyErr::take(obj.py());
            let tname = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into());
            let err = PyTypeError::new_err(format!(
                "{what} must be a contiguous bytes-like object, got {tname}"
            ));
            if let Some(c) = cause {
                err.set_cause(obj.py(), Some(c));
            }
            return Err(err);
        }
        Ok(ReadBuf { view })
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.view.len <= 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter guarantees [buf, buf+len) is readable while exported.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer. Release needs
        // the GIL; take it (a no-op cost when the thread already holds it).
        Python::attach(|_| unsafe { ffi::PyBuffer_Release(&mut *self.view) });
    }
}

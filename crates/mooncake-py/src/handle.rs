//! `BufferHandle`: what `get_buffer` / `batch_get_buffer` return. It owns the bytes the
//! client read (no second copy) and exposes them through the buffer protocol, so
//! `memoryview(h)`, `bytes(h)`, `numpy.frombuffer(h)` and `torch.frombuffer(h)` work,
//! plus the reference's `ptr()` and `size()`.

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

/// An owned, fixed-size byte buffer. The bytes live in a leaked boxed slice so their
/// address never changes and writes through exported views do not alias a Rust borrow.
#[pyclass(module = "mooncake.store", frozen)]
pub struct BufferHandle {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the handle exclusively owns its allocation; Python code reaches the bytes only
// through buffer views, which is the same sharing any bytearray allows.
unsafe impl Send for BufferHandle {}
unsafe impl Sync for BufferHandle {}

impl BufferHandle {
    pub fn new(data: Vec<u8>) -> BufferHandle {
        let boxed: Box<[u8]> = data.into_boxed_slice();
        let len = boxed.len();
        // A zero-length box has a dangling (non-null) pointer, which is fine to export.
        let ptr = NonNull::new(Box::into_raw(boxed) as *mut u8).expect("Box pointer is non-null");
        BufferHandle { ptr, len }
    }
}

impl Drop for BufferHandle {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from Box::into_raw of a boxed slice of this length; views
        // keep the handle alive (view.obj), so none can outlive this drop.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            )))
        };
    }
}

#[pymethods]
impl BufferHandle {
    /// Address of the first byte (valid while the handle is alive).
    fn ptr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    fn size(&self) -> usize {
        self.len
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __repr__(&self) -> String {
        format!("BufferHandle(ptr=0x{:x}, size={})", self.ptr(), self.len)
    }

    /// A one-dimensional, writable, C-contiguous view of unsigned bytes.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("BufferHandle: null Py_buffer"));
        }
        let (ptr, len) = {
            let h = slf.get();
            (h.ptr.as_ptr(), h.len)
        };
        // SAFETY: CPython passes a valid, writable Py_buffer; we fill every field.
        unsafe {
            (*view).obj = slf.into_any().into_ptr();
            (*view).buf = ptr as *mut c_void;
            (*view).len = len as ffi::Py_ssize_t;
            (*view).readonly = 0;
            (*view).itemsize = 1;
            (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
                c"B".as_ptr() as *mut _
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
                &mut (*view).len
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                &mut (*view).itemsize
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

//! `MooncakeHostMemAllocator`: page-aligned host memory for SGLang's host KV pool
//! (`alloc(size) -> ptr`, `free(ptr) -> int`). Anonymous mmap, so a pool of tens of GB
//! costs nothing until touched and is page-aligned for registration.

use mooncake_common::ErrorCode;
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

#[pyclass(module = "mooncake.store")]
#[derive(Default)]
pub struct MooncakeHostMemAllocator {
    /// address -> length of every live mapping, for `free`. Blocks not freed stay
    /// mapped for the life of the process (tensors built on them may outlive us).
    live: Mutex<HashMap<usize, usize>>,
}

#[pymethods]
impl MooncakeHostMemAllocator {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Maps `size` zeroed bytes and returns their address.
    fn alloc(&self, size: usize) -> PyResult<usize> {
        if size == 0 {
            return Err(PyValueError::new_err("alloc(size): size must be > 0"));
        }
        // SAFETY: an anonymous private mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(PyMemoryError::new_err(format!(
                "alloc({size}): mmap failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        let addr = p as usize;
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr, size);
        Ok(addr)
    }

    /// Unmaps a block from `alloc`. 0, or -600 for an address this allocator never gave.
    fn free(&self, ptr: usize) -> i32 {
        let len = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ptr);
        match len {
            // SAFETY: (ptr, len) is a mapping this allocator created and still owned.
            Some(len) => unsafe { libc::munmap(ptr as *mut libc::c_void, len) },
            None => ErrorCode::InvalidParams.code(),
        }
    }
}

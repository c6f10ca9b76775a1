//! `MooncakeHostMemAllocator`: page-aligned host memory for SGLang's host KV pool
//! (`alloc(size) -> ptr`, `free(ptr) -> int`). The memory is shared (a memfd), so a
//! store in dummy mode (`setup_dummy`) can hand it to the node's real client, which
//! maps the same pages and moves bytes between them and the pool with no copy in
//! this process; an embedded store registers it like any other memory. A pool of
//! tens of GB costs nothing until touched.

use mooncake_common::ErrorCode;
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;

#[pyclass(module = "mooncake.store")]
#[derive(Default)]
pub struct MooncakeHostMemAllocator {}

#[pymethods]
impl MooncakeHostMemAllocator {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Maps `size` zeroed bytes of shared memory and returns their address.
    fn alloc(&self, size: usize) -> PyResult<usize> {
        if size == 0 {
            return Err(PyValueError::new_err("alloc(size): size must be > 0"));
        }
        mooncake_realclient::shm::alloc(size).map_err(|e| {
            PyMemoryError::new_err(format!("alloc({size}): cannot map shared memory: {e}"))
        })
    }

    /// Unmaps a block from `alloc`. 0, or -600 for an address no allocator gave.
    /// A real client that mapped it unmaps it at the dummy's next pointer call (or
    /// when the dummy closes).
    fn free(&self, ptr: usize) -> i32 {
        if mooncake_realclient::shm::free(ptr) {
            0
        } else {
            ErrorCode::InvalidParams.code()
        }
    }
}

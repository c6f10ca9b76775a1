//! Dummy mode (`setup_dummy`): the store object forwards every call to the node's
//! real client (`mooncake_client`) instead of running a client of its own. Pointer
//! calls on `MooncakeHostMemAllocator` memory send addresses only (the real client
//! maps the same shared pool); values passed as Python buffers travel in the request.
//! A real client that is gone answers RPC_FAIL (-900) at once; the next call after it
//! returns connects again.

use super::NativeStore;
use mooncake_common::{ErrorCode, MooncakeError};
use mooncake_realclient::DummyClient;
use pyo3::prelude::*;
use std::sync::Arc;

/// A code from the real client as a result.
pub(super) fn from_code(c: i32, what: &str) -> Result<(), MooncakeError> {
    if c == 0 {
        Ok(())
    } else {
        Err(MooncakeError::new(
            ErrorCode::from_code(c),
            what.to_string(),
        ))
    }
}

/// A count or size from the real client as a result.
pub(super) fn from_amount(n: i64, what: &str) -> Result<u64, MooncakeError> {
    u64::try_from(n)
        .map_err(|_| MooncakeError::new(ErrorCode::from_code(n as i32), what.to_string()))
}

impl NativeStore {
    /// The dummy connection, when this store was set up with `setup_dummy`.
    pub(super) fn dummy(&self) -> Option<Arc<DummyClient>> {
        self.dummy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn setup_dummy_impl(
        &self,
        py: Python<'_>,
        mem_pool_size: u64,
        local_buffer_size: u64,
        server_address: &str,
    ) -> Result<(), MooncakeError> {
        // The sizes are the reference's: its dummy pre-allocates a pool and a staging
        // buffer. Here the caller's pools come from MooncakeHostMemAllocator and values
        // need no staging, so they are only accepted.
        let _ = (mem_pool_size, local_buffer_size);
        let set_up = self
            .session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            || self.dummy().is_some();
        if set_up {
            return Err(MooncakeError::invalid(
                "setup_dummy(): this store is already set up; call close() first",
            ));
        }
        let addr = server_address.to_string();
        let d = py.detach(|| DummyClient::connect(&addr))?;
        let mut slot = self.dummy.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(MooncakeError::invalid(
                "setup_dummy(): this store is already set up; call close() first",
            ));
        }
        *slot = Some(Arc::new(d));
        Ok(())
    }

    /// Forgets the dummy connection (saying goodbye); `None` when there was none.
    pub(super) fn close_dummy(&self, py: Python<'_>) -> Option<i32> {
        let d = self
            .dummy
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        py.detach(|| d.close());
        Some(0)
    }
}

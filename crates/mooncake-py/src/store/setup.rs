//! `setup()`: turning the (already normalised) arguments into a client configuration,
//! starting the runtime and connecting. The positional / keyword / dict forms are
//! sorted out in Python (`mooncake/_setup_args.py`); this is the native end.

use super::session::Session;
use super::NativeStore;
use crate::runtime;
use mooncake_client::Client;
use mooncake_common::config::{NodeConfig, Protocol};
use mooncake_common::size::parse_size;
use mooncake_common::{ErrorCode, MooncakeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};
use std::sync::Arc;

/// A size argument: a non-negative int, or a size string such as `"16MB"`.
fn size_arg(what: &str, v: &Bound<'_, PyAny>) -> Result<u64, MooncakeError> {
    if v.is_instance_of::<PyString>() {
        let s: String = v
            .extract()
            .map_err(|e: PyErr| MooncakeError::invalid(e.to_string()))?;
        return parse_size(what, &s).map_err(|e| MooncakeError::invalid(e.0));
    }
    if !v.is_instance_of::<PyBool>() {
        if let Ok(n) = v.extract::<u64>() {
            return Ok(n);
        }
    }
    let shown = v.repr().map(|r| r.to_string()).unwrap_or_default();
    Err(MooncakeError::invalid(format!(
        "invalid size for {what}: {shown} (use a non-negative int or a string like \"16MB\")"
    )))
}

/// The normalised `setup()` arguments.
pub struct SetupArgs<'py> {
    pub local_hostname: String,
    pub metadata_server: String,
    pub global_segment_size: Bound<'py, PyAny>,
    pub local_buffer_size: Bound<'py, PyAny>,
    pub protocol: String,
    pub device_name: String,
    pub master_server_address: String,
    /// The SSD tier's directory and switch, when `setup()` was given them.
    pub ssd_offload_path: Option<String>,
    pub enable_ssd_offload: Option<bool>,
    /// The tenant the caller declares (`tenant_id=`), if it named one.
    pub tenant_id: Option<String>,
}

impl SetupArgs<'_> {
    /// Validates what can be checked before touching the network; every message
    /// names the argument at fault.
    pub fn node_config(&self) -> Result<NodeConfig, MooncakeError> {
        let required = |name: &str, v: &str| {
            if v.trim().is_empty() {
                Err(MooncakeError::invalid(format!(
                    "setup(): {name} is required"
                )))
            } else {
                Ok(())
            }
        };
        required("local_hostname", &self.local_hostname)?;
        required("metadata_server", &self.metadata_server)?;
        required("master_server_address", &self.master_server_address)?;
        let protocol =
            Protocol::parse("protocol", &self.protocol).map_err(|e| MooncakeError::invalid(e.0))?;
        Ok(NodeConfig {
            master_server_address: self.master_server_address.trim().to_string(),
            metadata_server: self.metadata_server.trim().to_string(),
            global_segment_size: size_arg("global_segment_size", &self.global_segment_size)?,
            local_buffer_size: size_arg("local_buffer_size", &self.local_buffer_size)?,
            protocol,
            device_name: self.device_name.trim().to_string(),
            local_hostname: self.local_hostname.trim().to_string(),
        })
    }
}

impl NativeStore {
    /// Connects; 0 or a contract code. A bad argument is INVALID_PARAMS with its
    /// message returned alongside, for the Python side to log.
    pub(super) fn setup_impl(
        &self,
        py: Python<'_>,
        args: SetupArgs<'_>,
    ) -> Result<(), MooncakeError> {
        let node = args.node_config()?;
        let has_segment = node.global_segment_size > 0;
        let (ssd_path, ssd_enable) = (args.ssd_offload_path.clone(), args.enable_ssd_offload);
        let already =
            || MooncakeError::invalid("setup(): this store is already set up; call close() first");
        if self
            .session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            || self.dummy().is_some()
        {
            return Err(already());
        }
        let rt = runtime::build().map_err(|e| {
            MooncakeError::new(
                ErrorCode::InternalError,
                format!("cannot start the runtime: {e}"),
            )
        })?;
        // Connect without holding the lock: other threads keep getting "not set up"
        // answers instead of waiting on it with the GIL held.
        let master_addr = node.master_server_address.clone();
        let mut cfg = crate::config::client_config(node);
        if let Some(t) = args.tenant_id.clone().filter(|t| !t.trim().is_empty()) {
            cfg.tuning.tenant_id = Some(t.trim().to_string());
        }
        let client = runtime::block_on(py, &rt, Client::connect(cfg))?;
        // A segment's owner copies objects out of it when the master asks (drains,
        // copy and move tasks); the worker ends with the client.
        // (An HA `etcd://` address: drains run only on a master without HA.)
        if !master_addr.contains("://") {
            let _rt = rt.enter();
            let _ = client.spawn_drain_worker(&master_addr);
        }
        // The SSD tier (keywords, else MOONCAKE_OFFLOAD_* environment): it holds copies
        // of this process's objects, so it needs a segment and a master without HA; a
        // bad directory or capacity fails setup() with a message naming it.
        let tier_wanted =
            ssd_enable == Some(true) || ssd_path.as_deref().is_some_and(|p| !p.trim().is_empty());
        if has_segment && !master_addr.contains("://") {
            let _rt = rt.enter();
            if let Err(e) = client.start_tier_with(&master_addr, ssd_path, ssd_enable) {
                runtime::block_on(py, &rt, async { client.close().await.ok() });
                return Err(MooncakeError::invalid(format!("setup(): {e}")));
            }
        } else if tier_wanted {
            eprintln!(
                "mooncake: setup(): an SSD tier needs a segment (global_segment_size > 0) and a master without HA; none started"
            );
        }
        let session = Arc::new(Session::new(client, rt));
        let mut slot = self.session.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            drop(slot);
            session.close(py);
            return Err(already());
        }
        *slot = Some(session);
        Ok(())
    }
}

//! `mooncake.engine.TransferEngine`: a transfer engine started from Python, as SGLang
//! does before it builds the store (`initialize(host, metadata, protocol, device)`,
//! `get_rpc_port()`, `get_engine()`).
//!
//! The engine is real (it listens, and publishes its segment to the metadata service).
//! `setup(..., engine)` accepts what `get_engine()` returns, but the store's client still
//! starts its own engine: the client API has no way to adopt one. SGLang names the
//! store after this engine (`host:rpc_port`); since that port is taken, `setup()` then
//! registers the store under the same host with a port of its own.

use crate::codes;
use crate::runtime;
use mooncake_common::config::Protocol;
use mooncake_common::{hostname, ErrorCode};
use mooncake_transfer::TransferConfig;
use pyo3::prelude::*;
use std::sync::{Arc, Mutex};

struct Started {
    engine: Arc<mooncake_transfer::TransferEngine>,
    rt: tokio::runtime::Runtime,
}

impl Drop for Started {
    fn drop(&mut self) {
        let engine = self.engine.clone();
        self.rt.block_on(async move { engine.shutdown().await });
    }
}

/// What `get_engine()` returns: an opaque reference `setup()` accepts as `engine`.
#[pyclass(module = "mooncake.engine", frozen)]
pub struct EngineRef {
    segment: String,
}

#[pymethods]
impl EngineRef {
    /// The segment name (`host:port`) the engine publishes.
    #[getter]
    fn segment_name(&self) -> &str {
        &self.segment
    }

    fn __repr__(&self) -> String {
        format!("<mooncake TransferEngine {}>", self.segment)
    }
}

#[pyclass(module = "mooncake.engine")]
#[derive(Default)]
pub struct TransferEngine {
    started: Mutex<Option<Started>>,
}

fn bind_ip_for(host: &str) -> String {
    match host {
        "" | "localhost" => "127.0.0.1".to_string(),
        h if h.parse::<std::net::IpAddr>().is_ok() => h.to_string(),
        // A DNS name: listen everywhere and let peers resolve the name.
        _ => "0.0.0.0".to_string(),
    }
}

#[pymethods]
impl TransferEngine {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Starts the engine; 0, or a negative code (a second call is INVALID_PARAMS).
    fn initialize(
        &self,
        py: Python<'_>,
        local_hostname: &str,
        metadata_server: &str,
        protocol: &str,
        device_name: &str,
    ) -> i32 {
        let mut slot = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return codes::INVALID;
        }
        let Ok(protocol) = Protocol::parse("protocol", protocol) else {
            return codes::INVALID;
        };
        let (host, port) = hostname::split_host_port(local_hostname.trim());
        let mut cfg = TransferConfig::new(local_hostname.trim());
        cfg.bind_ip = bind_ip_for(host);
        cfg.port = port.unwrap_or(0);
        cfg.metadata = if metadata_server.trim().is_empty() {
            mooncake_common::config::P2P_HANDSHAKE.to_string()
        } else {
            metadata_server.trim().to_string()
        };
        cfg.protocol = protocol;
        cfg.devices = device_name.trim().to_string();
        let Ok(rt) = runtime::build() else {
            return ErrorCode::InternalError.code();
        };
        let started = runtime::block_on(py, &rt, async move {
            let engine = mooncake_transfer::TransferEngine::start(cfg).await?;
            engine.publish().await?;
            Ok::<_, mooncake_transfer::TransferError>(engine)
        });
        match started {
            Ok(engine) => {
                *slot = Some(Started { engine, rt });
                0
            }
            Err(e) => e.code().code(),
        }
    }

    /// The port of the engine's data listener; -1 before `initialize()`.
    fn get_rpc_port(&self) -> i32 {
        let slot = self.started.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .and_then(|s| hostname::split_host_port(&s.engine.endpoint()).1)
            .map_or(-1, i32::from)
    }

    /// `host:port` this engine publishes; "" before `initialize()`.
    fn get_local_hostname(&self) -> String {
        let slot = self.started.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .map(|s| s.engine.segment_name().to_string())
            .unwrap_or_default()
    }

    /// An opaque reference for `MooncakeDistributedStore.setup(..., engine)`.
    fn get_engine(&self) -> Option<EngineRef> {
        let slot = self.started.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|s| EngineRef {
            segment: s.engine.segment_name().to_string(),
        })
    }
}

//! The Mooncake transfer engine: moves bytes between this process's memory and the
//! registered memory of a peer, over TCP (pooled, pipelined, striped across
//! connections and NICs) or RDMA (cargo feature `rdma`).
//!
//! Layout:
//! - [`engine`]: [`TransferEngine`], the public entry point (start, register, publish,
//!   transfer, submit, shutdown).
//! - [`batch`]: the batch driver (slicing, dispatch, retry on another path) and
//!   [`Batch`] for submit-then-poll use.
//! - [`memory`]: registered regions, bounds checks.
//! - [`segment`]: segment descriptors (JSON) and their metadata keys.
//! - [`metadata`]: the metadata trait and its P2PHANDSHAKE / HTTP / etcd backends.
//! - [`tcp`]: framing, listener, pipelined connections, connection pool.
//! - [`nic`]: local interface discovery and `MOONCAKE_DEVICE` selection.
//! - `rdma` (feature `rdma`): verbs behind a trait, QP state machine, NIC slicing.
//! - [`config`], [`errors`], [`metrics`].

pub mod batch;
pub mod config;
pub mod engine;
pub mod errors;
mod local;
pub mod memory;
pub mod metadata;
pub mod metrics;
pub mod nic;
#[cfg(feature = "rdma")]
pub mod rdma;
pub mod segment;
pub mod tcp;

pub use batch::{Batch, RequestStatus};
pub use config::{TcpTuning, TransferConfig};
pub use engine::TransferEngine;
pub use errors::TransferError;
pub use local::{ControlHandler, ReadSource, SourceBytes};
pub use metrics::MetricsSnapshot;
pub use segment::SegmentDescriptor;

/// Direction of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Remote -> local.
    Read,
    /// Local -> remote.
    Write,
}

/// One transfer: `length` bytes between `local_addr` in this process and `remote_addr`
/// in the registered memory of segment `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    pub opcode: Opcode,
    pub local_addr: usize,
    pub length: usize,
    /// Remote segment name.
    pub target: String,
    /// `ip:port` hint from the master; skips the metadata lookup.
    pub target_endpoint: Option<String>,
    /// Absolute address inside the target's registered memory.
    pub remote_addr: u64,
    /// The grant the master issued for the remote allocation (`tcp::grant`); a data
    /// port that checks grants serves a tenant's peer only inside one. `None`: none
    /// sent (the cluster tenant, or no authentication).
    pub grant: Option<std::sync::Arc<Vec<u8>>>,
}

/// Whether the RDMA transport can run with these devices.
#[cfg(feature = "rdma")]
pub(crate) fn rdma_probe(devices: &str) -> Result<(), TransferError> {
    rdma::probe(devices).map(|_| ())
}

#[cfg(not(feature = "rdma"))]
pub(crate) fn rdma_probe(_devices: &str) -> Result<(), TransferError> {
    Err(TransferError::Rdma(
        "protocol rdma requested, but this build has no RDMA support (rebuild mooncake-transfer with --features rdma)".into(),
    ))
}

//! The RDMA transport (cargo feature `rdma`).
//!
//! Layout:
//! - [`verbs`]: the [`verbs::Verbs`] trait, the only place that talks to hardware;
//!   [`ibverbs`] implements it with libibverbs, [`fake`] in memory for tests.
//! - [`device`]: device discovery and `MOONCAKE_DEVICE` selection.
//! - [`qp`]: the RC queue-pair state machine.
//! - [`plan`]: slicing a request into work requests across NIC pairs.
//! - [`transport`]: registration per NIC, handshake, posting, completion worker, retry.
//! - [`path`]: the object-safe face the engine uses, with a per-peer cache.

pub mod device;
pub mod fake;
pub mod ibverbs;
pub mod path;
pub mod plan;
pub mod qp;
pub mod transport;
pub mod verbs;

pub use device::probe;
pub use path::{RdmaEngine, RdmaPath};

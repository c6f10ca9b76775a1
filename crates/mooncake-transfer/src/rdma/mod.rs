//! The RDMA transport (cargo feature `rdma`).
//!
//! Layout:
//! - [`verbs`]: the [`verbs::Verbs`] trait, the only place that talks to hardware, with
//!   the libibverbs implementation ([`ibverbs`]) and a fake ([`fake`]) for tests.
//! - [`device`]: device discovery and `MOONCAKE_DEVICE` selection.

pub mod device;

pub use device::probe;

//! The Mooncake Rust client: put/get/exist/remove through the master (gRPC control
//! plane) and the transfer engine (data plane), with a same-host shared-memory fast path.
//!
//! Layout (each module has one job):
//! - [`config`]: `ClientConfig`, `ClientTuning`, `ReplicateConfig`, `SoftPin`,
//!   `Health`; the only module that reads the environment.
//! - `client`: the handle; start-up, identity, health, close, registered buffers.
//! - `put` / `get` / `admin`: the object operations; `write` / `read`: the
//!   batched paths behind them.
//! - `io`: the data path; splits a batch between memcpy (same host) and the engine.
//! - `copy`: the memcpy half of the same-host path (planned and checked, then run).
//! - `shm`: mappings of same-host peers' segment files and their liveness probe.
//! - [`segment`]: the memory a process contributes (file-backed, pre-faulted).
//! - `mount`: mounting that memory at the master and the heartbeat that keeps it.
//! - `rpc`: the master connection (tight connect timeout, per-call deadline).
//! - [`calls`]: typed calls to the master, one method per RPC, over either protocol.
//! - [`transport`]: that connection's transport: [`framed`] (the default) or HTTP/2
//!   gRPC (hyper directly, no buffer task), `ClientTuning::master_protocol`.
//! - [`key_batch`]: keys encoded straight into a batch request (no `String` per key).
//! - [`discovery`]: the HA leader named in etcd (`MOONCAKE_MASTER=etcd://...`).
//! - `buffers`: caller memory registered for zero-copy calls.
//! - `errors`: how statuses, per-item codes and transfer failures become contract codes.
//! - `host`: this host's identity (boot id).

mod admin;
mod buffers;
pub mod calls;
mod client;
pub mod config;
mod copy;
pub mod discovery;
mod errors;
pub mod framed;
mod get;
pub mod host;
mod io;
pub mod key_batch;
mod mount;
mod prefault;
mod put;
mod read;
mod rpc;
pub mod segment;
mod shm;
pub mod transport;
mod write;

pub use client::Client;
pub use config::{ClientConfig, ClientTuning, Health, ReplicateConfig, SoftPin};
pub use errors::MAX_KEY_LEN;
pub use framed::CallMode;
pub use get::Location;
pub use key_batch::KeyBatch;
pub use mooncake_common::{ErrorCode, MooncakeError, Result};
pub use mooncake_transfer::MetricsSnapshot;

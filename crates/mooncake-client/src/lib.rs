//! The Mooncake Rust client: put/get/exist/remove through the master (gRPC control
//! plane) and the transfer engine (data plane), with a same-host shared-memory fast path.
//!
//! Layout (each module has one job):
//! - [`config`]: `ClientConfig`, `ClientTuning`, `ReplicateConfig`, `SoftPin`,
//!   `Health`; the only module that reads the environment.
//! - `client`: the handle; start-up, identity, health, close, registered buffers.
//! - `put` / `get` / `admin`: the object operations; `write` / `read`: the
//!   batched paths behind them.
//! - `locations`: the bounded cache of object locations that gets read from
//!   speculatively while their lookup is in flight (`read.rs` checks the answer).
//! - `io`: the data path; splits a batch between memcpy (same host) and the engine.
//! - `copy`: the memcpy half of the same-host path (planned and checked, then run).
//! - `mount`: mounting this process's segment at the master and the heartbeat that
//!   keeps it. The memory itself, its descriptor and the mappings of same-host peers'
//!   segments are `mooncake-segment`'s (re-exported as [`segment`]).
//! - `drain`: copying this process's objects out when the master drains its segment.
//! - [`tasks`]: copy and move tasks (one object's replica to named segments).
//! - `restart`: leaving to be restarted (segment kept for the next run).
//! - `rpc`: the master connection (tight connect timeout, per-call deadline).
//! - [`calls`]: typed calls to the master, one method per RPC, over either protocol.
//! - [`transport`]: that connection's transport: [`framed`] (the default) or HTTP/2
//!   gRPC (hyper directly, no buffer task), `ClientTuning::master_protocol`.
//! - [`key_batch`]: keys encoded straight into a batch request (no `String` per key).
//! - [`discovery`]: the HA leader named in etcd (`MOONCAKE_MASTER=etcd://...`).
//! - `buffers`: caller memory registered for zero-copy calls.
//! - [`sessions`]: ranged puts and gets in sessions (reserve, write ranges, end).
//! - `errors`: how statuses, per-item codes and transfer failures become contract codes.

mod admin;
pub mod auth;
mod buffers;
pub mod calls;
mod client;
pub mod config;
mod copy;
mod data_auth;
pub mod discovery;
mod drain;
mod errors;
pub mod framed;
mod get;
mod io;
pub mod key_batch;
mod locations;
mod mount;
mod owner_link;
mod put;
mod read;
mod restart;
mod rpc;
pub mod sessions;
pub mod tasks;
mod tier;
pub mod transport;
mod warm;
mod write;

pub use client::Client;
pub use config::{ClientConfig, ClientTuning, Health, ReplicateConfig, SoftPin};
pub use errors::MAX_KEY_LEN;
pub use framed::CallMode;
pub use get::Location;
pub use key_batch::KeyBatch;
pub use locations::LocationCacheStats;
pub use mooncake_common::{ErrorCode, MooncakeError, Result};
/// The memory a process contributes and the mappings of same-host peers' segments,
/// under the path this crate exported them at before they got a crate of their own.
pub use mooncake_segment as segment;
pub use mooncake_tier::TierStats;
pub use mooncake_transfer::MetricsSnapshot;
pub use sessions::{GetTicket, PutTicket};
pub use warm::WarmAhead;

/// This host's identity for the same-host path (kept at its former path).
pub mod host {
    pub use mooncake_segment::host_id;
}

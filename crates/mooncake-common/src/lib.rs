//! Types every Mooncake role shares.
//!
//! Layout:
//! - [`errors`]: the contract's error codes (numeric values are part of the public API).
//! - [`size`]: size strings such as `50gb`, `1.5 GB`, `4194304` (base 1024).
//! - [`duration`]: durations given as plain milliseconds or `500ms`, `10s`, `1m`.
//! - [`config`]: the `MOONCAKE_*` environment and `MOONCAKE_CONFIG_PATH` JSON shared by
//!   the store daemon and the client.
//! - [`hostname`]: `host[:port]` handling for `local_hostname`.
//! - [`auth`]: tokens, challenge-response proofs, tenants and their key namespaces.
//! - [`ports`]: picking a loopback port for a process about to start.
//! - [`types`]: the control plane's domain types (segment descriptors, replication).

pub mod auth;
pub mod config;
pub mod duration;
pub mod errors;
pub mod grant;
pub mod hostname;
pub mod ports;
pub mod size;
pub mod types;

pub use errors::{ErrorCode, MooncakeError, Result};
pub use types::{ReplicateConfig, SegmentDesc, SoftPin};

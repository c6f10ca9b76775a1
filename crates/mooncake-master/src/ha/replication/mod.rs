//! Leader -> standby replication, so that a standby taking over serves the index the
//! leader had (zero-loss failover, docs/ha.md).
//!
//! - `log`: the leader's log of state changes (state-based, idempotent ops with a
//!   sequence number; objects and segments as records), the followers' queues and
//!   acknowledgements, and the wait that makes client-visible mutations synchronous.
//! - `leader`: the `Follow` RPC: a snapshot, then the op stream.
//! - `shadow`: the standby's copy of the leader's state.
//! - `follower`: the standby's task that follows the leader into a shadow.
//! - `dial`: how the standby reaches the leader (TLS with `--tls_cert_file`).
//! - `rebuild`: a new term's master built from a shadow.

mod dial;
pub mod follower;
pub mod leader;
pub mod log;
pub mod rebuild;
pub mod shadow;

pub use log::ReplLog;
pub use shadow::{Shadow, StandbyShadow};

//! High availability (CONTRACT §7): masters elect a leader through etcd; only the
//! leader serves, and only while its lease is provably alive (the fence). A standby
//! answers every RPC with UNAVAILABLE_IN_CURRENT_MODE (-1010) and its admin port with
//! 503. Each term starts a fresh master (new view_id, empty index), so clients and
//! stores re-mount when the leader changes. Design: docs/ha.md.

pub mod election;
pub mod fence;
pub mod service;
pub mod state;

pub use election::{view_key, LEASE_TTL};
pub use fence::Fence;
pub use service::FencedService;
pub use state::HaState;

//! High availability (CONTRACT §7): masters elect a leader through etcd; only the
//! leader serves, and only while its lease is provably alive (the fence). A standby
//! answers every RPC with UNAVAILABLE_IN_CURRENT_MODE (-1010) and its admin port with
//! 503. A standby follows the leader's replication log into a shadow; when it wins,
//! its term's master is rebuilt from that shadow (same view_id, same objects), and
//! the leader answers mutations only once an in-sync standby has them (zero-loss
//! failover). A process that wins without a shadow starts a fresh master (new
//! view_id, empty index), and only when no master holding a shadow is there to win
//! instead (`ready`). Design: docs/ha.md.

pub mod election;
pub mod fence;
pub mod ready;
pub mod replication;
pub mod service;
pub mod state;

pub use election::{view_key, Election, EtcdElection, LocalElection, LEASE_TTL};
pub use fence::Fence;
pub use state::HaState;

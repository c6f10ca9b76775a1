//! The Mooncake master: the only process that knows where objects live.
//!
//! Layout (each module has one job):
//! - `config`: the master's settings with the reference's defaults.
//! - `master`: all state (`Master`) and its operations; `index` (sharded object map),
//!   `segments` (registry + per-segment allocator from `alloc`), `placement` (pure
//!   replica placement), `lease` (clock, leases, pins), `eviction`, `liveness`,
//!   `workers` (background tasks), `errors`.
//! - `api`: the control plane in domain terms (methods, answers, the gate a call
//!   passes); `service`: its protocol edge (the rpc port's accept loop, gRPC and the
//!   framed protocol, the only place wire types meet the master).
//! - `flags`: the gflags-style command line and `--config_path` file that fill `config`.
//! - `ha`: etcd leader election and the fence (`--enable_ha`).
//! - `http` (admin port + metadata server), `metrics` (Prometheus export), `report`
//!   (the 10-second log line), `app` (a whole master process: listeners, signals).
pub mod alloc;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod drain;
pub mod errors;
pub mod eviction;
pub mod flags;
pub mod generation;
pub mod grants;
pub mod ha;
pub mod http;
pub mod index;
pub mod lease;
pub mod liveness;
pub mod master;
pub mod metrics;
pub mod persist;
pub mod placement;
pub mod quota;
pub mod report;
pub mod segments;
pub mod service;
pub mod tenancy;
pub mod tier;
pub mod workers;

pub use master::{KeyInfo, Master, MasterCounters, MasterStats, ReplicaInfo, SegmentInfo};
pub use workers::WorkerHandles;

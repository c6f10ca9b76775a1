//! The Mooncake master: the only process that knows where objects live.
//!
//! Layout (each module has one job):
//! - `config`: the master's settings with the reference's defaults.
//! - `master`: all state (`Master`) and its operations; `index` (sharded object map),
//!   `segments` (registry + per-segment allocator from `alloc`), `placement` (pure
//!   replica placement), `lease` (clock, leases, pins), `eviction`, `liveness`,
//!   `workers` (background tasks), `service` + `server` (gRPC), `framed` (the framed
//!   protocol on the same port), `errors`.
//! - `flags`: the gflags-style command line and `--config_path` file that fill `config`.
//! - `ha`: etcd leader election and the fence (`--enable_ha`).
//! - `http` (admin port + metadata server), `metrics` (Prometheus export), `report`
//!   (the 10-second log line), `app` (a whole master process: listeners, signals).
pub mod alloc;
pub mod app;
pub mod config;
pub mod errors;
pub mod eviction;
pub mod flags;
pub mod framed;
pub mod ha;
pub mod http;
pub mod index;
pub mod lease;
pub mod liveness;
pub mod master;
pub mod metrics;
pub mod placement;
pub mod report;
pub mod segments;
pub mod server;
pub mod service;
pub mod workers;

pub use master::{KeyInfo, Master, MasterCounters, MasterStats, ReplicaInfo, SegmentInfo};
pub use server::serve_grpc;
pub use workers::WorkerHandles;

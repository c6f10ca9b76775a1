//! The Mooncake store daemon (`mooncake_store`): contributes a global segment to the
//! pool and serves `/health` and the reference's REST API on its HTTP port.
//!
//! Layout:
//! - [`config`]: flags over the `MOONCAKE_*` environment.
//! - [`http`]: the HTTP routes.
//! - [`metrics`]: `/metrics`, the store's Prometheus text.
//! - [`daemon`]: start-up, readiness (`MOONCAKE_READY_FILE`), and shutdown on
//!   SIGTERM/SIGINT (unmount first, then exit).
//! - [`waiting`]: until the segment is mounted, which master the store waits for and
//!   why, every few seconds.
//!
//! The segment itself comes through the client: a store is a client with
//! `global_segment_size > 0` that issues no puts of its own except through the REST
//! API. Its memory (shm file, hugepages, prefault) is `mooncake-segment`'s, its
//! registration, mount, heartbeats and re-mounts the client's, so a store and a client
//! started with a segment behave the same.

pub mod config;
pub mod daemon;
pub mod http;
pub mod metrics;
pub mod waiting;

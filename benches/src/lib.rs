//! Shared helpers for the benchmarks and load generators.
//!
//! - [`latency`]: latency samples and their p50/p99 summary.
//!
//! Binaries: `master_loadgen` (the master over gRPC: batch exist, put start+end pairs).

pub mod latency;

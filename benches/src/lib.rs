//! Shared helpers for the benchmarks and load generators.
//!
//! - [`latency`]: latency samples and their p50/p99 summary.
//! - [`cpu`]: CPU time used by a process (per-operation CPU cost).
//!
//! Binaries: `master_loadgen` (the master over gRPC: batch exist, put start+end pairs).

pub mod cpu;
pub mod latency;

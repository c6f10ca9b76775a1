//! Shared helpers for the benchmarks and load generators.

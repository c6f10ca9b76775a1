//! The Mooncake master: the only process that knows where objects live.
//!
//! Layout (each module has one job):
//! - `config`: the master's settings with the reference's defaults.
pub mod config;

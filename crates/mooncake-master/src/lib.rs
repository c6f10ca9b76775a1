//! The Mooncake master: the only process that knows where objects live.
//!
//! Layout (each module has one job):
//! - `config`: the master's settings with the reference's defaults.
//! - `flags`: the gflags-style command line and `--config_path` file that fill `config`.
pub mod config;
pub mod flags;

//! The package's settings. The only module here that reads the environment: each
//! variable is read when the object it configures is made.

use mooncake_client::{CallMode, ClientConfig};
use mooncake_common::config::NodeConfig;

/// Worker threads of each store object's runtime.
pub const RUNTIME_THREADS_ENV: &str = "MOONCAKE_PY_RUNTIME_THREADS";
/// `0` keeps glibc's malloc thresholds.
pub const MALLOC_TUNING_ENV: &str = "MOONCAKE_PY_MALLOC_TUNING";
/// glibc's own variables: set, they mean the user tunes malloc already.
const GLIBC_MALLOC_ENV: [&str; 2] = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"];

/// Log filter for the package's own messages (`warn`, `mooncake_client=debug`, the
/// `tracing` filter syntax), written to stderr. Unset: the package logs nothing, as an
/// extension module must not install a global logger its host did not ask for.
pub const LOG_ENV: &str = "MOONCAKE_PY_LOG";

/// The filter `MOONCAKE_PY_LOG` asks for, when set and not empty.
pub fn log_filter() -> Option<String> {
    std::env::var(LOG_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The runtime's worker count `MOONCAKE_PY_RUNTIME_THREADS` asks for; `None` when it
/// is unset or not a positive integer.
pub fn runtime_threads() -> Option<usize> {
    std::env::var(RUNTIME_THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// Whether the environment leaves the malloc thresholds to us: not turned off with
/// `MOONCAKE_PY_MALLOC_TUNING=0` and not set through glibc's own variables.
pub fn malloc_tuning_wanted() -> bool {
    let off = std::env::var(MALLOC_TUNING_ENV)
        .map(|v| matches!(v.trim(), "0" | "false" | "off" | "no"))
        .unwrap_or(false);
    let user_tuned = GLIBC_MALLOC_ENV
        .iter()
        .any(|k| std::env::var_os(k).is_some());
    !off && !user_tuned
}

/// The client configuration of a store object: the node settings `setup()` was given,
/// the client's environment (`ClientConfig::new`), and master calls done on the
/// calling thread. Every call of a store object is driven by `runtime::block_on` from
/// the caller's own (Python) thread, so a framed round trip there needs no runtime
/// worker at all: measured faster for Python's one-call-at-a-time use than handing
/// the socket to a worker and back (docs/benchmarks/python.md).
pub fn client_config(node: NodeConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new(node);
    cfg.tuning.master_call_mode = CallMode::Blocking;
    cfg
}

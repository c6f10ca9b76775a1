//! PyO3 bindings: the native module `mooncake._mooncake` behind the Python package
//! `mooncake` (`mooncake.store`, `mooncake.engine`). The Python files in `python/`
//! re-export these classes and add the argument handling of `setup()`.
//!
//! Layout:
//! - [`store`]: `NativeStore`, base class of `MooncakeDistributedStore`: every call of
//!   CONTRACT §3, each releasing the GIL and never raising on the data path.
//! - [`replicate`]: `ReplicateConfig` and `SoftPinAction`.
//! - [`handle`]: `BufferHandle`, the buffer-protocol result of `get_buffer`.
//! - [`pybuf`]: zero-copy reads of Python buffer arguments.
//! - [`engine`]: `TransferEngine` (`mooncake.engine`).
//! - [`allocator`]: the `MooncakeHostMemAllocator` class.
//! - [`runtime`]: the per-store tokio runtime and the GIL-releasing `block_on`.
//! - [`codes`]: results to the contract's return conventions.
//! - [`config`]: the environment this package reads, and its client configuration.
//! - [`malloc_tuning`]: glibc settings that keep large `get()` buffers warm.

mod allocator;
mod codes;
mod config;
mod engine;
mod handle;
mod malloc_tuning;
mod pybuf;
mod replicate;
mod runtime;
mod store;

use pyo3::prelude::*;

/// Sends the package's log lines to stderr when `MOONCAKE_PY_LOG` asks for them (a
/// failed call's reason beyond its code: a warning the client logged on the way).
fn init_logging() {
    let Some(filter) = config::log_filter() else {
        return;
    };
    match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => {
            // Another library of the process may have installed one already: keep it.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(f)
                .with_writer(std::io::stderr)
                .try_init();
        }
        Err(e) => eprintln!(
            "mooncake: {}={filter:?} is not a log filter ({e}); logging stays off",
            config::LOG_ENV
        ),
    }
}

#[pymodule]
fn _mooncake(m: &Bound<'_, PyModule>) -> PyResult<()> {
    malloc_tuning::apply();
    init_logging();
    m.add_class::<store::NativeStore>()?;
    m.add_class::<replicate::ReplicateConfig>()?;
    m.add_class::<replicate::SoftPinAction>()?;
    m.add_class::<handle::BufferHandle>()?;
    m.add_class::<allocator::MooncakeHostMemAllocator>()?;
    m.add_class::<engine::TransferEngine>()?;
    m.add_class::<engine::EngineRef>()?;
    Ok(())
}

//! PyO3 bindings for the Python package `mooncake`.

//! The Mooncake store daemon.

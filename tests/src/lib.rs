//! Helpers for the integration tests: start binaries on free loopback ports, wait for them.

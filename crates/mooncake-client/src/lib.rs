//! The Mooncake Rust client.

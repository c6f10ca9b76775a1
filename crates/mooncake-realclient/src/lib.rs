//! The standalone real client and its dummies (the reference's `mooncake_client` and
//! `setup_dummy`). One `mooncake_client` process per node owns the node's segment,
//! its transfer engine and its master connection; every inference process on the
//! node is a light dummy that forwards its calls to it. Pointer calls on shared
//! pools move no bytes through the dummy: the real client maps the same memory.
//!
//! Layout:
//! - [`wire`]: bounded frames and field encoding; [`ops`]: the messages.
//! - [`shm`]: the dummy side's shared pools (memfd), found by address.
//! - [`fdpass`]: handing a pool's descriptor over the unix socket.
//! - [`dummy`]: the dummy client (blocking, a pool of connections).
//! - [`server`]: the real client's service: listeners, limits, the pools it maps,
//!   and the dispatch of each request to the Rust client.
//! - [`config`]: the binary's flags and config files.
//! - [`http`]: the optional health and metrics port (`--enable_http_server`).

pub mod config;
pub mod dummy;
pub mod fdpass;
pub mod http;
pub mod ops;
pub mod server;
pub mod shm;
pub mod wire;

pub use dummy::DummyClient;

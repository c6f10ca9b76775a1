//! Serving an axum app on a port anyone can reach. Every HTTP port of the workspace
//! (the master's admin and metadata ports, the store's REST port) faces strangers:
//! whoever can reach the address connects, not only the clients the port is for.
//! `axum::serve` bounds nothing: no cap on connections, no timeout for a head that
//! never arrives, a body that stops or an answer nobody reads, so a few hundred idle
//! sockets exhaust the descriptors (1,024 by default) and lock out every real client,
//! `/health` included. The bounds live here once so that every port has all of them;
//! each port only chooses their values ([`Limits`]).
//!
//! [`serve`] runs each connection on hyper's HTTP/1 server with:
//! - a cap on open connections ([`Limits::max_connections`]). Over the cap the
//!   connection waiting longest for a request gives way to the newcomer, preferring
//!   one that never sent a whole request; one with a request in flight never does.
//!   Neither simpler policy keeps `/health` answering through a flood of sockets
//!   that connect and send nothing: not accepting until a slot frees queues real
//!   clients in the kernel backlog behind the flood for a whole header timeout per
//!   round, and closing newcomers at once refuses every real client for as long. A
//!   real client's request is whole in one round trip, so a flood can delay it by a
//!   reconnect at worst;
//! - a deadline for a request head ([`Limits::header_timeout`]), counted from when the
//!   connection starts waiting for it, so it is also the keep-alive idle timeout;
//! - a deadline on a request body that stops arriving ([`Limits::body_stall_timeout`])
//!   and on an answer the client stops reading ([`Limits::write_stall_timeout`]);
//! - a request body limit counted as bytes arrive ([`Limits::max_body_bytes`]; a
//!   larger `Content-Length` is refused before anything is read) and a head size limit
//!   ([`Limits::max_head_bytes`]);
//! - with [`serve_tls`], TLS (HTTPS) on every connection, its handshake bounded by the
//!   header timeout; a client that speaks plain HTTP to it is answered 400 in plain
//!   HTTP, naming `https://`, rather than with a TLS alert its HTTP parser cannot read;
//! - graceful shutdown: once the shutdown future resolves, no new connection is
//!   accepted, connections without a request in flight close, and requests in flight
//!   finish.

pub mod auth;
mod listener;

pub use listener::{serve, serve_tls};
pub use mooncake_tls::Acceptor;

use std::time::Duration;

/// Connections one port keeps open by default: a port's clients (health checks,
/// scrapers, operators, one connection per request in flight for clients that close
/// each) number in the hundreds at most. Lowered at start to a quarter of the
/// descriptor limit, leaving the rest to the process's other ports and files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Whole request head, from the moment the connection waits for it (also the
/// keep-alive idle timeout). A real client sends its head in one write; a scraper that
/// reconnects between scrapes costs one handshake.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause inside a request body.
pub const DEFAULT_BODY_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause of a client that does not read its answer.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Request head (request line and headers): the read buffer hyper may grow to.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 << 10;
/// Request body backstop (64 MiB). A port sets its own at its routes' limit; routes
/// may set lower ones (`DefaultBodyLimit`), handlers that stream bodies get this one.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 << 20;

/// The bounds of one listener. [`Limits::DEFAULT`] (also [`Limits::default`]) has the
/// documented defaults; a port overrides what differs with struct update syntax, in a
/// `const` if it likes: `Limits { max_body_bytes: 100 << 20, ..Limits::DEFAULT }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_stall_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub max_head_bytes: usize,
    pub max_body_bytes: u64,
}

impl Limits {
    /// The documented defaults (`DEFAULT_*`).
    pub const DEFAULT: Self = Self {
        max_connections: DEFAULT_MAX_CONNECTIONS,
        header_timeout: DEFAULT_HEADER_TIMEOUT,
        body_stall_timeout: DEFAULT_BODY_STALL_TIMEOUT,
        write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

//! TLS for the control plane: the master's rpc, admin and metadata ports and every
//! client of them (stores, the CLI, the real client, the Python package).
//!
//! - [`load`] turns PEM files into rustls configurations, with an error naming the file
//!   for whatever is wrong with it (missing, unreadable, no certificate, no key, a key
//!   that does not match its certificate, a CA file without certificates);
//! - [`reload`] reads a certificate and key, and the CA files, again when they
//!   change, so a renewed certificate or a rotated CA needs no restart;
//! - [`config`] reads the client side from the environment (`MOONCAKE_TLS_CA_FILE`,
//!   `MOONCAKE_TLS_CERT_FILE`, `MOONCAKE_TLS_KEY_FILE`) once per process;
//! - [`Stream`] is a TCP connection that is plain or TLS, so that a server or client
//!   keeps one code path after the handshake (framed protocol, HTTP/2, HTTP/1);
//!   [`Acceptor`] and [`Connector`] make one.
//!
//! rustls runs on the `ring` provider. With a CA on the server, clients must present a
//! certificate that CA signed (mutual TLS).

pub mod config;
pub mod errors;
pub mod load;
pub mod reload;
mod stream;
mod verify;

pub use errors::TlsError;
pub use load::{client_config, server_config};
pub use stream::{Acceptor, Connector, Stream};

/// The first byte of a TLS record carrying a handshake message (a ClientHello starts
/// with it): a plaintext server seeing it knows its client speaks TLS.
pub const HANDSHAKE_RECORD: u8 = 0x16;
/// The first byte of a TLS alert record: what a TLS server answers plaintext with.
pub const ALERT_RECORD: u8 = 0x15;

/// Whether `head`, the first bytes a peer sent, is a TLS record (handshake or alert,
/// any TLS 1.x version).
pub fn looks_like_tls(head: &[u8]) -> bool {
    matches!(head, [HANDSHAKE_RECORD | ALERT_RECORD, 3, ..])
        || matches!(head, [HANDSHAKE_RECORD | ALERT_RECORD])
}

//! The master's HTTP surfaces (CONTRACT §6), each an axum app on its own listener:
//! - [`admin`]: the `--metrics_port` app (Prometheus text, health, segments, keys, workers).
//! - [`metadata`]: the transfer engine's HTTP metadata server, embedded or standalone.
//!
//! Both are plain `Router`s so tests and other binaries can mount them on any listener;
//! [`serve`] puts one on a port with the bounds of `mooncake_http` (connection cap,
//! header/body/write timeouts, body limit) at the master's values, [`LIMITS`].

pub mod admin;
pub mod drain;
pub mod metadata;
pub mod quota;

pub use mooncake_http::Limits;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

/// The bounds of the master's HTTP ports: the shared defaults, with the body backstop
/// at the metadata server's own route limit (64 MiB). The metadata server sees one
/// connection per request in flight (the transfer engine's client closes each), the
/// admin port a scraper and a few operators: hundreds of clients stay far below the
/// connection cap, which is lowered at start to a quarter of the descriptor limit (the
/// rpc port, the other HTTP port and etcd need theirs).
pub const LIMITS: Limits = Limits {
    max_body_bytes: metadata::MAX_BODY as u64,
    ..Limits::DEFAULT
};

/// Serves `app` on `listener` within [`LIMITS`] until `shutdown` resolves, then lets
/// in-flight requests finish. With `tls`, the port speaks HTTPS only.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: Option<mooncake_http::Acceptor>,
) -> std::io::Result<()> {
    mooncake_http::serve_tls(listener, app, shutdown, LIMITS, tls).await
}

/// A JSON response. The workspace builds axum without its `json` feature (one
/// serde_json path for the whole crate), so this is the one place bodies are encoded.
pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode response: {e}"),
        )
            .into_response(),
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

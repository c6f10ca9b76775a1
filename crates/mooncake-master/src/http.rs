//! The master's HTTP surfaces (CONTRACT §6), each an axum app on its own listener:
//! - [`admin`]: the `--metrics_port` app (Prometheus text, health, segments, keys, workers).
//! - [`metadata`]: the transfer engine's HTTP metadata server, embedded or standalone.
//!
//! Both are plain `Router`s so tests and other binaries can mount them on any listener;
//! [`serve`] puts one on a port with the bounds of [`listener`] (connection cap,
//! header/body/write timeouts, body limit).

pub mod admin;
pub mod listener;
pub mod metadata;

pub use listener::Limits;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

/// Serves `app` on `listener` with the default [`Limits`] until `shutdown` resolves,
/// then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve(listener, app, shutdown, Limits::default()).await
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

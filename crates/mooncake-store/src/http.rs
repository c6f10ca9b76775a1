//! The daemon's HTTP port: `/health` (200 only while the segment is mounted),
//! `/metrics` (Prometheus text, see [`crate::metrics`]) and the
//! reference store service's REST routes, with the same request and answer shapes:
//! `PUT /api/put` with JSON `{"key", "value"}`, `GET /api/get/{key}` (raw bytes),
//! `GET /api/exist/{key}` (`{"exists": bool}`), `DELETE /api/remove/{key}`,
//! `DELETE /api/remove_all`. [`serve`] puts the routes on the port with the bounds of
//! `mooncake_http` (connection cap, header/body/write timeouts, body limit) at the
//! store's values, [`LIMITS`].
//!
//! A store started with a credential (`MOONCAKE_AUTH_TOKEN_FILE` or
//! `MOONCAKE_AUTH_TOKEN`: a store is the `cluster` tenant's) serves its REST API only
//! to requests with `Authorization: Bearer <that token>` ([`protect`]); `/health` and
//! `/metrics` stay open for probes and scrapers. Anyone who can reach the port could
//! otherwise read every object or `DELETE /api/remove_all`.
//!
//! With `MOONCAKE_REST_TLS=1` ([`tls_from_env`]) the port serves HTTPS only, with the
//! certificate and key the store already holds (`MOONCAKE_TLS_CERT_FILE`,
//! `MOONCAKE_TLS_KEY_FILE`, read again when they change) and the listener the
//! master's HTTP ports use. It asks callers for no certificate, `MOONCAKE_TLS_CA_FILE`
//! or not: the REST API's gate is the bearer token, and its callers (probes,
//! scrapers, an operator's `curl`) carry none. The switch is its own rather than
//! "a certificate is set", because that certificate was already this store's identity
//! towards the master and its peers: having one must not move the probes of a running
//! deployment to HTTPS.

pub use mooncake_http::Limits;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::Router;
use mooncake_client::{Client, ErrorCode, ReplicateConfig};
use mooncake_common::auth::{Credential, CLUSTER_TENANT};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::metrics::StoreMetrics;

/// The reference accepts request bodies up to 100 MB.
pub const MAX_BODY: usize = 100 << 20;

/// The REST port's bounds: the shared defaults, with the body backstop at the routes'
/// own limit ([`MAX_BODY`]). Its clients are a health check, a scraper and whoever
/// uses the REST API (the data path is the transfer engine's port): hundreds of them
/// stay far below the connection cap, which is lowered at start to a quarter of the
/// descriptor limit (the transfer engine's listener, its pooled connections and the
/// segment need theirs).
pub const LIMITS: Limits = Limits {
    max_body_bytes: MAX_BODY as u64,
    ..Limits::DEFAULT
};

/// Serves `app` on `listener` within [`LIMITS`] until `shutdown` resolves, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, app, shutdown, None).await
}

/// [`serve`], HTTPS only when `tls` is given ([`tls_from_env`]).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: Option<mooncake_http::Acceptor>,
) -> std::io::Result<()> {
    mooncake_http::serve_tls(listener, app, shutdown, LIMITS, tls).await
}

/// Turns HTTPS on for the REST port (`1`; `0` or unset: plain HTTP).
pub const TLS_ENV: &str = "MOONCAKE_REST_TLS";

/// Whether a [`TLS_ENV`] value turns HTTPS on; anything but a yes or a no is an
/// error naming the variable (a typo must not silently mean plaintext).
pub fn parse_tls_switch(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(format!("{TLS_ENV}={other:?}: expected 1 or 0")),
    }
}

/// The REST port's TLS as the environment asks for it: `None` unless [`TLS_ENV`] is
/// on; then the store's certificate and key (`MOONCAKE_TLS_CERT_FILE`,
/// `MOONCAKE_TLS_KEY_FILE`), both required. The error names the variable or file.
pub fn tls_from_env() -> Result<Option<mooncake_http::Acceptor>, String> {
    use mooncake_tls::config::{ClientFiles, CERT_FILE_ENV, KEY_FILE_ENV};
    if !parse_tls_switch(std::env::var(TLS_ENV).ok().as_deref())? {
        return Ok(None);
    }
    let files = ClientFiles::from_env();
    let (Some(cert), Some(key)) = (&files.cert, &files.key) else {
        return Err(format!(
            "{TLS_ENV}=1 needs {CERT_FILE_ENV} and {KEY_FILE_ENV} (the certificate and key the REST port presents)"
        ));
    };
    let cfg = mooncake_tls::server_config(cert, key, None)
        .map_err(|e| format!("REST port ({TLS_ENV}=1): {e}"))?;
    Ok(Some(mooncake_http::Acceptor::new(cfg)))
}

/// Paths served without a token.
pub const OPEN_PATHS: &[&str] = &["/health", "/metrics"];

/// `app` behind a bearer check against `cred` (unchanged without one). A rotated
/// token file is read again when a request presents a token that is not the one read
/// before, so the new token works without a restart.
pub fn protect(app: Router, cred: Option<Credential>) -> Router {
    let Some(cred) = cred else {
        return app;
    };
    let current = Arc::new(parking_lot::Mutex::new(cred));
    let lookup: mooncake_http::auth::Lookup = Arc::new(move |h: &str| {
        let mut c = current.lock();
        if !same(h, &c.bearer()) {
            let fresh = c.reload();
            if fresh == *c || !same(h, &fresh.bearer()) {
                return None;
            }
            *c = fresh;
        }
        Some(CLUSTER_TENANT.into())
    });
    mooncake_http::auth::protect(
        app,
        mooncake_http::auth::BearerAuth::new("store REST API", OPEN_PATHS, lookup),
    )
}

/// Compares two header values in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim().as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn router(client: Client) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", metrics_route(StoreMetrics::new()))
        .route("/api/put", put(api_put))
        .route("/api/get/{key}", get(api_get))
        .route("/api/exist/{key}", get(api_exist))
        .route("/api/remove/{key}", delete(api_remove))
        .route("/api/remove_all", delete(api_remove_all))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(client)
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    json_response(status, json!({ "error": msg.into() }))
}

/// `GET /metrics` over a segment owner's client: `metrics`' Prometheus text.
pub fn metrics_route(metrics: StoreMetrics) -> axum::routing::MethodRouter<Client> {
    let metrics = Arc::new(metrics);
    get(move |State(c): State<Client>| async move {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics.render(&c),
        )
    })
}

/// `GET /health`: 200 `OK` while the owner's segment is mounted, else 503.
pub async fn health(State(c): State<Client>) -> Response {
    if c.is_mounted() {
        (StatusCode::OK, "OK").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "segment not mounted").into_response()
    }
}

async fn api_put(State(c): State<Client>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let key = v.get("key").and_then(|k| k.as_str()).unwrap_or("");
    let Some(value) = v.get("value").and_then(|k| k.as_str()) else {
        return error(StatusCode::BAD_REQUEST, "Missing key or value");
    };
    if key.is_empty() {
        return error(StatusCode::BAD_REQUEST, "Missing key or value");
    }
    match c
        .put(key, value.as_bytes(), &ReplicateConfig::default())
        .await
    {
        Ok(()) => json_response(StatusCode::OK, json!({"status": "success"})),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("PUT operation failed: {e}"),
        ),
    }
}

async fn api_get(State(c): State<Client>, Path(key): Path<String>) -> Response {
    match c.get(&key).await {
        Ok(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            v,
        )
            .into_response(),
        Err(e) if e.code == ErrorCode::ObjectNotFound => {
            error(StatusCode::NOT_FOUND, "Key not found")
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("GET operation failed: {e}"),
        ),
    }
}

async fn api_exist(State(c): State<Client>, Path(key): Path<String>) -> Response {
    match c.exist(&key).await {
        Ok(b) => json_response(StatusCode::OK, json!({ "exists": b })),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Exist check failed: {e}"),
        ),
    }
}

async fn api_remove(State(c): State<Client>, Path(key): Path<String>) -> Response {
    match c.remove(&key, false).await {
        Ok(()) => json_response(StatusCode::OK, json!({"status": "success"})),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Remove operation failed: {e}"),
        ),
    }
}

async fn api_remove_all(State(c): State<Client>) -> Response {
    match c.remove_all(false).await {
        Ok(n) => json_response(
            StatusCode::OK,
            json!({ "status": format!("success removed {n} keys") }),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("RemoveAll operation failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_switch_is_a_yes_or_a_no_and_a_typo_is_named() {
        for v in [None, Some(""), Some("0"), Some("off"), Some("No")] {
            assert_eq!(parse_tls_switch(v), Ok(false), "{v:?}");
        }
        for v in ["1", "true", "YES", " on "] {
            assert_eq!(parse_tls_switch(Some(v)), Ok(true), "{v:?}");
        }
        let e = parse_tls_switch(Some("htps")).unwrap_err();
        assert!(e.contains(TLS_ENV), "{e}");
    }
}

//! The HTTP metadata server (CONTRACT §6): where transfer engines publish their segment
//! descriptors when `MOONCAKE_TE_META_DATA_SERVER=http://host:port/metadata`.
//!
//! `GET|PUT|DELETE /metadata?key=K` and `GET /health`. Keys containing `rpc_meta` are
//! write-once: a peer's RPC endpoint must not be silently replaced by a second process
//! that picked the same name; rewriting the identical value is fine (restarts, retries).
//!
//! Runs embedded in the master (`--enable_http_metadata_server`, or an explicit
//! `--http_metadata_server_host/_port`) or standalone through [`MetadataServer`].

use super::text;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Segment descriptors of large RDMA pools list every buffer; leave room for them.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// Why a put was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("key {0:?} is write-once (rpc_meta) and already holds a different value")]
    WriteOnce(String),
}

/// The key/value map behind the server. Sharded (`DashMap`) so concurrent publishers
/// and readers of different keys do not contend.
#[derive(Debug, Default)]
pub struct MetadataStore {
    map: DashMap<String, Bytes>,
}

impl MetadataStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.map.get(key).map(|v| v.value().clone())
    }

    /// Stores `value`, honouring the write-once rule for `rpc_meta` keys.
    pub fn put(&self, key: &str, value: Bytes) -> Result<(), PutError> {
        if !is_write_once(key) {
            self.map.insert(key.to_string(), value);
            return Ok(());
        }
        match self.map.entry(key.to_string()) {
            Entry::Occupied(e) if e.get() == &value => Ok(()),
            Entry::Occupied(_) => Err(PutError::WriteOnce(key.to_string())),
            Entry::Vacant(e) => {
                e.insert(value);
                Ok(())
            }
        }
    }

    /// Removes the key; false when it was not there.
    pub fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Whether `key` may only be written once.
pub fn is_write_once(key: &str) -> bool {
    key.contains("rpc_meta")
}

#[derive(Debug, Deserialize)]
struct KeyParam {
    key: Option<String>,
}

impl KeyParam {
    /// The key, unless it is missing or empty.
    fn require(self) -> Option<String> {
        self.key.filter(|k| !k.is_empty())
    }
}

/// The answer to a request without a key.
fn missing_key() -> Response {
    text(
        StatusCode::BAD_REQUEST,
        "missing key: use /metadata?key=<key>",
    )
}

/// The metadata server's routes over `store`.
pub fn router(store: Arc<MetadataStore>) -> Router {
    Router::new()
        .route(
            "/metadata",
            get(get_metadata).put(put_metadata).delete(delete_metadata),
        )
        .route("/health", get(|| async { "OK" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(store)
}

async fn get_metadata(
    State(store): State<Arc<MetadataStore>>,
    Query(q): Query<KeyParam>,
) -> Response {
    let Some(key) = q.require() else {
        return missing_key();
    };
    match store.get(&key) {
        Some(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            v,
        )
            .into_response(),
        None => text(StatusCode::NOT_FOUND, "metadata not found"),
    }
}

async fn put_metadata(
    State(store): State<Arc<MetadataStore>>,
    Query(q): Query<KeyParam>,
    body: Bytes,
) -> Response {
    let Some(key) = q.require() else {
        return missing_key();
    };
    match store.put(&key, body) {
        Ok(()) => text(StatusCode::OK, "metadata updated"),
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn delete_metadata(
    State(store): State<Arc<MetadataStore>>,
    Query(q): Query<KeyParam>,
) -> Response {
    let Some(key) = q.require() else {
        return missing_key();
    };
    if store.remove(&key) {
        text(StatusCode::OK, "metadata deleted")
    } else {
        text(StatusCode::NOT_FOUND, "metadata not found")
    }
}

/// A running metadata server on its own task: for the standalone use (tests of other
/// crates, tools). Dropping it stops the server.
pub struct MetadataServer {
    addr: SocketAddr,
    store: Arc<MetadataStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl MetadataServer {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and starts serving.
    pub async fn start(addr: &str) -> std::io::Result<Self> {
        Self::start_on(TcpListener::bind(addr).await?)
    }

    /// Serves on an already bound listener.
    pub fn start_on(listener: TcpListener) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let store = MetadataStore::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(store.clone());
        let task = tokio::spawn(super::serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            store,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The value for `MOONCAKE_TE_META_DATA_SERVER`: `http://ip:port/metadata`.
    pub fn url(&self) -> String {
        format!("http://{}/metadata", self.addr)
    }

    pub fn store(&self) -> &Arc<MetadataStore> {
        &self.store
    }

    /// Stops accepting, waits for in-flight requests.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_once_applies_to_rpc_meta_keys_only() {
        let s = MetadataStore::default();
        s.put("mooncake/ram/a", Bytes::from_static(b"1")).unwrap();
        s.put("mooncake/ram/a", Bytes::from_static(b"2")).unwrap();
        assert_eq!(s.get("mooncake/ram/a").unwrap(), "2");
        s.put("mooncake/rpc_meta/h", Bytes::from_static(b"x"))
            .unwrap();
        s.put("mooncake/rpc_meta/h", Bytes::from_static(b"x"))
            .unwrap();
        let e = s
            .put("mooncake/rpc_meta/h", Bytes::from_static(b"y"))
            .unwrap_err();
        assert!(e.to_string().contains("write-once"));
        assert_eq!(s.get("mooncake/rpc_meta/h").unwrap(), "x");
        assert!(s.remove("mooncake/rpc_meta/h"));
        assert!(!s.remove("mooncake/rpc_meta/h"));
        s.put("mooncake/rpc_meta/h", Bytes::from_static(b"y"))
            .unwrap();
        assert_eq!(s.len(), 2);
    }
}

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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Paths served without a token when the server checks them: the health probe.
/// Reads of descriptors are not open: a descriptor tells where a segment's memory
/// is, which is half of reading it.
pub const OPEN_PATHS: &[&str] = &["/health"];

/// Segment descriptors of large RDMA pools list every buffer; leave room for them.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// What all keys and values together may hold. A node publishes a few descriptors of a
/// few KiB (an RDMA pool's lists every buffer: up to MiBs), so thousands of nodes fit;
/// without a total, anyone who can reach the port could grow the master's memory
/// without bound, one 64 MiB value after another.
pub const DEFAULT_TOTAL_BYTES: u64 = 256 << 20;

/// Why a put was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("key {0:?} is write-once (rpc_meta) and already holds a different value")]
    WriteOnce(String),
    #[error("the metadata server holds {held} of its {cap} bytes; storing {key:?} ({wanted} bytes) would exceed that: remove stale keys")]
    Full {
        key: String,
        wanted: u64,
        held: u64,
        cap: u64,
    },
}

/// The key/value map behind the server. Sharded (`DashMap`) so concurrent publishers
/// and readers of different keys do not contend. `bytes` counts every key and value
/// held, against `cap`.
#[derive(Debug)]
pub struct MetadataStore {
    map: DashMap<String, Bytes>,
    bytes: AtomicU64,
    cap: u64,
}

impl Default for MetadataStore {
    fn default() -> Self {
        Self::with_cap(DEFAULT_TOTAL_BYTES)
    }
}

fn cost(key: &str, value: &Bytes) -> u64 {
    (key.len() + value.len()) as u64
}

impl MetadataStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A store that holds at most `cap` bytes of keys and values.
    pub fn with_cap(cap: u64) -> Self {
        Self {
            map: DashMap::new(),
            bytes: AtomicU64::new(0),
            cap,
        }
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Accounts for replacing `old` bytes by `new` ones, unless that passes the cap.
    fn reserve(&self, key: &str, old: u64, new: u64) -> Result<(), PutError> {
        if new <= old {
            self.bytes.fetch_sub(old - new, Ordering::Relaxed);
            return Ok(());
        }
        let add = new - old;
        let held = self.bytes.fetch_add(add, Ordering::Relaxed);
        if held + add > self.cap {
            self.bytes.fetch_sub(add, Ordering::Relaxed);
            return Err(PutError::Full {
                key: key.to_string(),
                wanted: new,
                held,
                cap: self.cap,
            });
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.map.get(key).map(|v| v.value().clone())
    }

    /// Stores `value`, honouring the write-once rule for `rpc_meta` keys and the cap
    /// on what the store holds in total (a refused put changes nothing).
    pub fn put(&self, key: &str, value: Bytes) -> Result<(), PutError> {
        let new = cost(key, &value);
        match self.map.entry(key.to_string()) {
            Entry::Occupied(e) if e.get() == &value => Ok(()),
            Entry::Occupied(_) if is_write_once(key) => Err(PutError::WriteOnce(key.to_string())),
            Entry::Occupied(mut e) => {
                self.reserve(key, cost(key, e.get()), new)?;
                e.insert(value);
                Ok(())
            }
            Entry::Vacant(e) => {
                self.reserve(key, 0, new)?;
                e.insert(value);
                Ok(())
            }
        }
    }

    /// Removes the key; false when it was not there.
    pub fn remove(&self, key: &str) -> bool {
        match self.map.remove(key) {
            Some((k, v)) => {
                self.bytes.fetch_sub(cost(&k, &v), Ordering::Relaxed);
                true
            }
            None => false,
        }
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
        Err(e @ PutError::Full { .. }) => text(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
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
        let stop_signal = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(super::serve(listener, app, stop_signal, None));
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

    #[test]
    fn the_total_is_capped_and_a_refused_put_changes_nothing() {
        let s = MetadataStore::with_cap(100);
        s.put("k1", Bytes::from(vec![1u8; 48])).unwrap(); // 50 bytes
        s.put("k2", Bytes::from(vec![2u8; 40])).unwrap(); // 42 bytes: 92 held
        let e = s.put("k3", Bytes::from(vec![3u8; 20])).unwrap_err();
        assert!(
            matches!(
                e,
                PutError::Full {
                    held: 92,
                    cap: 100,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("remove stale keys"));
        assert!(s.get("k3").is_none());
        assert_eq!(s.bytes(), 92);
        // Growing a value past the cap is refused and keeps the old value.
        assert!(s.put("k2", Bytes::from(vec![9u8; 60])).is_err());
        assert_eq!(s.get("k2").unwrap().len(), 40);
        // Shrinking and removing give room back.
        s.put("k1", Bytes::from_static(b"x")).unwrap();
        assert_eq!(s.bytes(), 3 + 42);
        assert!(s.remove("k2"));
        assert_eq!(s.bytes(), 3);
        s.put("k3", Bytes::from(vec![3u8; 90])).unwrap();
        assert_eq!(s.bytes(), 3 + 92);
    }
}

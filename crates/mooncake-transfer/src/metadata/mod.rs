//! Where segment descriptors are published and looked up.
//!
//! Three backends behind one trait, chosen by the `metadata` setting
//! (`MOONCAKE_TE_META_DATA_SERVER`):
//! - `P2PHANDSHAKE`: no shared service; [`P2pMetadata`] stores nothing and the engine
//!   asks the peer's data listener for its descriptor (a Describe frame).
//! - `http://host:port/metadata`: the HTTP metadata server (CONTRACT §6), [`http`];
//!   `https://` with TLS (`MOONCAKE_TLS_*`, as the master's clients).
//! - `etcd://h1:2379;h2:2379`: etcd (cargo feature `etcd`), `etcd` module.

use futures::future::BoxFuture;
use std::sync::Arc;

use crate::errors::TransferError;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod http;

/// A key-value store for descriptors. Values are JSON strings.
pub trait MetadataStore: Send + Sync {
    /// The value, or `None` when the key is absent.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, TransferError>>;
    fn put<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), TransferError>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TransferError>>;
    /// True for P2PHANDSHAKE: descriptors come from the peers themselves.
    fn is_p2p(&self) -> bool {
        false
    }
}

/// P2PHANDSHAKE: nothing is stored anywhere.
#[derive(Debug, Default)]
pub struct P2pMetadata;

impl MetadataStore for P2pMetadata {
    fn get<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Option<String>, TransferError>> {
        Box::pin(async { Ok(None) })
    }
    fn put<'a>(
        &'a self,
        _key: &'a str,
        _value: &'a str,
    ) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async { Ok(()) })
    }
    fn delete<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async { Ok(()) })
    }
    fn is_p2p(&self) -> bool {
        true
    }
}

/// The backend for a `metadata` setting.
pub async fn connect(spec: &str) -> Result<Arc<dyn MetadataStore>, TransferError> {
    let s = spec.trim();
    if s.is_empty() || s.eq_ignore_ascii_case(mooncake_common::config::P2P_HANDSHAKE) {
        return Ok(Arc::new(P2pMetadata));
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Ok(Arc::new(http::HttpMetadata::new(s)?));
    }
    connect_etcd(s).await
}

#[cfg(feature = "etcd")]
async fn connect_etcd(s: &str) -> Result<Arc<dyn MetadataStore>, TransferError> {
    Ok(Arc::new(etcd::EtcdMetadata::connect(s).await?))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(s: &str) -> Result<Arc<dyn MetadataStore>, TransferError> {
    Err(TransferError::Config(format!(
        "metadata server {s:?} looks like etcd, but this build has no etcd support \
         (rebuild mooncake-transfer with --features etcd), or use http://host:port/metadata or P2PHANDSHAKE"
    )))
}

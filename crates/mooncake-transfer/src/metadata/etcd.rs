//! The etcd metadata backend (cargo feature `etcd`). `etcd://h1:2379;h2:2379` or a bare
//! `h1:2379;h2:2379`; descriptors are stored under the same keys as over HTTP.

use futures::future::BoxFuture;

use super::MetadataStore;
use crate::errors::TransferError;

pub struct EtcdMetadata {
    client: etcd_client::Client,
}

fn err(what: &str, e: etcd_client::Error) -> TransferError {
    TransferError::Metadata(format!("etcd {what}: {e}"))
}

impl EtcdMetadata {
    pub async fn connect(spec: &str) -> Result<Self, TransferError> {
        let list = spec.trim().strip_prefix("etcd://").unwrap_or(spec.trim());
        let endpoints: Vec<String> = list
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with("http://") {
                    s.to_string()
                } else {
                    format!("http://{s}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            return Err(TransferError::Config(format!(
                "etcd metadata {spec:?} lists no endpoint"
            )));
        }
        let client = etcd_client::Client::connect(&endpoints, None)
            .await
            .map_err(|e| err("connect", e))?;
        Ok(Self { client })
    }
}

impl MetadataStore for EtcdMetadata {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, TransferError>> {
        Box::pin(async move {
            let mut c = self.client.clone();
            let resp = c.get(key, None).await.map_err(|e| err("get", e))?;
            match resp.kvs().first() {
                None => Ok(None),
                Some(kv) => kv
                    .value_str()
                    .map(|s| Some(s.to_string()))
                    .map_err(|e| err("get", e)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let mut c = self.client.clone();
            c.put(key, value, None).await.map_err(|e| err("put", e))?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let mut c = self.client.clone();
            c.delete(key, None).await.map_err(|e| err("delete", e))?;
            Ok(())
        })
    }
}

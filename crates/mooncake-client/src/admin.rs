//! Existence checks, removal and introspection: control-plane only, no bytes move.

use crate::client::Client;
use crate::errors::{check_code, check_key, code_error};
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{
    BatchKeyRequest, BatchRemoveRequest, GetStatsRequest, GetStatsResponse, KeyRequest,
    ListSegmentsRequest, RemoveAllRequest, RemoveByRegexRequest, RemoveRequest, SegmentStatus,
};

fn count(n: i64, what: &str) -> Result<u64> {
    if n < 0 {
        Err(code_error(n as i32, what))
    } else {
        Ok(n as u64)
    }
}

impl Client {
    /// Whether a complete object is stored under `key` (an object being written is not).
    pub async fn exist(&self, key: &str) -> Result<bool> {
        self.ensure_open()?;
        check_key(key)?;
        let req = KeyRequest {
            key: key.to_string(),
        };
        let r = self
            .inner
            .rpc
            .call("exist", |mut c| async move { c.exist(req).await })
            .await?;
        match r.code {
            1 => Ok(true),
            0 => Ok(false),
            c => Err(code_error(c, &format!("exist {key:?}"))),
        }
    }

    pub async fn batch_exist(&self, keys: &[String]) -> Vec<Result<bool>> {
        self.batch_exist_owned(keys.to_vec()).await
    }

    /// [`Client::batch_exist`] for keys the caller no longer needs: when every key is
    /// valid (the usual case) they go into the request as they are, without a copy.
    pub async fn batch_exist_owned(&self, keys: Vec<String>) -> Vec<Result<bool>> {
        let mut out: Vec<Result<bool>> = Vec::with_capacity(keys.len());
        let mut ask = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            match self.ensure_open().and_then(|_| check_key(k)) {
                Ok(()) => {
                    ask.push(i);
                    out.push(Ok(false));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if ask.is_empty() {
            return out;
        }
        let req = BatchKeyRequest {
            keys: if ask.len() == keys.len() {
                keys
            } else {
                ask.iter().map(|&i| keys[i].clone()).collect()
            },
        };
        match self
            .inner
            .rpc
            .call(
                "batch_exist",
                |mut c| async move { c.batch_exist(req).await },
            )
            .await
        {
            Ok(r) if r.codes.len() == ask.len() => {
                for (i, code) in ask.into_iter().zip(r.codes) {
                    out[i] = match code {
                        1 => Ok(true),
                        0 => Ok(false),
                        c => Err(code_error(c, &format!("exist (item {i} of the batch)"))),
                    };
                }
            }
            Ok(_) => {
                for i in ask {
                    out[i] = Err(MooncakeError::new(
                        ErrorCode::InternalError,
                        "batch_exist: wrong number of results",
                    ));
                }
            }
            Err(e) => {
                for i in ask {
                    out[i] = Err(e.clone());
                }
            }
        }
        out
    }

    /// Removes one object; `OBJECT_HAS_LEASE` while a reader's lease runs unless `force`.
    pub async fn remove(&self, key: &str, force: bool) -> Result<()> {
        self.ensure_open()?;
        check_key(key)?;
        let req = RemoveRequest {
            key: key.to_string(),
            force,
        };
        let r = self
            .inner
            .rpc
            .call("remove", |mut c| async move { c.remove(req).await })
            .await?;
        check_code(r.code, &format!("remove {key:?}"))
    }

    pub async fn batch_remove(&self, keys: &[String], force: bool) -> Vec<Result<()>> {
        if let Err(e) = self.ensure_open() {
            return keys.iter().map(|_| Err(e.clone())).collect();
        }
        let req = BatchRemoveRequest {
            keys: keys.to_vec(),
            force,
        };
        match self
            .inner
            .rpc
            .call(
                "batch_remove",
                |mut c| async move { c.batch_remove(req).await },
            )
            .await
        {
            Ok(r) if r.codes.len() == keys.len() => keys
                .iter()
                .zip(r.codes)
                .map(|(k, c)| check_key(k).and_then(|_| check_code(c, &format!("remove {k:?}"))))
                .collect(),
            Ok(_) => keys
                .iter()
                .map(|_| {
                    Err(MooncakeError::new(
                        ErrorCode::InternalError,
                        "batch_remove: wrong number of results",
                    ))
                })
                .collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Removes every object (leased ones only with `force`); returns how many.
    pub async fn remove_all(&self, force: bool) -> Result<u64> {
        self.ensure_open()?;
        let req = RemoveAllRequest { force };
        let r = self
            .inner
            .rpc
            .call("remove_all", |mut c| async move { c.remove_all(req).await })
            .await?;
        count(r.count, "remove_all")
    }

    /// Removes objects whose key matches `pattern`; a bad pattern is `INVALID_PARAMS`.
    pub async fn remove_by_regex(&self, pattern: &str, force: bool) -> Result<u64> {
        self.ensure_open()?;
        let req = RemoveByRegexRequest {
            pattern: pattern.to_string(),
            force,
        };
        let r = self
            .inner
            .rpc
            .call("remove_by_regex", |mut c| async move {
                c.remove_by_regex(req).await
            })
            .await?;
        count(r.count, &format!("remove_by_regex {pattern:?}"))
    }

    /// Every mounted segment with its usage.
    pub async fn segments(&self) -> Result<Vec<SegmentStatus>> {
        self.ensure_open()?;
        let r = self
            .inner
            .rpc
            .call("list_segments", |mut c| async move {
                c.list_segments(ListSegmentsRequest {}).await
            })
            .await?;
        Ok(r.segments)
    }

    pub async fn stats(&self) -> Result<GetStatsResponse> {
        self.ensure_open()?;
        self.inner
            .rpc
            .call("get_stats", |mut c| async move {
                c.get_stats(GetStatsRequest {}).await
            })
            .await
    }
}

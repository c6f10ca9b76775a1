//! Existence checks, removal and introspection: control-plane only, no bytes move.

use crate::client::Client;
use crate::errors::{check_code, check_key, code_error, fail_at, wrong_count};
use crate::key_batch::KeyBatch;
use mooncake_common::Result;
use mooncake_proto::{
    BatchCodeResponse, BatchKeyRequest, BatchRemoveRequest, GetStatsRequest, GetStatsResponse,
    KeyRequest, ListSegmentsRequest, RemoveAllRequest, RemoveByRegexRequest, RemoveRequest,
    Replica, SegmentStatus,
};

/// The unary method `batch_exist_keys` sends its pre-encoded request to.
const BATCH_EXIST: &str = "/mooncake.v1.Master/BatchExist";

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
        let mut batch = KeyBatch::with_capacity(keys.len(), keys.first().map_or(0, |k| k.len()));
        for k in keys {
            batch.push(k);
        }
        self.batch_exist_keys(batch).await
    }

    /// [`Client::batch_exist`] of keys already encoded into a [`KeyBatch`] (no
    /// `String` per key): one round trip for the valid keys; a rejected key's result
    /// is its validation error, in its position.
    pub async fn batch_exist_keys(&self, keys: KeyBatch) -> Vec<Result<bool>> {
        let n = keys.len();
        if let Err(e) = self.ensure_open() {
            return vec![Err(e); n];
        }
        let (body, sent, rejected) = keys.into_parts();
        let answer = if sent == 0 {
            Ok(Vec::new())
        } else {
            self.inner
                .rpc
                .call_encoded::<BatchCodeResponse>("batch_exist", BATCH_EXIST, body)
                .await
                .and_then(|r| {
                    if r.codes.len() == sent {
                        Ok(r.codes)
                    } else {
                        Err(wrong_count("batch_exist"))
                    }
                })
        };
        let mut rejected = rejected.into_iter().peekable();
        let mut codes = answer.as_deref().unwrap_or_default().iter();
        (0..n)
            .map(|i| {
                if let Some((_, e)) = rejected.next_if(|(at, _)| *at == i) {
                    return Err(e);
                }
                match (&answer, codes.next()) {
                    (Err(e), _) => Err(e.clone()),
                    (Ok(_), Some(1)) => Ok(true),
                    (Ok(_), Some(0)) => Ok(false),
                    (Ok(_), c) => Err(code_error(
                        c.copied().unwrap_or(-1),
                        &format!("exist (item {i} of the batch)"),
                    )),
                }
            })
            .collect()
    }

    /// Removes one object; `OBJECT_HAS_LEASE` while a reader's lease runs unless `force`.
    pub async fn remove(&self, key: &str, force: bool) -> Result<()> {
        self.ensure_open()?;
        check_key(key)?;
        self.inner.locations.forget(key);
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
        self.inner.locations.forget_all(keys);
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
                .map(|_| Err(wrong_count("batch_remove")))
                .collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Where each key's complete replicas are (`get_replica_desc`): per key its
    /// replicas and the object's size, or the master's code (-704 missing, -703 still
    /// being written). One round trip; like a read, it grants a lease.
    pub async fn replica_descs(&self, keys: &[String]) -> Vec<Result<(Vec<Replica>, u64)>> {
        if let Err(e) = self.ensure_open() {
            return keys.iter().map(|_| Err(e.clone())).collect();
        }
        let mut out: Vec<Result<(Vec<Replica>, u64)>> = Vec::with_capacity(keys.len());
        let mut ask = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match check_key(k) {
                Ok(()) => {
                    ask.push(i);
                    out.push(Ok((Vec::new(), 0)));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if ask.is_empty() {
            return out;
        }
        let req = BatchKeyRequest {
            keys: ask.iter().map(|&i| keys[i].clone()).collect(),
        };
        let resp = self
            .inner
            .rpc
            .call("batch_get_replica_list", |mut c| async move {
                c.batch_get_replica_list(req).await
            })
            .await;
        match resp {
            Ok(r) if r.results.len() == ask.len() => {
                for (i, res) in ask.into_iter().zip(r.results) {
                    out[i] = check_code(res.code, &format!("get_replica_desc {:?}", keys[i]))
                        .map(|_| (res.replicas, res.size));
                }
            }
            Ok(_) => fail_at(&mut out, ask, &wrong_count("batch_get_replica_list")),
            Err(e) => fail_at(&mut out, ask, &e),
        }
        out
    }

    /// Removes every object (leased ones only with `force`); returns how many.
    pub async fn remove_all(&self, force: bool) -> Result<u64> {
        self.ensure_open()?;
        self.inner.locations.clear();
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
        self.inner.locations.clear();
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

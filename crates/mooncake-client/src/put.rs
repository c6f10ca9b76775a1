//! The put forms of the API: plain values, parts, upserts, and zero-copy batches on
//! registered memory (checked here). All of them funnel into `write_objects`
//! (`write.rs`).

use crate::client::Client;
use crate::config::ReplicateConfig;
use crate::write::Bufs;
use mooncake_common::{ErrorCode, MooncakeError, Result};

fn mismatch<T>(n: usize, what: &str) -> Vec<Result<T>> {
    (0..n)
        .map(|_| {
            Err(MooncakeError::invalid(format!(
                "{what}: keys and buffers differ in length"
            )))
        })
        .collect()
}

/// Batches of at least this many objects are written as two pipelined halves.
const PIPELINE_MIN_KEYS: usize = 128;

fn slice_bufs(v: &[u8]) -> Bufs {
    vec![(v.as_ptr() as usize, v.len())]
}

impl Client {
    pub async fn put(&self, key: &str, value: &[u8], rc: &ReplicateConfig) -> Result<()> {
        // Safety: `value` outlives the call.
        unsafe { self.write_one(key, slice_bufs(value), rc, false).await }
    }

    /// The value is the concatenation of `parts` (one contiguous object).
    pub async fn put_parts(&self, key: &str, parts: &[&[u8]], rc: &ReplicateConfig) -> Result<()> {
        let bufs = parts
            .iter()
            .map(|p| (p.as_ptr() as usize, p.len()))
            .collect();
        // Safety: the parts outlive the call.
        unsafe { self.write_one(key, bufs, rc, false).await }
    }

    /// Insert or replace.
    pub async fn upsert(&self, key: &str, value: &[u8], rc: &ReplicateConfig) -> Result<()> {
        // Safety: `value` outlives the call.
        unsafe { self.write_one(key, slice_bufs(value), rc, true).await }
    }

    /// [`Client::put_parts`] that inserts or replaces.
    pub async fn upsert_parts(
        &self,
        key: &str,
        parts: &[&[u8]],
        rc: &ReplicateConfig,
    ) -> Result<()> {
        let bufs = parts
            .iter()
            .map(|p| (p.as_ptr() as usize, p.len()))
            .collect();
        // Safety: the parts outlive the call.
        unsafe { self.write_one(key, bufs, rc, true).await }
    }

    /// [`Client::put_batch`] that inserts or replaces.
    pub async fn upsert_batch(
        &self,
        keys: &[String],
        values: &[&[u8]],
        rc: &ReplicateConfig,
    ) -> Vec<Result<()>> {
        if keys.len() != values.len() {
            return mismatch(keys.len(), "upsert_batch");
        }
        let items = values.iter().map(|v| Ok(slice_bufs(v))).collect();
        // Safety: the values outlive the call.
        unsafe {
            self.write_objects(&self.inner.rpc, keys, items, rc, true)
                .await
        }
    }

    pub async fn put_batch(
        &self,
        keys: &[String],
        values: &[&[u8]],
        rc: &ReplicateConfig,
    ) -> Vec<Result<()>> {
        if keys.len() != values.len() {
            return mismatch(keys.len(), "put_batch");
        }
        let items = values.iter().map(|v| Ok(slice_bufs(v))).collect();
        // Safety: the values outlive the call.
        unsafe {
            self.write_objects(&self.inner.rpc, keys, items, rc, false)
                .await
        }
    }

    /// # Safety
    /// `[addr, addr+len)` is valid for reads for the whole call.
    pub async unsafe fn put_from(
        &self,
        key: &str,
        addr: usize,
        len: usize,
        rc: &ReplicateConfig,
    ) -> Result<()> {
        self.inner.buffers.check(addr, len)?;
        // Safety: forwarded.
        unsafe { self.write_one(key, vec![(addr, len)], rc, false).await }
    }

    /// # Safety
    /// As [`Client::put_from`].
    pub async unsafe fn upsert_from(
        &self,
        key: &str,
        addr: usize,
        len: usize,
        rc: &ReplicateConfig,
    ) -> Result<()> {
        self.inner.buffers.check(addr, len)?;
        // Safety: forwarded.
        unsafe { self.write_one(key, vec![(addr, len)], rc, true).await }
    }

    /// # Safety
    /// Every buffer is valid for reads for the whole call.
    pub async unsafe fn batch_put_from(
        &self,
        keys: &[String],
        bufs: &[(usize, usize)],
        rc: &ReplicateConfig,
    ) -> Vec<Result<()>> {
        // Safety: forwarded.
        unsafe {
            self.batch_write_single(keys, bufs, rc, false, "batch_put_from")
                .await
        }
    }

    /// # Safety
    /// As [`Client::batch_put_from`].
    pub async unsafe fn batch_upsert_from(
        &self,
        keys: &[String],
        bufs: &[(usize, usize)],
        rc: &ReplicateConfig,
    ) -> Vec<Result<()>> {
        // Safety: forwarded.
        unsafe {
            self.batch_write_single(keys, bufs, rc, true, "batch_upsert_from")
                .await
        }
    }

    /// Scatter/gather: object `i` is the concatenation of `bufs[i]`.
    ///
    /// # Safety
    /// Every buffer is valid for reads for the whole call.
    pub async unsafe fn batch_put_from_multi(
        &self,
        keys: &[String],
        bufs: &[Vec<(usize, usize)>],
        rc: &ReplicateConfig,
    ) -> Vec<Result<()>> {
        // Safety: forwarded.
        unsafe {
            self.batch_write_registered(keys, bufs, rc, false, "batch_put_from_multi")
                .await
        }
    }

    /// [`Client::batch_put_from_multi`] that inserts or replaces.
    ///
    /// # Safety
    /// As [`Client::batch_put_from_multi`].
    pub async unsafe fn batch_upsert_from_multi(
        &self,
        keys: &[String],
        bufs: &[Vec<(usize, usize)>],
        rc: &ReplicateConfig,
    ) -> Vec<Result<()>> {
        // Safety: forwarded.
        unsafe {
            self.batch_write_registered(keys, bufs, rc, true, "batch_upsert_from_multi")
                .await
        }
    }

    /// One registered buffer per object: checked and laid out in one pass (the hot
    /// path of SGLang's and the scale check's batched puts).
    async unsafe fn batch_write_single(
        &self,
        keys: &[String],
        bufs: &[(usize, usize)],
        rc: &ReplicateConfig,
        upsert: bool,
        what: &str,
    ) -> Vec<Result<()>> {
        if keys.len() != bufs.len() {
            return mismatch(keys.len(), what);
        }
        let mut items: Vec<_> = bufs
            .iter()
            .map(|&(a, l)| {
                self.inner.buffers.check(a, l)?;
                Ok(vec![(a, l)])
            })
            .collect();
        if keys.len() >= PIPELINE_MIN_KEYS && self.inner.tuning.pipeline_puts() {
            // Two halves in flight: while the master places one half, this process
            // copies the other's bytes (and vice versa), which uses a second core when
            // one is free. A key in both halves behaves as within one batch: the later
            // start finds the key in progress.
            let mid = keys.len() / 2;
            let tail = items.split_off(mid);
            // The halves' master calls are asynchronous whatever the client's call
            // mode: done synchronously on this thread, one half's call would stall the
            // other half.
            let rpc = &self.inner.rpc_async;
            // Safety: forwarded.
            let (mut a, b) = unsafe {
                tokio::join!(
                    self.write_objects(rpc, &keys[..mid], items, rc, upsert),
                    self.write_objects(rpc, &keys[mid..], tail, rc, upsert)
                )
            };
            a.extend(b);
            return a;
        }
        // Safety: forwarded.
        unsafe {
            self.write_objects(&self.inner.rpc, keys, items, rc, upsert)
                .await
        }
    }

    async unsafe fn batch_write_registered(
        &self,
        keys: &[String],
        bufs: &[Bufs],
        rc: &ReplicateConfig,
        upsert: bool,
        what: &str,
    ) -> Vec<Result<()>> {
        if keys.len() != bufs.len() {
            return mismatch(keys.len(), what);
        }
        let items = bufs
            .iter()
            .map(|b| {
                b.iter()
                    .try_for_each(|&(a, l)| self.inner.buffers.check(a, l))?;
                Ok(b.clone())
            })
            .collect();
        // Safety: forwarded.
        unsafe {
            self.write_objects(&self.inner.rpc, keys, items, rc, upsert)
                .await
        }
    }

    async unsafe fn write_one(
        &self,
        key: &str,
        bufs: Bufs,
        rc: &ReplicateConfig,
        upsert: bool,
    ) -> Result<()> {
        let keys = [key.to_string()];
        // Safety: forwarded.
        let mut r = unsafe {
            self.write_objects(&self.inner.rpc, &keys, vec![Ok(bufs)], rc, upsert)
                .await
        };
        r.pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))
    }
}

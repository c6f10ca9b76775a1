//! Reads. Every form funnels into [`Client::locate`] (one `BatchGetReplicaList`, which
//! also grants the lease) and [`Client::read_objects`], which reads each object from
//! one replica (same-host replicas first, the others in rotating order to spread load)
//! and retries the objects whose read failed on their next replica.

use crate::client::Client;
use crate::errors::{check_code, check_key};
use crate::io::{layout, truncate, Job, Piece};
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{BatchKeyRequest, Replica};
use mooncake_transfer::Opcode;
use std::sync::atomic::Ordering;

/// Where an object lives.
pub(crate) struct Located {
    pub replicas: Vec<Replica>,
    pub size: u64,
}

/// One object to read: its replicas (in preference order) and the local pieces.
pub(crate) struct ReadItem {
    pub replicas: Vec<Replica>,
    pub pieces: Vec<Piece>,
}

fn mismatch<T>(n: usize, what: &str) -> Vec<Result<T>> {
    (0..n)
        .map(|_| {
            Err(MooncakeError::invalid(format!(
                "{what}: keys and buffers differ in length"
            )))
        })
        .collect()
}

fn too_small(key: &str, cap: usize, size: u64) -> MooncakeError {
    MooncakeError::invalid(format!(
        "get {key:?}: buffer of {cap} bytes is smaller than the {size}-byte object"
    ))
}

impl Client {
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let mut r = self.get_batch(std::slice::from_ref(&key.to_string())).await;
        r.pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))
    }

    pub async fn get_batch(&self, keys: &[String]) -> Vec<Result<Vec<u8>>> {
        let located = self.locate(keys).await;
        let mut out: Vec<Result<Vec<u8>>> = Vec::with_capacity(keys.len());
        let mut items = Vec::new();
        let mut pos = Vec::new();
        for (i, l) in located.into_iter().enumerate() {
            match l {
                Ok(l) => {
                    let mut v = Vec::<u8>::with_capacity(l.size as usize);
                    let pieces = layout(&[(v.as_mut_ptr() as usize, l.size as usize)], 0);
                    items.push(ReadItem {
                        replicas: l.replicas,
                        pieces,
                    });
                    pos.push(i);
                    out.push(Ok(v));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        // Safety: each vector's capacity covers its pieces and is not touched meanwhile.
        let read = unsafe { self.read_objects(&items).await };
        for ((i, r), item) in pos.into_iter().zip(read).zip(&items) {
            match r {
                Ok(()) => {
                    if let Ok(v) = &mut out[i] {
                        let n: usize = item.pieces.iter().map(|p| p.len).sum();
                        // Safety: the read filled exactly `n` bytes of the capacity.
                        unsafe { v.set_len(n) };
                    }
                }
                Err(e) => out[i] = Err(e),
            }
        }
        out
    }

    /// The object's size, or its error (`REPLICA_IS_NOT_READY` while being written).
    pub async fn get_size(&self, key: &str) -> Result<u64> {
        let mut l = self.locate(std::slice::from_ref(&key.to_string())).await;
        l.pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))
            .map(|l| l.size)
    }

    /// Reads the object into registered memory; returns its size. A buffer smaller
    /// than the object is `INVALID_PARAMS`.
    ///
    /// # Safety
    /// `[addr, addr+len)` is valid for writes for the whole call.
    pub async unsafe fn get_into(&self, key: &str, addr: usize, len: usize) -> Result<usize> {
        let keys = [key.to_string()];
        // Safety: forwarded.
        let mut r = unsafe { self.batch_get_into_multi(&keys, &[vec![(addr, len)]]).await };
        r.pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))
    }

    /// # Safety
    /// Every buffer is valid for writes for the whole call.
    pub async unsafe fn batch_get_into(
        &self,
        keys: &[String],
        bufs: &[(usize, usize)],
    ) -> Vec<Result<usize>> {
        let multi: Vec<Vec<(usize, usize)>> = bufs.iter().map(|b| vec![*b]).collect();
        if keys.len() != bufs.len() {
            return mismatch(keys.len(), "batch_get_into");
        }
        // Safety: forwarded.
        unsafe { self.batch_get_into_multi(keys, &multi).await }
    }

    /// Scatter: object `i` fills `bufs[i]` in order; returns bytes read per key.
    ///
    /// # Safety
    /// Every buffer is valid for writes for the whole call.
    pub async unsafe fn batch_get_into_multi(
        &self,
        keys: &[String],
        bufs: &[Vec<(usize, usize)>],
    ) -> Vec<Result<usize>> {
        if keys.len() != bufs.len() {
            return mismatch(keys.len(), "batch_get_into_multi");
        }
        let mut out: Vec<Result<usize>> = Vec::with_capacity(keys.len());
        let mut ask = Vec::new();
        for (i, b) in bufs.iter().enumerate() {
            match b
                .iter()
                .try_for_each(|&(a, l)| self.inner.buffers.check(a, l))
            {
                Ok(()) => {
                    ask.push(i);
                    out.push(Ok(0));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let ask_keys: Vec<String> = ask.iter().map(|i| keys[*i].clone()).collect();
        let located = self.locate(&ask_keys).await;
        let mut items = Vec::new();
        let mut pos = Vec::new();
        for (i, l) in ask.into_iter().zip(located) {
            match l {
                Ok(l) => {
                    let cap: usize = bufs[i].iter().map(|(_, n)| *n).sum();
                    if (cap as u64) < l.size {
                        out[i] = Err(too_small(&keys[i], cap, l.size));
                        continue;
                    }
                    let pieces = layout(&truncate(&bufs[i], l.size as usize), 0);
                    items.push(ReadItem {
                        replicas: l.replicas,
                        pieces,
                    });
                    pos.push(i);
                    out[i] = Ok(l.size as usize);
                }
                Err(e) => out[i] = Err(e),
            }
        }
        // Safety: forwarded from the caller.
        let read = unsafe { self.read_objects(&items).await };
        for (i, r) in pos.into_iter().zip(read) {
            if let Err(e) = r {
                out[i] = Err(e);
            }
        }
        out
    }

    /// Ranged read: `len` bytes from offset `src_off` of the object into `addr`.
    ///
    /// # Safety
    /// `[addr, addr+len)` is valid for writes for the whole call.
    pub async unsafe fn get_range_into(
        &self,
        key: &str,
        src_off: u64,
        addr: usize,
        len: usize,
    ) -> Result<usize> {
        self.inner.buffers.check(addr, len)?;
        let l = self
            .locate(std::slice::from_ref(&key.to_string()))
            .await
            .pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))?;
        if src_off
            .checked_add(len as u64)
            .is_none_or(|end| end > l.size)
        {
            return Err(MooncakeError::invalid(format!(
                "get {key:?}: range +{src_off}..+{} is outside the {}-byte object",
                src_off as u128 + len as u128,
                l.size
            )));
        }
        let item = ReadItem {
            replicas: l.replicas,
            pieces: layout(&[(addr, len)], src_off),
        };
        // Safety: forwarded.
        let mut r = unsafe { self.read_objects(std::slice::from_ref(&item)).await };
        r.pop().unwrap_or(Ok(())).map(|_| len)
    }

    /// One `BatchGetReplicaList` for `keys`; bad keys are answered locally.
    pub(crate) async fn locate(&self, keys: &[String]) -> Vec<Result<Located>> {
        let mut out: Vec<Result<Located>> = Vec::with_capacity(keys.len());
        let mut ask = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.ensure_open().and_then(|_| check_key(k)) {
                Ok(()) => {
                    ask.push(i);
                    out.push(Ok(Located {
                        replicas: vec![],
                        size: 0,
                    }));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if ask.is_empty() {
            return out;
        }
        let req = BatchKeyRequest {
            keys: ask.iter().map(|i| keys[*i].clone()).collect(),
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
                    out[i] = check_code(res.code, &format!("get {:?}", keys[i])).and_then(|_| {
                        if res.replicas.is_empty() {
                            Err(MooncakeError::new(
                                ErrorCode::ReplicaIsNotReady,
                                format!("get {:?}: no complete replica", keys[i]),
                            ))
                        } else {
                            Ok(Located {
                                replicas: self.prefer(res.replicas),
                                size: res.size,
                            })
                        }
                    });
                }
            }
            Ok(_) => {
                for i in ask {
                    out[i] = Err(MooncakeError::new(
                        ErrorCode::InternalError,
                        "get_replica_list: wrong number of results",
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

    /// Same-host replicas first; the others rotated so readers spread over replicas.
    fn prefer(&self, mut replicas: Vec<Replica>) -> Vec<Replica> {
        let shm = &self.inner.data.shm;
        let n = replicas.len();
        if n > 1 {
            let k = self.inner.rotation.fetch_add(1, Ordering::Relaxed) as usize % n;
            replicas.rotate_left(k);
            replicas.sort_by_key(|r| !r.segment.as_ref().is_some_and(|s| shm.is_local(s)));
        }
        replicas
    }

    /// Reads each item from its first replica, falling back to the next on failure.
    ///
    /// # Safety
    /// Every piece's local range is valid for writes for the whole call.
    pub(crate) async unsafe fn read_objects(&self, items: &[ReadItem]) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = items.iter().map(|_| Ok(())).collect();
        let mut pending: Vec<usize> = (0..items.len())
            .filter(|i| !items[*i].pieces.is_empty())
            .collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let jobs: Vec<Job> = pending
                .iter()
                .map(|i| Job {
                    replica: &items[*i].replicas[attempt],
                    pieces: items[*i].pieces.clone(),
                })
                .collect();
            // Safety: forwarded from the caller.
            let outcome = unsafe { self.inner.data.run(Opcode::Read, &jobs).await };
            let mut retry = Vec::new();
            for (i, r) in pending.iter().zip(outcome) {
                match r {
                    Ok(()) => results[*i] = Ok(()),
                    Err(e) => {
                        if attempt + 1 < items[*i].replicas.len() {
                            tracing::debug!(error = %e, "read failed; trying the next replica");
                            retry.push(*i);
                        }
                        results[*i] = Err(e);
                    }
                }
            }
            pending = retry;
            attempt += 1;
        }
        results
    }
}

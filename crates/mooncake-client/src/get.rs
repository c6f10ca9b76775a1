//! The get forms of the API: values, sizes, zero-copy and scatter reads into
//! registered memory (checked here), and ranged reads. All of them locate objects and
//! read them through `read.rs`; the whole-object forms read remembered objects
//! speculatively while the lookup runs (`Client::locate_guessing`).

use crate::client::Client;
use crate::errors::again_while_grants_refused;
use crate::io::{layout, truncate, Piece};
use crate::read::{Found, Guess, Located, ReadItem};
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::Replica;

fn no_result<T>() -> Result<T> {
    Err(MooncakeError::new(ErrorCode::InternalError, "no result"))
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

/// Where an object is and how big it is, for a caller that allocates the destination
/// only once it knows the size (the Python `get()` reads straight into a new `bytes`).
/// The lease its lookup was granted covers a read that follows at once.
pub struct Location {
    key: String,
    located: Located,
}

impl Location {
    pub fn size(&self) -> u64 {
        self.located.size
    }
}

impl Client {
    /// One lookup for a read into memory allocated afterwards ([`Client::read_location`]).
    /// Counted as a location cache miss: the caller had no remembered size to read
    /// into meanwhile ([`Client::remembered_size`]).
    pub async fn locate_one(&self, key: &str) -> Result<Location> {
        self.inner.locations.missed(1);
        self.locate(std::slice::from_ref(&key.to_string()))
            .await
            .pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))
            .map(|located| Location {
                key: key.to_string(),
                located,
            })
    }

    /// The size the location cache remembers for `key`'s object, if any: a caller
    /// that allocates the destination itself can allocate this much before the lookup
    /// and pass it to [`Client::locate_one_reading`].
    pub fn remembered_size(&self, key: &str) -> Option<u64> {
        self.inner.locations.get(key).map(|l| l.size)
    }

    /// [`Client::locate_one`] that also reads the object speculatively into
    /// `[addr, addr + len)` when the location cache remembers it with exactly `len`
    /// bytes. `Ok(None)`: the bytes are there (the lookup named the allocation they
    /// were read from); `Ok(Some(loc))`: they are not, read `loc` as usual.
    ///
    /// # Safety
    /// `[addr, addr + len)` is valid for writes for the whole call; its contents are
    /// unspecified unless the answer is `Ok(None)`.
    pub async unsafe fn locate_one_reading(
        &self,
        key: &str,
        addr: usize,
        len: usize,
    ) -> Result<Option<Location>> {
        let keys = [key.to_string()];
        let guesses: Vec<Guess> = self
            .remembered(&keys)
            .into_iter()
            .flatten()
            .filter(|loc| loc.size == len as u64)
            .map(|loc| Guess {
                index: 0,
                pieces: layout(&[(addr, len)], 0),
                loc,
            })
            .collect();
        // Safety: forwarded.
        let f = unsafe { self.locate_guessing(&keys, &guesses).await }
            .pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))?;
        Ok((!f.read).then_some(Location {
            key: key.to_string(),
            located: f.located,
        }))
    }

    /// Reads the object `loc` describes into `[addr, addr + loc.size())`. A read a
    /// data port refused for its grant (`loc` was answered before the master
    /// restarted or handed over, or before the segment's owner mounted again) looks
    /// the key up again and reads what that names, as long as the object still has
    /// `loc.size()` bytes; an object replaced by one of another size is
    /// OBJECT_NOT_FOUND (the one located is gone; locate it again).
    ///
    /// # Safety
    /// That range is valid for writes for the whole call.
    pub async unsafe fn read_location(&self, loc: &Location, addr: usize) -> Result<()> {
        let pieces = layout(&[(addr, loc.size() as usize)], 0);
        // Safety: forwarded.
        let first = unsafe { self.read_one(loc.located.replicas.clone(), pieces.clone()) }.await;
        let keys = std::slice::from_ref(&loc.key);
        again_while_grants_refused(vec![first], |_| {
            let pieces = pieces.clone();
            async move {
                let read = async {
                    let l = self.locate(keys).await.pop().unwrap_or_else(no_result)?;
                    if l.size != loc.size() {
                        return Err(MooncakeError::new(
                            ErrorCode::ObjectNotFound,
                            format!(
                                "get {:?}: the {}-byte object located was replaced by one of {} bytes before its read",
                                loc.key,
                                loc.size(),
                                l.size
                            ),
                        ));
                    }
                    // Safety: forwarded.
                    unsafe { self.read_one(l.replicas, pieces) }.await
                };
                vec![read.await]
            }
        })
        .await
        .pop()
        .unwrap_or_else(no_result)
    }

    /// Reads one object from `replicas` into `pieces`.
    ///
    /// # Safety
    /// Every piece's local range is valid for writes for the whole call.
    async unsafe fn read_one(&self, replicas: Vec<Replica>, pieces: Vec<Piece>) -> Result<()> {
        let item = ReadItem { replicas, pieces };
        // Safety: forwarded.
        let mut r = unsafe { self.read_objects(std::slice::from_ref(&item)).await };
        r.pop().unwrap_or(Ok(()))
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let mut r = self.get_batch(std::slice::from_ref(&key.to_string())).await;
        r.pop()
            .unwrap_or_else(|| Err(MooncakeError::new(ErrorCode::InternalError, "no result")))
    }

    pub async fn get_batch(&self, keys: &[String]) -> Vec<Result<Vec<u8>>> {
        let out = self.get_batch_once(keys).await;
        // Reads a data port refused for their grants ask the master again once the
        // segment's owner has mounted again (`errors::grant_refused`).
        again_while_grants_refused(out, |again| async move {
            let keys2: Vec<String> = again.iter().map(|i| keys[*i].clone()).collect();
            self.get_batch_once(&keys2).await
        })
        .await
    }

    async fn get_batch_once(&self, keys: &[String]) -> Vec<Result<Vec<u8>>> {
        // Remembered objects are read speculatively into a vector of the remembered
        // size while the lookup runs.
        let mut bufs: Vec<Vec<u8>> = keys.iter().map(|_| Vec::new()).collect();
        let mut guesses = Vec::new();
        for (i, r) in self.remembered(keys).into_iter().enumerate() {
            let Some(loc) = r else { continue };
            let Ok(n) = usize::try_from(loc.size) else {
                continue;
            };
            bufs[i] = Vec::with_capacity(n);
            guesses.push(Guess {
                index: i,
                pieces: layout(&[(bufs[i].as_mut_ptr() as usize, n)], 0),
                loc,
            });
        }
        // Safety: each guessed vector's capacity covers its pieces and is neither
        // touched nor moved until the call returns.
        let found = unsafe { self.locate_guessing(keys, &guesses).await };
        drop(guesses);
        let mut out: Vec<Result<Vec<u8>>> = Vec::with_capacity(keys.len());
        let mut items = Vec::new();
        let mut pos = Vec::new();
        for ((i, f), mut v) in found.into_iter().enumerate().zip(bufs) {
            match f {
                Ok(f) if f.read => {
                    // Safety: the kept speculative read filled exactly `size` bytes.
                    unsafe { v.set_len(f.located.size as usize) };
                    out.push(Ok(v));
                }
                Ok(Found { located: l, .. }) => {
                    if v.capacity() < l.size as usize {
                        v = Vec::with_capacity(l.size as usize);
                    }
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
        // Safety: each vector's capacity covers its pieces and is not touched meanwhile
        // (moving a vector into `out` does not move its heap buffer).
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
        // Safety: forwarded from the caller.
        let out = unsafe { self.batch_get_into_multi_once(keys, bufs).await };
        // As in `get_batch`: refused grants are asked for again.
        again_while_grants_refused(out, |again| async move {
            let keys2: Vec<String> = again.iter().map(|i| keys[*i].clone()).collect();
            let bufs2: Vec<Vec<(usize, usize)>> = again.iter().map(|i| bufs[*i].clone()).collect();
            // Safety: forwarded from the caller (the same buffers).
            unsafe { self.batch_get_into_multi_once(&keys2, &bufs2).await }
        })
        .await
    }

    /// # Safety
    /// Every buffer is valid for writes for the whole call.
    async unsafe fn batch_get_into_multi_once(
        &self,
        keys: &[String],
        bufs: &[Vec<(usize, usize)>],
    ) -> Vec<Result<usize>> {
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
        // Remembered objects that fit their buffers are read speculatively.
        let mut guesses = Vec::new();
        for (j, r) in self.remembered(&ask_keys).into_iter().enumerate() {
            let Some(loc) = r else { continue };
            let b = &bufs[ask[j]];
            let cap: usize = b.iter().map(|(_, n)| *n).sum();
            if (cap as u64) < loc.size {
                continue;
            }
            guesses.push(Guess {
                index: j,
                pieces: layout(&truncate(b, loc.size as usize), 0),
                loc,
            });
        }
        // Safety: forwarded from the caller.
        let located = unsafe { self.locate_guessing(&ask_keys, &guesses).await };
        let mut items = Vec::new();
        let mut pos = Vec::new();
        for (i, l) in ask.into_iter().zip(located) {
            match l {
                Ok(Found { located: l, read }) => {
                    let cap: usize = bufs[i].iter().map(|(_, n)| *n).sum();
                    if (cap as u64) < l.size {
                        out[i] = Err(too_small(&keys[i], cap, l.size));
                        continue;
                    }
                    out[i] = Ok(l.size as usize);
                    if read {
                        continue;
                    }
                    let pieces = layout(&truncate(&bufs[i], l.size as usize), 0);
                    items.push(ReadItem {
                        replicas: l.replicas,
                        pieces,
                    });
                    pos.push(i);
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
        // Safety (both): forwarded.
        let first = unsafe { self.get_range_into_once(key, src_off, addr, len) }.await;
        // As in `get_batch`: a refused grant is asked for again.
        again_while_grants_refused(vec![first], |_| async move {
            vec![unsafe { self.get_range_into_once(key, src_off, addr, len) }.await]
        })
        .await
        .pop()
        .unwrap_or_else(no_result)
    }

    /// [`Client::get_range_into`] without the retries of refused grants.
    ///
    /// # Safety
    /// `[addr, addr+len)` is valid for writes for the whole call.
    async unsafe fn get_range_into_once(
        &self,
        key: &str,
        src_off: u64,
        addr: usize,
        len: usize,
    ) -> Result<usize> {
        let l = self
            .locate(std::slice::from_ref(&key.to_string()))
            .await
            .pop()
            .unwrap_or_else(no_result)?;
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
}

//! The pointer API: the caller passes addresses of host memory it owns (usually
//! registered with `register_buffer`), and the client moves bytes between that memory
//! and the stores directly. Nothing is copied in this process.
//!
//! Safety model: as in the reference, a pointer from Python is trusted to cover
//! `size` bytes for the duration of the call. Shapes are checked here (mismatched list
//! lengths are INVALID_PARAMS for every entry, as the contract says); ranges are checked
//! against registrations by the client.

use super::dummy::{from_amount, from_code};
use super::NativeStore;
use crate::codes;
use crate::replicate::{placement_of, ReplicateConfig};
use mooncake_common::MooncakeError;
use pyo3::prelude::*;

/// Pairs up pointers and sizes, or says why they do not line up.
pub(super) fn pair(
    what: &str,
    n_keys: usize,
    ptrs: &[usize],
    sizes: &[usize],
) -> Result<Vec<(usize, usize)>, MooncakeError> {
    if ptrs.len() != n_keys || sizes.len() != n_keys {
        return Err(MooncakeError::invalid(format!(
            "{what}(): {n_keys} keys, {} pointers and {} sizes must have equal lengths",
            ptrs.len(),
            sizes.len()
        )));
    }
    Ok(ptrs.iter().copied().zip(sizes.iter().copied()).collect())
}

/// Same for the scatter/gather form: one list of buffers per key.
pub(super) fn pair_multi(
    what: &str,
    n_keys: usize,
    ptrs: &[Vec<usize>],
    sizes: &[Vec<usize>],
) -> Result<Vec<Vec<(usize, usize)>>, MooncakeError> {
    if ptrs.len() != n_keys || sizes.len() != n_keys {
        return Err(MooncakeError::invalid(format!(
            "{what}(): {n_keys} keys, {} pointer lists and {} size lists must have equal lengths",
            ptrs.len(),
            sizes.len()
        )));
    }
    ptrs.iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, (p, s))| {
            if p.len() != s.len() {
                return Err(MooncakeError::invalid(format!(
                    "{what}(): key {i} has {} pointers but {} sizes",
                    p.len(),
                    s.len()
                )));
            }
            Ok(p.iter().copied().zip(s.iter().copied()).collect())
        })
        .collect()
}

/// Every entry gets the same code: the shape was wrong or the store is not set up.
pub(super) fn all_failed(n: usize, e: &MooncakeError) -> Vec<i64> {
    vec![codes::code(e) as i64; n]
}

/// Which write the pointer puts perform.
#[derive(Clone, Copy)]
pub(super) enum PtrWrite {
    Insert,
    Upsert,
}

impl NativeStore {
    pub(super) fn put_from_impl(
        &self,
        py: Python<'_>,
        key: &str,
        ptr: usize,
        size: usize,
        config: Option<&Bound<'_, ReplicateConfig>>,
        mode: PtrWrite,
    ) -> Result<(), MooncakeError> {
        let rc = placement_of(config)?;
        if let Some(d) = self.dummy() {
            let keys = [key.to_string()];
            let upsert = matches!(mode, PtrWrite::Upsert);
            let c = py.detach(|| d.put_from(&keys, &[vec![(ptr, size)]], &rc, upsert))[0];
            return from_code(c as i32, &format!("put_from {key:?}"));
        }
        let s = self.session()?;
        let c = &s.client;
        // SAFETY: the caller vouches for [ptr, ptr+size) for the call (module docs).
        s.run(py, async move {
            unsafe {
                match mode {
                    PtrWrite::Insert => c.put_from(key, ptr, size, &rc).await,
                    PtrWrite::Upsert => c.upsert_from(key, ptr, size, &rc).await,
                }
            }
        })
    }

    pub(super) fn get_into_impl(
        &self,
        py: Python<'_>,
        key: &str,
        ptr: usize,
        size: usize,
    ) -> Result<usize, MooncakeError> {
        if let Some(d) = self.dummy() {
            let keys = [key.to_string()];
            let n = py.detach(|| d.get_into(&keys, &[vec![(ptr, size)]]))[0];
            return from_amount(n, &format!("get_into {key:?}")).map(|n| n as usize);
        }
        let s = self.session()?;
        let c = &s.client;
        // SAFETY: as above; the destination is written only within [ptr, ptr+size).
        s.run(
            py,
            async move { unsafe { c.get_into(key, ptr, size).await } },
        )
    }

    pub(super) fn batch_put_from_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        ptrs: &[usize],
        sizes: &[usize],
        config: Option<&Bound<'_, ReplicateConfig>>,
        mode: PtrWrite,
    ) -> Vec<i64> {
        let what = match mode {
            PtrWrite::Insert => "batch_put_from",
            PtrWrite::Upsert => "batch_upsert_from",
        };
        if let Some(d) = self.dummy() {
            let prepared =
                pair(what, keys.len(), ptrs, sizes).and_then(|b| Ok((b, placement_of(config)?)));
            return match prepared {
                Ok((bufs, rc)) => {
                    let bufs: Vec<Vec<(usize, usize)>> =
                        bufs.into_iter().map(|b| vec![b]).collect();
                    let upsert = matches!(mode, PtrWrite::Upsert);
                    py.detach(|| d.put_from(keys, &bufs, &rc, upsert))
                }
                Err(e) => all_failed(keys.len(), &e),
            };
        }
        let prepared = (|| {
            let bufs = pair(what, keys.len(), ptrs, sizes)?;
            let rc = placement_of(config)?;
            Ok((bufs, rc, self.session()?))
        })();
        let (bufs, rc, s) = match prepared {
            Ok(p) => p,
            Err(e) => return all_failed(keys.len(), &e),
        };
        let c = &s.client;
        // SAFETY: every (ptr, size) is vouched for by the caller (module docs).
        let results = s.run(py, async {
            unsafe {
                match mode {
                    PtrWrite::Insert => c.batch_put_from(keys, &bufs, &rc).await,
                    PtrWrite::Upsert => c.batch_upsert_from(keys, &bufs, &rc).await,
                }
            }
        });
        results.iter().map(|r| codes::status(r) as i64).collect()
    }

    pub(super) fn batch_get_into_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        ptrs: &[usize],
        sizes: &[usize],
    ) -> Vec<i64> {
        if let Some(d) = self.dummy() {
            return match pair("batch_get_into", keys.len(), ptrs, sizes) {
                Ok(bufs) => {
                    let bufs: Vec<Vec<(usize, usize)>> =
                        bufs.into_iter().map(|b| vec![b]).collect();
                    py.detach(|| d.get_into(keys, &bufs))
                }
                Err(e) => all_failed(keys.len(), &e),
            };
        }
        let prepared = pair("batch_get_into", keys.len(), ptrs, sizes)
            .and_then(|bufs| Ok((bufs, self.session()?)));
        let (bufs, s) = match prepared {
            Ok(p) => p,
            Err(e) => return all_failed(keys.len(), &e),
        };
        let c = &s.client;
        // SAFETY: every destination is vouched for by the caller (module docs).
        let results = s.run(py, async { unsafe { c.batch_get_into(keys, &bufs).await } });
        results.into_iter().map(codes::amount).collect()
    }

    pub(super) fn batch_put_multi_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        ptrs: &[Vec<usize>],
        sizes: &[Vec<usize>],
        config: Option<&Bound<'_, ReplicateConfig>>,
    ) -> Vec<i64> {
        if let Some(d) = self.dummy() {
            let prepared = pair_multi("batch_put_from_multi_buffers", keys.len(), ptrs, sizes)
                .and_then(|b| Ok((b, placement_of(config)?)));
            return match prepared {
                Ok((bufs, rc)) => py.detach(|| d.put_from(keys, &bufs, &rc, false)),
                Err(e) => all_failed(keys.len(), &e),
            };
        }
        let prepared = (|| {
            let bufs = pair_multi("batch_put_from_multi_buffers", keys.len(), ptrs, sizes)?;
            let rc = placement_of(config)?;
            Ok((bufs, rc, self.session()?))
        })();
        let (bufs, rc, s) = match prepared {
            Ok(p) => p,
            Err(e) => return all_failed(keys.len(), &e),
        };
        let c = &s.client;
        // SAFETY: every (ptr, size) is vouched for by the caller (module docs).
        let results = s.run(py, async {
            unsafe { c.batch_put_from_multi(keys, &bufs, &rc).await }
        });
        results.iter().map(|r| codes::status(r) as i64).collect()
    }

    pub(super) fn batch_get_multi_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        ptrs: &[Vec<usize>],
        sizes: &[Vec<usize>],
    ) -> Vec<i64> {
        if let Some(d) = self.dummy() {
            return match pair_multi("batch_get_into_multi_buffers", keys.len(), ptrs, sizes) {
                Ok(bufs) => py.detach(|| d.get_into(keys, &bufs)),
                Err(e) => all_failed(keys.len(), &e),
            };
        }
        let prepared = pair_multi("batch_get_into_multi_buffers", keys.len(), ptrs, sizes)
            .and_then(|bufs| Ok((bufs, self.session()?)));
        let (bufs, s) = match prepared {
            Ok(p) => p,
            Err(e) => return all_failed(keys.len(), &e),
        };
        let c = &s.client;
        // SAFETY: every destination is vouched for by the caller (module docs).
        let results = s.run(py, async {
            unsafe { c.batch_get_into_multi(keys, &bufs).await }
        });
        results.into_iter().map(codes::amount).collect()
    }

    pub(super) fn register_impl(&self, ptr: usize, size: usize) -> Result<(), MooncakeError> {
        if ptr == 0 || size == 0 {
            return Err(MooncakeError::invalid(format!(
                "register_buffer(): null pointer or zero size (ptr=0x{ptr:x}, size={size})"
            )));
        }
        if self.dummy().is_some() {
            // The real client reaches only shared pools, which need no registration.
            return match mooncake_realclient::shm::find(ptr, size) {
                Some(_) => Ok(()),
                None => Err(MooncakeError::invalid(format!(
                    "register_buffer(): [0x{ptr:x}, +{size}) is not inside a \
                     MooncakeHostMemAllocator pool; a dummy client can only use those"
                ))),
            };
        }
        let s = self.session()?;
        // SAFETY: the caller owns [ptr, ptr+size) until unregister_buffer (module docs).
        unsafe { s.client.register_buffer(ptr, size) }
    }

    pub(super) fn unregister_impl(&self, ptr: usize) -> Result<(), MooncakeError> {
        if self.dummy().is_some() {
            return Ok(());
        }
        self.session()?.client.unregister_buffer(ptr)
    }
}

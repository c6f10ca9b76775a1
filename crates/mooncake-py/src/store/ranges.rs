//! `get_into_ranges`: ranged zero-copy reads, buffer-major. For buffer i, key j and
//! fragment k, `all_sizes[i][j][k]` bytes at offset `all_src_offsets[i][j][k]` of object
//! `all_keys[i][j]` land at `buffer_ptrs[i] + all_dst_offsets[i][j][k]`. Each fragment
//! gets its own result (bytes read or a negative code). The answer's shape mirrors the
//! request's, as the reference's does: a key with no fragments gets an empty list, and
//! a key whose offset and size lists disagree in length gets one INVALID_PARAMS code
//! (there is no fragment count to mirror), without stopping the others.

use super::NativeStore;
use crate::codes;
use futures::future::join_all;
use pyo3::prelude::*;

/// One ranged read, with where its result goes.
struct Fragment<'a> {
    at: (usize, usize, usize),
    key: &'a str,
    src_off: u64,
    addr: usize,
    len: usize,
}

/// The caller's description of the reads.
pub(super) struct Ranges {
    pub buffer_ptrs: Vec<usize>,
    pub all_keys: Vec<Vec<String>>,
    pub all_dst_offsets: Vec<Vec<Vec<u64>>>,
    pub all_src_offsets: Vec<Vec<Vec<u64>>>,
    pub all_sizes: Vec<Vec<Vec<usize>>>,
}

impl Ranges {
    /// The fragments of key (i, j), or None when its lists do not line up.
    fn fragments_of(&self, i: usize, j: usize) -> Option<Vec<Fragment<'_>>> {
        let base = *self.buffer_ptrs.get(i)?;
        let key = self.all_keys.get(i)?.get(j)?;
        let dst = self.all_dst_offsets.get(i)?.get(j)?;
        let src = self.all_src_offsets.get(i)?.get(j)?;
        let sizes = self.all_sizes.get(i)?.get(j)?;
        if dst.len() != sizes.len() || src.len() != sizes.len() {
            return None;
        }
        (0..sizes.len())
            .map(|k| {
                let addr = base.checked_add(usize::try_from(dst[k]).ok()?)?;
                addr.checked_add(sizes[k])?;
                Some(Fragment {
                    at: (i, j, k),
                    key,
                    src_off: src[k],
                    addr,
                    len: sizes[k],
                })
            })
            .collect()
    }

    /// How many results key (i, j) gets: one per fragment when its lists agree
    /// (none for a key with no fragments), else a single code.
    fn width(&self, i: usize, j: usize) -> usize {
        match self.fragments_of(i, j) {
            Some(f) => f.len(),
            None => 1,
        }
    }
}

impl NativeStore {
    pub(super) fn get_into_ranges_impl(&self, py: Python<'_>, r: &Ranges) -> Vec<Vec<Vec<i64>>> {
        let invalid = codes::INVALID as i64;
        let mut out: Vec<Vec<Vec<i64>>> = r
            .all_keys
            .iter()
            .enumerate()
            .map(|(i, keys)| {
                (0..keys.len())
                    .map(|j| vec![invalid; r.width(i, j)])
                    .collect()
            })
            .collect();
        let fragments: Vec<Fragment<'_>> = (0..r.all_keys.len())
            .flat_map(|i| (0..r.all_keys[i].len()).map(move |j| (i, j)))
            .filter_map(|(i, j)| r.fragments_of(i, j))
            .flatten()
            .collect();
        if fragments.is_empty() {
            return out;
        }
        if let Some(d) = self.dummy() {
            let frags: Vec<(&str, u64, usize, usize)> = fragments
                .iter()
                .map(|f| (f.key, f.src_off, f.addr, f.len))
                .collect();
            let results = py.detach(|| d.get_ranges(&frags));
            for (f, res) in fragments.iter().zip(results) {
                out[f.at.0][f.at.1][f.at.2] = res;
            }
            return out;
        }
        let s = match self.session() {
            Ok(s) => s,
            Err(e) => {
                let c = codes::code(&e) as i64;
                for f in &fragments {
                    out[f.at.0][f.at.1][f.at.2] = c;
                }
                return out;
            }
        };
        let c = &s.client;
        let results = s.run(py, async {
            join_all(fragments.iter().map(|f| async move {
                // SAFETY: the caller vouches for its buffers, as for every pointer call.
                unsafe { c.get_range_into(f.key, f.src_off, f.addr, f.len).await }
            }))
            .await
        });
        for (f, res) in fragments.iter().zip(results) {
            out[f.at.0][f.at.1][f.at.2] = codes::amount(res);
        }
        out
    }
}

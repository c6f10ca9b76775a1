//! Ranged puts and gets in sessions: `batch_put_session_start` reserves objects,
//! `batch_put_from_multi_buffer_ranges` writes pieces of them at any offsets (from
//! registered memory), `batch_put_session_end` / `_revoke` complete or abandon them;
//! `batch_get_session_start` looks objects up once, `batch_get_into_multi_buffer_ranges`
//! reads ranges of them with no further master call, `batch_get_session_end` forgets
//! them. The tickets are kept here per key (a key has at most one session of each
//! kind) and dropped by `close()`. Embedded stores only: a dummy answers -600.

use super::NativeStore;
use crate::codes;
use mooncake_client::sessions::RangePiece;
use mooncake_client::{GetTicket, PutTicket};
use mooncake_common::MooncakeError;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// The open sessions of one store.
#[derive(Default)]
pub struct Sessions {
    puts: Mutex<HashMap<String, PutTicket>>,
    gets: Mutex<HashMap<String, GetTicket>>,
}

impl Sessions {
    pub fn clear(&self) {
        self.puts.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.gets.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

const INVALID: i32 = codes::INVALID;

fn no_session(what: &str) -> MooncakeError {
    MooncakeError::invalid(format!("{what}: not supported by a dummy client"))
}

/// Each key's pieces, or None when its three lists disagree in length.
fn pieces_of(ptrs: &[usize], sizes: &[usize], offsets: &[u64]) -> Option<Vec<RangePiece>> {
    if ptrs.len() != sizes.len() || ptrs.len() != offsets.len() {
        return None;
    }
    Some(
        ptrs.iter()
            .zip(sizes)
            .zip(offsets)
            .map(|((&p, &s), &o)| (p, s, o))
            .collect(),
    )
}

impl NativeStore {
    pub(super) fn put_session_start_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        sizes: &[u64],
        config: Option<&Bound<'_, crate::replicate::ReplicateConfig>>,
    ) -> Vec<i32> {
        let prepared = (|| {
            if self.dummy().is_some() {
                return Err(no_session("batch_put_session_start"));
            }
            if keys.len() != sizes.len() {
                return Err(MooncakeError::invalid(
                    "batch_put_session_start(): keys and sizes differ in length",
                ));
            }
            Ok((crate::replicate::placement_of(config)?, self.session()?))
        })();
        let (rc, s) = match prepared {
            Ok(p) => p,
            Err(e) => return vec![codes::code(&e); keys.len()],
        };
        let mut out = vec![0; keys.len()];
        let mut ask = Vec::new();
        {
            let open = self.sessions.puts.lock().unwrap_or_else(|e| e.into_inner());
            for (i, k) in keys.iter().enumerate() {
                if open.contains_key(k) || keys[..i].contains(k) {
                    out[i] = INVALID;
                } else {
                    ask.push(i);
                }
            }
        }
        let ask_keys: Vec<String> = ask.iter().map(|&i| keys[i].clone()).collect();
        let ask_sizes: Vec<u64> = ask.iter().map(|&i| sizes[i]).collect();
        let started = s.run(py, s.client.put_session_start(&ask_keys, &ask_sizes, &rc));
        let mut open = self.sessions.puts.lock().unwrap_or_else(|e| e.into_inner());
        for (i, r) in ask.into_iter().zip(started) {
            match r {
                Ok(t) => {
                    open.insert(keys[i].clone(), t);
                }
                Err(e) => out[i] = codes::code(&e),
            }
        }
        out
    }

    pub(super) fn put_ranges_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        ptrs: &[Vec<usize>],
        sizes: &[Vec<usize>],
        offsets: &[Vec<u64>],
    ) -> Vec<i32> {
        let n = keys.len();
        if self.dummy().is_some() {
            return vec![codes::code(&no_session("batch_put_from_multi_buffer_ranges")); n];
        }
        if ptrs.len() != n || sizes.len() != n || offsets.len() != n {
            return vec![INVALID; n];
        }
        let s = match self.session() {
            Ok(s) => s,
            Err(e) => return vec![codes::code(&e); n],
        };
        let mut out = vec![INVALID; n];
        let tickets: Vec<(usize, PutTicket, Vec<RangePiece>)> = {
            let open = self.sessions.puts.lock().unwrap_or_else(|e| e.into_inner());
            (0..n)
                .filter_map(|i| {
                    let t = open.get(&keys[i])?.clone();
                    Some((i, t, pieces_of(&ptrs[i], &sizes[i], &offsets[i])?))
                })
                .collect()
        };
        let items: Vec<(&PutTicket, Vec<RangePiece>)> =
            tickets.iter().map(|(_, t, p)| (t, p.clone())).collect();
        // SAFETY: the caller vouches for its buffers, as for every pointer call.
        let results = s.run(py, async {
            unsafe { s.client.put_session_write(&items).await }
        });
        for ((i, _, _), r) in tickets.iter().zip(results) {
            out[*i] = codes::status(&r);
        }
        out
    }

    pub(super) fn put_session_finish_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        revoke: bool,
    ) -> Vec<i32> {
        if self.dummy().is_some() {
            return vec![codes::code(&no_session("batch_put_session_end")); keys.len()];
        }
        let s = match self.session() {
            Ok(s) => s,
            Err(e) => return vec![codes::code(&e); keys.len()],
        };
        let mut out = vec![INVALID; keys.len()];
        let taken: Vec<(usize, PutTicket)> = {
            let mut open = self.sessions.puts.lock().unwrap_or_else(|e| e.into_inner());
            keys.iter()
                .enumerate()
                .filter_map(|(i, k)| open.remove(k).map(|t| (i, t)))
                .collect()
        };
        let refs: Vec<&PutTicket> = taken.iter().map(|(_, t)| t).collect();
        let results = s.run(py, s.client.put_session_finish(&refs, revoke));
        for ((i, _), r) in taken.iter().zip(results) {
            out[*i] = codes::status(&r);
        }
        out
    }

    pub(super) fn get_session_start_impl(&self, py: Python<'_>, keys: &[String]) -> Vec<i32> {
        if self.dummy().is_some() {
            return vec![codes::code(&no_session("batch_get_session_start")); keys.len()];
        }
        let s = match self.session() {
            Ok(s) => s,
            Err(e) => return vec![codes::code(&e); keys.len()],
        };
        let started = s.run(py, s.client.get_session_start(keys));
        let mut open = self.sessions.gets.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .zip(started)
            .map(|(k, r)| match r {
                Ok(t) => {
                    open.insert(k.clone(), t);
                    0
                }
                Err(e) => {
                    open.remove(k);
                    codes::code(&e)
                }
            })
            .collect()
    }

    pub(super) fn get_ranges_impl(
        &self,
        py: Python<'_>,
        keys: &[String],
        ptrs: &[Vec<usize>],
        sizes: &[Vec<usize>],
        offsets: &[Vec<u64>],
    ) -> Vec<i64> {
        let n = keys.len();
        if self.dummy().is_some() {
            return vec![codes::code(&no_session("batch_get_into_multi_buffer_ranges")) as i64; n];
        }
        if ptrs.len() != n || sizes.len() != n || offsets.len() != n {
            return vec![INVALID as i64; n];
        }
        let s = match self.session() {
            Ok(s) => s,
            Err(e) => return vec![codes::code(&e) as i64; n],
        };
        let mut out = vec![INVALID as i64; n];
        let tickets: Vec<(usize, GetTicket, Vec<RangePiece>)> = {
            let open = self.sessions.gets.lock().unwrap_or_else(|e| e.into_inner());
            (0..n)
                .filter_map(|i| {
                    let t = open.get(&keys[i])?.clone();
                    Some((i, t, pieces_of(&ptrs[i], &sizes[i], &offsets[i])?))
                })
                .collect()
        };
        let items: Vec<(&GetTicket, Vec<RangePiece>)> =
            tickets.iter().map(|(_, t, p)| (t, p.clone())).collect();
        // SAFETY: the caller vouches for its buffers, as for every pointer call.
        let results = s.run(py, async {
            unsafe { s.client.get_session_read(&items).await }
        });
        for ((i, _, _), r) in tickets.iter().zip(results) {
            if matches!(&r, Err(e) if e.code == mooncake_common::ErrorCode::LeaseExpired) {
                self.sessions
                    .gets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&keys[*i]);
            }
            out[*i] = codes::amount(r);
        }
        out
    }

    pub(super) fn get_session_end_impl(&self, keys: &[String]) -> i32 {
        let mut open = self.sessions.gets.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            open.remove(k);
        }
        0
    }
}

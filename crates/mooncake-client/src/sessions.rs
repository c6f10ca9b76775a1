//! Ranged puts and gets in sessions (the reference's `batch_put_session_*` and
//! `batch_get_session_*`): a put session reserves an object of a known size
//! (`BatchPutStart`), is written piece by piece at any offsets from registered memory
//! in as many calls as the caller likes, and is then completed (`BatchPutEnd`) or
//! revoked; a get session looks its objects up once and reads ranges of them with no
//! further master call until the lookup's lease runs out.
//!
//! The caller keeps the tickets (the Python binding keeps them per key); a ticket is
//! only a record of what the master answered.

use crate::client::Client;
use crate::config::ReplicateConfig;
use crate::errors::{
    again_while_grants_refused, check_code, check_key, code_error, fail_at, wrong_count,
};
use crate::io::{Job, Piece};
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{BatchKeyRequest, BatchPutEndRequest, BatchPutStartRequest, Replica};
use mooncake_transfer::Opcode;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A reserved object: where its replicas are and the put id that completes it.
#[derive(Debug, Clone)]
pub struct PutTicket {
    key: String,
    put_id: u64,
    replicas: Vec<Replica>,
    size: u64,
}

/// A looked-up object: its complete replicas, its size, and when the lease the
/// lookup was granted runs out. Clones share the replicas, so when a read finds
/// their grants refused and looks the key up again, every clone reads what the new
/// lookup named.
#[derive(Debug, Clone)]
pub struct GetTicket {
    key: String,
    replicas: Arc<Mutex<Vec<Replica>>>,
    size: u64,
    lease_until: Instant,
}

impl PutTicket {
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl GetTicket {
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One piece of a ranged call: local address, length, offset in the object.
pub type RangePiece = (usize, usize, u64);

fn pieces_within(what: &str, pieces: &[RangePiece], size: u64) -> Result<Vec<Piece>> {
    pieces
        .iter()
        .filter(|p| p.1 > 0)
        .map(|&(local, len, obj_off)| {
            if obj_off.checked_add(len as u64).is_none_or(|end| end > size) {
                return Err(MooncakeError::invalid(format!(
                    "{what}: range +{obj_off}..+{} is outside the {size}-byte object",
                    obj_off as u128 + len as u128
                )));
            }
            Ok(Piece {
                local,
                len,
                obj_off,
            })
        })
        .collect()
}

impl Client {
    /// Reserves one object per key of `sizes[i]` bytes. A key that exists already is
    /// OBJECT_ALREADY_EXISTS (a session writes new objects only).
    pub async fn put_session_start(
        &self,
        keys: &[String],
        sizes: &[u64],
        rc: &ReplicateConfig,
    ) -> Vec<Result<PutTicket>> {
        if keys.len() != sizes.len() {
            return keys
                .iter()
                .map(|_| {
                    Err(MooncakeError::invalid(
                        "batch_put_session_start: keys and sizes differ in length",
                    ))
                })
                .collect();
        }
        let mut out: Vec<Result<PutTicket>> = Vec::with_capacity(keys.len());
        let mut ask = Vec::new();
        for (i, (k, &s)) in keys.iter().zip(sizes).enumerate() {
            let ok = self.ensure_open().and_then(|_| check_key(k)).and_then(|_| {
                if s == 0 {
                    Err(MooncakeError::invalid(format!("put {k:?}: empty value")))
                } else {
                    Ok(())
                }
            });
            match ok {
                Ok(()) => {
                    ask.push(i);
                    out.push(Err(MooncakeError::new(
                        ErrorCode::InternalError,
                        "no result",
                    )));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if ask.is_empty() {
            return out;
        }
        let req = BatchPutStartRequest {
            client_id: self.inner.client_id.clone(),
            keys: ask.iter().map(|&i| keys[i].clone()).collect(),
            sizes: ask.iter().map(|&i| sizes[i]).collect(),
            config: Some(rc.into()),
            segment_table: false,
        };
        let r = self
            .inner
            .rpc
            .call("batch_put_start", |mut c| async move {
                c.batch_put_start(req).await
            })
            .await;
        match r {
            Ok(r) if r.results.len() == ask.len() => {
                for (i, st) in ask.into_iter().zip(r.results) {
                    out[i] = if st.code != 0 {
                        Err(code_error(
                            st.code,
                            &format!("put_session_start {:?}", keys[i]),
                        ))
                    } else if st.replicas.iter().any(|r| r.segment.is_none())
                        || st.replicas.is_empty()
                    {
                        Err(MooncakeError::new(
                            ErrorCode::InvalidReplica,
                            "put_session_start: a replica without its segment",
                        ))
                    } else {
                        Ok(PutTicket {
                            key: keys[i].clone(),
                            put_id: st.put_id,
                            replicas: st.replicas,
                            size: sizes[i],
                        })
                    };
                }
            }
            Ok(_) => fail_at(&mut out, ask, &wrong_count("batch_put_start")),
            Err(e) => fail_at(&mut out, ask, &e),
        }
        out
    }

    /// Writes each item's pieces into every replica of its ticket.
    ///
    /// # Safety
    /// Every local range is valid for reads for the whole call.
    pub async unsafe fn put_session_write(
        &self,
        items: &[(&PutTicket, Vec<RangePiece>)],
    ) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = Vec::with_capacity(items.len());
        let mut jobs = Vec::new();
        let mut owner = Vec::new();
        for (n, (t, pieces)) in items.iter().enumerate() {
            let planned = self.ensure_open().and_then(|_| {
                pieces
                    .iter()
                    .try_for_each(|&(a, l, _)| self.inner.buffers.check(a, l))?;
                pieces_within(&format!("put {:?}", t.key), pieces, t.size)
            });
            match planned {
                Ok(p) => {
                    results.push(Ok(()));
                    for r in &t.replicas {
                        jobs.push(Job {
                            replica: r,
                            pieces: p.clone(),
                        });
                        owner.push(n);
                    }
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let own = self.inner.segment.as_ref();
        // Safety: forwarded from the caller.
        let outcome = unsafe { self.inner.data.run_with(Opcode::Write, &jobs, own).await };
        for (j, r) in outcome.into_iter().enumerate() {
            if let Err(e) = r {
                if results[owner[j]].is_ok() {
                    results[owner[j]] = Err(e);
                }
            }
        }
        results
    }

    /// Completes (`revoke == false`) or abandons the tickets' objects.
    pub async fn put_session_finish(
        &self,
        tickets: &[&PutTicket],
        revoke: bool,
    ) -> Vec<Result<()>> {
        if tickets.is_empty() {
            return Vec::new();
        }
        if let Err(e) = self.ensure_open() {
            return tickets.iter().map(|_| Err(e.clone())).collect();
        }
        let req = BatchPutEndRequest {
            client_id: self.inner.client_id.clone(),
            keys: tickets.iter().map(|t| t.key.clone()).collect(),
            put_ids: tickets.iter().map(|t| t.put_id).collect(),
        };
        let r = if revoke {
            self.inner
                .rpc
                .call("batch_put_revoke", |mut c| async move {
                    c.batch_put_revoke(req).await
                })
                .await
        } else {
            self.inner
                .rpc
                .call("batch_put_end", |mut c| async move {
                    c.batch_put_end(req).await
                })
                .await
        };
        match r {
            Ok(r) if r.codes.len() == tickets.len() => tickets
                .iter()
                .zip(r.codes)
                .map(|(t, c)| {
                    let done = check_code(c, &format!("put_session_end {:?}", t.key));
                    if done.is_ok() && !revoke {
                        // Written and complete: the next get reads it speculatively.
                        self.remember_written(&t.key, &t.replicas, t.size);
                    }
                    done
                })
                .collect(),
            Ok(_) => tickets
                .iter()
                .map(|_| Err(wrong_count("batch_put_end")))
                .collect(),
            Err(e) => tickets.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Looks the keys up once; their ranges can then be read until the lease runs out.
    pub async fn get_session_start(&self, keys: &[String]) -> Vec<Result<GetTicket>> {
        if let Err(e) = self.ensure_open() {
            return keys.iter().map(|_| Err(e.clone())).collect();
        }
        let mut out: Vec<Result<GetTicket>> = Vec::with_capacity(keys.len());
        let mut ask = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match check_key(k) {
                Ok(()) => {
                    ask.push(i);
                    out.push(Err(MooncakeError::new(
                        ErrorCode::InternalError,
                        "no result",
                    )));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if ask.is_empty() {
            return out;
        }
        let asked_at = Instant::now();
        let req = BatchKeyRequest {
            keys: ask.iter().map(|&i| keys[i].clone()).collect(),
        };
        let r = self
            .inner
            .rpc
            .call("batch_get_replica_list", |mut c| async move {
                c.batch_get_replica_list(req).await
            })
            .await;
        match r {
            Ok(r) if r.results.len() == ask.len() => {
                for (i, res) in ask.into_iter().zip(r.results) {
                    out[i] = check_code(res.code, &format!("get_session_start {:?}", keys[i]))
                        .and_then(|_| {
                            if res.replicas.is_empty() {
                                Err(MooncakeError::new(
                                    ErrorCode::ReplicaIsNotReady,
                                    format!("get {:?}: no complete replica", keys[i]),
                                ))
                            } else {
                                Ok(GetTicket {
                                    key: keys[i].clone(),
                                    replicas: Arc::new(Mutex::new(res.replicas)),
                                    size: res.size,
                                    lease_until: asked_at + Duration::from_millis(res.lease_ttl_ms),
                                })
                            }
                        });
                }
            }
            Ok(_) => fail_at(&mut out, ask, &wrong_count("batch_get_replica_list")),
            Err(e) => fail_at(&mut out, ask, &e),
        }
        out
    }

    /// Reads each item's ranges; bytes read per item. LEASE_EXPIRED once the
    /// ticket's lease has run out (the object may be evicted since: start again).
    /// A read a data port refused for its grant (the master restarted or handed over
    /// since the session started, or the segment's owner had not mounted again yet)
    /// looks the key up again, keeps what that names in the ticket and reads again,
    /// as long as the object still has the ticket's size; one replaced by an object
    /// of another size is OBJECT_NOT_FOUND (start the session again).
    ///
    /// # Safety
    /// Every local range is valid for writes for the whole call.
    pub async unsafe fn get_session_read(
        &self,
        items: &[(&GetTicket, Vec<RangePiece>)],
    ) -> Vec<Result<usize>> {
        // Safety: forwarded from the caller.
        let first = unsafe { self.get_session_read_once(items) }.await;
        again_while_grants_refused(first, |again| async move {
            let keys: Vec<String> = again.iter().map(|&n| items[n].0.key.clone()).collect();
            let located = self.locate(&keys).await;
            let mut out: Vec<Result<usize>> = Vec::with_capacity(again.len());
            let mut read = Vec::new();
            let mut pos = Vec::new();
            for (&n, l) in again.iter().zip(located) {
                let t = items[n].0;
                match l {
                    Ok(l) if l.size == t.size => {
                        *t.replicas.lock() = l.replicas;
                        read.push(items[n].clone());
                        pos.push(out.len());
                        out.push(Ok(0));
                    }
                    Ok(l) => out.push(Err(MooncakeError::new(
                        ErrorCode::ObjectNotFound,
                        format!(
                            "get session {:?}: the {}-byte object was replaced by one of {} bytes; start the session again",
                            t.key, t.size, l.size
                        ),
                    ))),
                    Err(e) => out.push(Err(e)),
                }
            }
            // Safety: forwarded from the caller (the same ranges).
            let retried = unsafe { self.get_session_read_once(&read) }.await;
            for (p, r) in pos.into_iter().zip(retried) {
                out[p] = r;
            }
            out
        })
        .await
    }

    /// [`Client::get_session_read`] without the retries of refused grants.
    ///
    /// # Safety
    /// Every local range is valid for writes for the whole call.
    async unsafe fn get_session_read_once(
        &self,
        items: &[(&GetTicket, Vec<RangePiece>)],
    ) -> Vec<Result<usize>> {
        let mut results: Vec<Result<usize>> = Vec::with_capacity(items.len());
        let mut read = Vec::new();
        let mut pos = Vec::new();
        for (n, (t, pieces)) in items.iter().enumerate() {
            let planned = self.ensure_open().and_then(|_| {
                if Instant::now() >= t.lease_until {
                    return Err(MooncakeError::new(
                        ErrorCode::LeaseExpired,
                        "get session: the lease ran out; start the session again",
                    ));
                }
                pieces
                    .iter()
                    .try_for_each(|&(a, l, _)| self.inner.buffers.check(a, l))?;
                pieces_within("get session", pieces, t.size)
            });
            match planned {
                Ok(p) => {
                    results.push(Ok(p.iter().map(|x| x.len).sum()));
                    read.push(crate::read::ReadItem {
                        replicas: t.replicas.lock().clone(),
                        pieces: p,
                    });
                    pos.push(n);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        // Safety: forwarded from the caller.
        let outcome = unsafe { self.read_objects(&read).await };
        for (n, r) in pos.into_iter().zip(outcome) {
            if let Err(e) = r {
                results[n] = Err(e);
            }
        }
        results
    }
}

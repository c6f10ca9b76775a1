//! One request from a dummy: decoded, run on the client, answered. Pointers are
//! translated into this process's mappings of the dummy's pools first; a key whose
//! buffers are not all inside one registered pool fails alone with INVALID_PARAMS.

use super::mappings::Mapping;
use super::Service;
use crate::ops::{self, get_bufs, get_rc, put_replica, replica_view};
use crate::wire::{Dec, Enc, WireError};
use mooncake_common::{ErrorCode, MooncakeError};
use std::os::fd::OwnedFd;
use std::sync::Arc;

fn code(e: &MooncakeError) -> i32 {
    match e.code {
        ErrorCode::Ok => ErrorCode::InternalError.code(),
        c => c.code(),
    }
}

fn status<T>(r: &Result<T, MooncakeError>) -> i32 {
    r.as_ref().map_or_else(code, |_| 0)
}

fn amount(r: Result<impl TryInto<i64>, MooncakeError>) -> i64 {
    match r {
        Ok(n) => n.try_into().unwrap_or(i64::MAX),
        Err(e) => code(&e) as i64,
    }
}

/// Keys with their buffers translated; `held` keeps the mappings for the call.
struct Translated {
    keys: Vec<String>,
    bufs: Vec<Vec<(usize, usize)>>,
    /// Index in the request of each translated key.
    at: Vec<usize>,
    /// Per request key: `Some(code)` when it failed translation.
    failed: Vec<Option<i64>>,
    held: Vec<Arc<Mapping>>,
}

fn translate(svc: &Service, token: u64, d: &mut Dec<'_>) -> Result<Translated, WireError> {
    let n = d.len(8)?;
    let mut t = Translated {
        keys: Vec::with_capacity(n),
        bufs: Vec::with_capacity(n),
        at: Vec::with_capacity(n),
        failed: vec![None; n],
        held: Vec::new(),
    };
    for i in 0..n {
        let key = d.string()?;
        let bufs = get_bufs(d)?;
        let mut out = Vec::with_capacity(bufs.len());
        let mut err = None;
        for (p, l) in bufs {
            match svc.mappings.translate(token, p, l) {
                Ok((m, addr)) => {
                    out.push((addr, l as usize));
                    t.held.push(m);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dummy pointer rejected");
                    err = Some(code(&e) as i64);
                    break;
                }
            }
        }
        match err {
            Some(c) => t.failed[i] = Some(c),
            None => {
                t.keys.push(key);
                t.bufs.push(out);
                t.at.push(i);
            }
        }
    }
    Ok(t)
}

impl Translated {
    /// Results in request order: the translated keys' results merged with the
    /// failures.
    fn merge(self, results: Vec<i64>) -> Vec<i64> {
        let mut out: Vec<i64> = self.failed.iter().map(|f| f.unwrap_or(0)).collect();
        for (i, r) in self.at.into_iter().zip(results) {
            out[i] = r;
        }
        out
    }
}

pub(super) fn handle(
    svc: &Arc<Service>,
    token: u64,
    body: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Vec<u8>, WireError> {
    let c = &svc.client;
    let rt = &svc.rt;
    let mut d = Dec::new(body);
    let op = d.u8()?;
    let mut e = Enc::default();
    match op {
        ops::REGISTER_POOL => {
            let tok = d.u64()?;
            let base = d.u64()?;
            let len = d.u64()?;
            d.end()?;
            let r = match fds.into_iter().next() {
                Some(fd) if tok == token => svc.mappings.register(c, token, base, len, fd),
                Some(_) => Err(MooncakeError::invalid("a pool for another dummy's token")),
                None => Err(MooncakeError::invalid(
                    "no file descriptor came with the pool (register it over the unix socket)",
                )),
            };
            e.i32(status(&r))
                .str(&r.err().map(|e| e.message).unwrap_or_default());
        }
        ops::UNREGISTER_POOL => {
            let base = d.u64()?;
            d.end()?;
            let found = svc.mappings.unregister(token, base);
            e.i32(if found {
                0
            } else {
                ErrorCode::InvalidParams.code()
            });
        }
        ops::BYE => {
            d.end()?;
            svc.mappings.forget(token);
            e.i32(0);
        }
        ops::PUT_VALUES => {
            let upsert = d.bool()?;
            let rc = get_rc(&mut d)?;
            let n = d.len(8)?;
            let mut keys = Vec::with_capacity(n);
            let mut values: Vec<Vec<&[u8]>> = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(d.string()?);
                let parts = d.len(4)?;
                values.push((0..parts).map(|_| d.bytes()).collect::<Result<_, _>>()?);
            }
            d.end()?;
            let codes: Vec<i32> = if n == 1 {
                let r = rt.block_on(async {
                    if upsert {
                        c.upsert_parts(&keys[0], &values[0], &rc).await
                    } else {
                        c.put_parts(&keys[0], &values[0], &rc).await
                    }
                });
                vec![status(&r)]
            } else {
                // A batch item of several parts is joined here (the dummy sends one).
                let joined: Vec<std::borrow::Cow<'_, [u8]>> = values
                    .iter()
                    .map(|p| match p.as_slice() {
                        [one] => std::borrow::Cow::Borrowed(*one),
                        many => std::borrow::Cow::Owned(many.concat()),
                    })
                    .collect();
                let slices: Vec<&[u8]> = joined.iter().map(|v| v.as_ref()).collect();
                let r = rt.block_on(async {
                    if upsert {
                        c.upsert_batch(&keys, &slices, &rc).await
                    } else {
                        c.put_batch(&keys, &slices, &rc).await
                    }
                });
                r.iter().map(status).collect()
            };
            e.i32s(&codes);
        }
        ops::GET_VALUES => {
            let keys = d.strs()?;
            d.end()?;
            let r = rt.block_on(c.get_batch(&keys));
            e.len(r.len());
            for v in r {
                match v {
                    Ok(v) => e.i32(0).bytes(&v),
                    Err(err) => e.i32(code(&err)).bytes(&[]),
                };
            }
        }
        ops::EXIST => {
            let keys = d.strs()?;
            d.end()?;
            let r = rt.block_on(c.batch_exist(&keys));
            let codes: Vec<i32> = r
                .into_iter()
                .map(|x| match x {
                    Ok(true) => 1,
                    Ok(false) => 0,
                    Err(err) => code(&err),
                })
                .collect();
            e.i32s(&codes);
        }
        ops::GET_SIZE => {
            let key = d.string()?;
            d.end()?;
            e.i64(amount(rt.block_on(c.get_size(&key))));
        }
        ops::REMOVE => {
            let keys = d.strs()?;
            let force = d.bool()?;
            d.end()?;
            let codes: Vec<i32> = if keys.len() == 1 {
                vec![status(&rt.block_on(c.remove(&keys[0], force)))]
            } else {
                rt.block_on(c.batch_remove(&keys, force))
                    .iter()
                    .map(status)
                    .collect()
            };
            e.i32s(&codes);
        }
        ops::REMOVE_ALL => {
            let force = d.bool()?;
            d.end()?;
            e.i64(amount(rt.block_on(c.remove_all(force))));
        }
        ops::REMOVE_BY_REGEX => {
            let pattern = d.string()?;
            let force = d.bool()?;
            d.end()?;
            e.i64(amount(rt.block_on(c.remove_by_regex(&pattern, force))));
        }
        ops::PUT_FROM => {
            let upsert = d.bool()?;
            let rc = get_rc(&mut d)?;
            let t = translate(svc, token, &mut d)?;
            d.end()?;
            let results: Vec<i64> = if t.keys.is_empty() {
                Vec::new()
            } else {
                // SAFETY: every buffer lies in a mapping held (`t.held`) for the call.
                let r = rt.block_on(async {
                    unsafe {
                        if upsert {
                            c.batch_upsert_from_multi(&t.keys, &t.bufs, &rc).await
                        } else {
                            c.batch_put_from_multi(&t.keys, &t.bufs, &rc).await
                        }
                    }
                });
                r.iter().map(|x| status(x) as i64).collect()
            };
            e.i64s(&t.merge(results));
        }
        ops::GET_INTO => {
            let t = translate(svc, token, &mut d)?;
            d.end()?;
            let results: Vec<i64> = if t.keys.is_empty() {
                Vec::new()
            } else {
                // SAFETY: as above.
                let r = rt
                    .block_on(async { unsafe { c.batch_get_into_multi(&t.keys, &t.bufs).await } });
                r.into_iter().map(amount).collect()
            };
            e.i64s(&t.merge(results));
        }
        ops::GET_RANGES => {
            let n = d.len(28)?;
            let mut frags = Vec::with_capacity(n);
            for _ in 0..n {
                let key = d.string()?;
                let src = d.u64()?;
                let ptr = d.u64()?;
                let len = d.u64()?;
                frags.push((
                    key,
                    src,
                    svc.mappings.translate(token, ptr, len),
                    len as usize,
                ));
            }
            d.end()?;
            let results = rt.block_on(async {
                let futs = frags.iter().map(|(key, src, tr, len)| async move {
                    match tr {
                        // SAFETY: the mapping is held by `frags` for the call.
                        Ok((_, addr)) => {
                            amount(unsafe { c.get_range_into(key, *src, *addr, *len).await })
                        }
                        Err(err) => code(err) as i64,
                    }
                });
                futures::future::join_all(futs).await
            });
            e.i64s(&results);
        }
        ops::HEALTH => {
            d.end()?;
            e.i32(rt.block_on(c.health()) as i32);
        }
        ops::LOCATION_STATS => {
            d.end()?;
            let st = c.location_cache_stats();
            e.u64(st.hits).u64(st.misses).u64(st.stale).u64(st.entries);
        }
        ops::REPLICA_DESC => {
            let keys = d.strs()?;
            d.end()?;
            let r = rt.block_on(c.replica_descs(&keys));
            e.len(r.len());
            for x in r {
                match x {
                    Ok((replicas, size)) => {
                        e.i32(0).u64(size).len(replicas.len());
                        for rep in &replicas {
                            put_replica(&mut e, &replica_view(rep));
                        }
                    }
                    Err(err) => {
                        e.i32(code(&err)).u64(0).len(0);
                    }
                }
            }
        }
        other => return Err(WireError::Malformed(format!("unknown op {other}"))),
    }
    Ok(e.buf)
}

//! The one write path behind every put form: one `BatchPutStart` (or
//! `BatchUpsertStart`) for the whole batch, every replica written through the data
//! path in one go, then one `BatchPutEnd` for the keys whose replicas all landed and
//! one `BatchPutRevoke` for the rest. `OBJECT_ALREADY_EXISTS` from a put start is
//! put-if-absent success: nothing is written. A key whose end succeeded is
//! remembered in the location cache where its start placed it (with the
//! allocations' generations), so the next get of it is speculative.

use crate::client::Client;
use crate::config::ReplicateConfig;
use crate::errors::{again_while_grants_refused, check_key, code_error, wrong_count};
use crate::io::{layout, Job};
use crate::rpc::MasterRpc;
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{
    BatchPutEndRequest, BatchPutStartRequest, BatchPutStartResponse, PutStartResponse,
};
use mooncake_transfer::Opcode;

/// Source buffers of one object (address, length), concatenated in order.
pub(crate) type Bufs = Vec<(usize, usize)>;

impl Client {
    /// The one write path. `items[i]` is the source of `keys[i]` (or its validation
    /// error); the master calls go through `rpc`. Keys whose writes could not reach a
    /// replica's segment are put once more, placed away from those segments: an owner
    /// killed without unmounting stays in placement until its heartbeats run out
    /// (seconds), and every put placed on it meanwhile would fail. (A retry that fails
    /// too keeps the first error, which names the unreachable segment.)
    ///
    /// # Safety
    /// Every source range is valid for reads for the whole call.
    pub(crate) async unsafe fn write_objects(
        &self,
        rpc: &MasterRpc,
        keys: &[String],
        items: Vec<Result<Bufs>>,
        rc: &ReplicateConfig,
        upsert: bool,
    ) -> Vec<Result<()>> {
        // Safety: forwarded from the caller.
        let results = unsafe { self.write_placed(rpc, keys, &items, rc, upsert) }.await;
        // Writes a data port refused for their grants start again (new allocations,
        // fresh grants) once the segment's owner has mounted again.
        let items = &items;
        again_while_grants_refused(results, |again| async move {
            let keys2: Vec<String> = again.iter().map(|i| keys[*i].clone()).collect();
            let items2: Vec<Result<Bufs>> = again.iter().map(|i| items[*i].clone()).collect();
            // Safety: forwarded from the caller (the same source ranges).
            unsafe { self.write_placed(rpc, &keys2, &items2, rc, upsert) }.await
        })
        .await
    }

    /// [`Client::write_objects`] without the retries of refused grants.
    ///
    /// # Safety
    /// Every source range is valid for reads for the whole call.
    async unsafe fn write_placed(
        &self,
        rpc: &MasterRpc,
        keys: &[String],
        items: &[Result<Bufs>],
        rc: &ReplicateConfig,
        upsert: bool,
    ) -> Vec<Result<()>> {
        let mut unreachable = Vec::new();
        // Safety: forwarded from the caller.
        let mut results =
            unsafe { self.write_once(rpc, keys, items, rc, upsert, &mut unreachable) }.await;
        if unreachable.is_empty() {
            return results;
        }
        // Only the keys retried are copied (the first pass borrows every source).
        let again: Vec<(usize, Bufs)> = results
            .iter()
            .zip(items)
            .enumerate()
            .filter_map(|(i, (r, src))| match (r, src) {
                (Err(e), Ok(b)) if unreachable_code(e.code) => Some((i, b.clone())),
                _ => None,
            })
            .collect();
        if again.is_empty() {
            return results;
        }
        unreachable.sort();
        unreachable.dedup();
        tracing::warn!(segments = ?unreachable, keys = again.len(), "put: segments unreachable; putting those keys elsewhere");
        let mut avoid = rc.clone();
        avoid.avoid_segments.extend(unreachable);
        let keys2: Vec<String> = again.iter().map(|(i, _)| keys[*i].clone()).collect();
        let (pos, items2): (Vec<usize>, Vec<Result<Bufs>>) =
            again.into_iter().map(|(i, b)| (i, Ok(b))).unzip();
        let mut ignored = Vec::new();
        // Safety: forwarded from the caller.
        let retried =
            unsafe { self.write_once(rpc, &keys2, &items2, &avoid, upsert, &mut ignored) }.await;
        for (i, r) in pos.into_iter().zip(retried) {
            if r.is_ok() {
                results[i] = r;
            }
        }
        results
    }

    /// One pass of the write path; the names of segments a write could not reach go
    /// to `unreachable`.
    ///
    /// # Safety
    /// As for [`Self::write_objects`].
    async unsafe fn write_once(
        &self,
        rpc: &MasterRpc,
        keys: &[String],
        items: &[Result<Bufs>],
        rc: &ReplicateConfig,
        upsert: bool,
        unreachable: &mut Vec<String>,
    ) -> Vec<Result<()>> {
        // This process replaces what it remembers of these keys: skip the wasted
        // speculative read of the old location.
        self.inner.locations.forget_all(keys);
        let mut results: Vec<Result<()>> = Vec::with_capacity(keys.len());
        let mut todo = Vec::new(); // indices going to the master
        for (i, (key, item)) in keys.iter().zip(items).enumerate() {
            let checked = self
                .ensure_open()
                .and_then(|_| check_key(key))
                .and(item.as_ref().map_err(Clone::clone));
            match checked {
                Ok(b) => {
                    let size: u64 = b.iter().map(|(_, l)| *l as u64).sum();
                    if size == 0 {
                        results.push(Err(MooncakeError::invalid(format!(
                            "put {key:?}: empty value"
                        ))));
                    } else {
                        results.push(Ok(()));
                        todo.push((i, b, size));
                    }
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if todo.is_empty() {
            return results;
        }
        let req = BatchPutStartRequest {
            client_id: self.inner.client_id.clone(),
            keys: todo.iter().map(|(i, _, _)| keys[*i].clone()).collect(),
            sizes: todo.iter().map(|(_, _, s)| *s).collect(),
            config: Some(rc.into()),
            // Each distinct segment once per answer, not once per replica.
            segment_table: self.inner.tuning.put_segment_table,
        };
        let started = if upsert {
            rpc.call("batch_upsert_start", |mut c| async move {
                c.batch_upsert_start(req).await
            })
            .await
        } else {
            rpc.call("batch_put_start", |mut c| async move {
                c.batch_put_start(req).await
            })
            .await
        };
        let starts: Vec<PutStartResponse> = match started {
            Ok(r) if r.results.len() == todo.len() => with_segments(r),
            Ok(_) => {
                let e = MooncakeError::new(
                    ErrorCode::InternalError,
                    "put_start: master answered a different number of results",
                );
                return fill(results, &todo, e);
            }
            Err(e) => {
                tracing::debug!(error = %e, keys = todo.len(), "put_start failed");
                return fill(results, &todo, e);
            }
        };
        // Plan the writes of every replica of every started object.
        let mut jobs = Vec::new();
        let mut job_owner = Vec::new(); // job -> position in `todo`
        let mut started_ok = vec![false; todo.len()];
        for (t, ((i, bufs, _), st)) in todo.iter().zip(&starts).enumerate() {
            if st.code == 0 {
                if st.replicas.is_empty() {
                    results[*i] = Err(MooncakeError::new(
                        ErrorCode::InvalidReplica,
                        "put_start: no replica",
                    ));
                    continue;
                }
                started_ok[t] = true;
                for r in &st.replicas {
                    jobs.push(Job {
                        replica: r,
                        pieces: layout(bufs, 0),
                    });
                    job_owner.push(t);
                }
            } else if st.code == ErrorCode::ObjectAlreadyExists.code() && !upsert {
                // put-if-absent: first writer wins, we report success.
            } else {
                results[*i] = Err(code_error(st.code, &format!("put {:?}", keys[*i])));
            }
        }
        // Safety: forwarded from the caller.
        // Replicas in our own segment are copied into the memory we already map.
        let own = self.inner.segment.as_ref();
        let outcome = unsafe { self.inner.data.run_with(Opcode::Write, &jobs, own).await };
        let mut write_err: Vec<Option<MooncakeError>> = vec![None; todo.len()];
        for (j, r) in outcome.into_iter().enumerate() {
            if let Err(e) = r {
                if unreachable_code(e.code) {
                    if let Some(seg) = &jobs[j].replica.segment {
                        unreachable.push(seg.name.clone());
                    }
                }
                write_err[job_owner[j]].get_or_insert(e);
            }
        }
        // Confirm what landed, revoke the rest.
        let (mut end_keys, mut end_ids, mut end_pos) = (vec![], vec![], vec![]);
        let (mut rev_keys, mut rev_ids) = (vec![], vec![]);
        for t in 0..todo.len() {
            if !started_ok[t] {
                continue;
            }
            let (i, _, _) = &todo[t];
            if let Some(e) = write_err[t].take() {
                results[*i] = Err(e);
                rev_keys.push(keys[*i].clone());
                rev_ids.push(starts[t].put_id);
            } else {
                end_keys.push(keys[*i].clone());
                end_ids.push(starts[t].put_id);
                end_pos.push((*i, t));
            }
        }
        let client_id = self.inner.client_id.clone();
        if !rev_keys.is_empty() {
            let req = BatchPutEndRequest {
                client_id: client_id.clone(),
                keys: rev_keys,
                put_ids: rev_ids,
            };
            let r = if upsert {
                rpc.call("batch_upsert_revoke", |mut c| async move {
                    c.batch_upsert_revoke(req).await
                })
                .await
            } else {
                rpc.call("batch_put_revoke", |mut c| async move {
                    c.batch_put_revoke(req).await
                })
                .await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "revoke failed; the master frees the space after its put timeout");
            }
        }
        if !end_keys.is_empty() {
            let n = end_keys.len();
            let req = BatchPutEndRequest {
                client_id,
                keys: end_keys,
                put_ids: end_ids,
            };
            let r = if upsert {
                rpc.call("batch_upsert_end", |mut c| async move {
                    c.batch_upsert_end(req).await
                })
                .await
            } else {
                rpc.call("batch_put_end", |mut c| async move {
                    c.batch_put_end(req).await
                })
                .await
            };
            match r {
                Ok(r) if r.codes.len() == n => {
                    for (&(pos, t), code) in end_pos.iter().zip(r.codes) {
                        // (The message is built only for failures: this loop runs
                        // once per object of every batch.)
                        if code != 0 {
                            results[pos] =
                                Err(code_error(code, &format!("put_end {:?}", keys[pos])));
                        } else {
                            self.remember_written(&keys[pos], &starts[t].replicas, todo[t].2);
                        }
                    }
                }
                Ok(_) => {
                    for (pos, _) in end_pos {
                        results[pos] = Err(wrong_count("put_end"));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, keys = n, "put_end failed; the master frees the space after its put timeout");
                    for (pos, _) in end_pos {
                        results[pos] = Err(e.clone());
                    }
                }
            }
        }
        results
    }
}

/// A write that failed this way may succeed on another segment: its owner did not
/// answer (refused, reset, gone from the metadata server).
fn unreachable_code(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::SegmentNotFound | ErrorCode::TransferFail)
}

fn fill(
    mut results: Vec<Result<()>>,
    todo: &[(usize, &Bufs, u64)],
    e: MooncakeError,
) -> Vec<Result<()>> {
    for (i, _, _) in todo {
        results[*i] = Err(e.clone());
    }
    results
}

/// The answer's replicas with their segment descriptors filled in from its segment
/// table (an index the table does not have leaves the replica without a segment, which
/// the write path reports as a bad replica). A master that ignored `segment_table`
/// sent full descriptors, which are kept.
fn with_segments(r: BatchPutStartResponse) -> Vec<PutStartResponse> {
    let BatchPutStartResponse {
        mut results,
        segments,
    } = r;
    if segments.is_empty() {
        return results;
    }
    for rep in results.iter_mut().flat_map(|st| st.replicas.iter_mut()) {
        if rep.segment.is_none() {
            if let Some(i) = rep.segment_index {
                rep.segment = segments.get(i as usize).cloned();
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_proto::{Replica, SegmentDesc};

    fn desc(name: &str) -> SegmentDesc {
        SegmentDesc {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_get_their_segment_from_the_table() {
        let rep = |seg: Option<SegmentDesc>, at: Option<u32>| Replica {
            segment: seg,
            segment_index: at,
            generation: None,
            offset: 1,
            size: 2,
            grant: None,
        };
        let r = BatchPutStartResponse {
            results: vec![
                PutStartResponse {
                    replicas: vec![rep(None, Some(1)), rep(None, Some(0))],
                    ..Default::default()
                },
                PutStartResponse {
                    code: -200,
                    ..Default::default()
                },
                PutStartResponse {
                    replicas: vec![rep(None, Some(7)), rep(Some(desc("full")), None)],
                    ..Default::default()
                },
            ],
            segments: vec![desc("a"), desc("b")],
        };
        let out = with_segments(r);
        let names = |st: &PutStartResponse| -> Vec<Option<String>> {
            st.replicas
                .iter()
                .map(|r| r.segment.as_ref().map(|s| s.name.clone()))
                .collect()
        };
        assert_eq!(names(&out[0]), vec![Some("b".into()), Some("a".into())]);
        assert!(out[1].replicas.is_empty());
        assert_eq!(
            names(&out[2]),
            vec![None, Some("full".into())],
            "an unknown index stays without a segment"
        );
    }
}

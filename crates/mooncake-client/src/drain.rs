//! This process's part in a drain of its segment (the master's drain jobs): ask the
//! master for the copies to make, write each object's bytes from our own memory into
//! the new replica the master allocated (over the transfer engine, or a same-host
//! mapping: store to store, never through the master), and report them; the master
//! then switches each object to its new replica.
//!
//! The asking runs on its own gRPC channel to the master (`SegmentOwner.DrainWork`), once
//! a second while nothing is drained, at once while copies keep coming.

use crate::client::{Client, Inner};
use crate::io::{Job, Piece};
use mooncake_common::ErrorCode;
use mooncake_proto::segment_owner_client::SegmentOwnerClient;
use mooncake_proto::{DrainCopy, DrainCopyResult, DrainWorkRequest};
use mooncake_transfer::Opcode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often an idle worker asks.
const IDLE_POLL: Duration = Duration::from_secs(1);

impl Client {
    /// Starts serving drains of this client's segment, asking the master at
    /// `master_addr` (`host:port`, or under HA an `etcd://` address: the leader it
    /// names now). Ends with the client. `None` without a segment or with an unusable
    /// address.
    pub fn spawn_drain_worker(&self, master_addr: &str) -> Option<tokio::task::JoinHandle<()>> {
        self.inner.segment.as_ref()?;
        let mut link = self.owner_link(master_addr).ok()?;
        let weak = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            let mut done: Vec<DrainCopyResult> = Vec::new();
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                let Some(seg) = inner.segment.as_ref() else {
                    return;
                };
                if !seg.mounted.load(Ordering::Acquire) {
                    drop(inner);
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
                let l = match link.link().await {
                    Ok(l) => l,
                    Err(_) => {
                        drop(inner);
                        tokio::time::sleep(IDLE_POLL).await;
                        continue;
                    }
                };
                if l.moved {
                    // Copies made for another master's job mean nothing to this one.
                    done.clear();
                }
                let mut rpc = SegmentOwnerClient::with_origin(l.channel, l.origin);
                let req = DrainWorkRequest {
                    client_id: inner.client_id.clone(),
                    segment_name: seg.desc.name.clone(),
                    done: std::mem::take(&mut done),
                };
                let sent = req.done.clone();
                let at = l.addr;
                let Some(answer) = link.answer(&at, rpc.drain_work(req)).await else {
                    // Given up at a master etcd no longer names (module docs of
                    // `owner_link`): the copies go again to the new leader's job.
                    done = sent;
                    drop(inner);
                    continue;
                };
                let pause = match answer {
                    Ok(r) => {
                        let r = r.into_inner();
                        if r.copies.is_empty() {
                            Some(if r.draining {
                                Duration::from_millis(200)
                            } else {
                                IDLE_POLL
                            })
                        } else {
                            tracing::info!(
                                copies = r.copies.len(),
                                "drain: copying objects out of this segment"
                            );
                            done = copy_out(&inner, &r.copies).await;
                            None
                        }
                    }
                    Err(_) => {
                        done = sent; // report them again
                        link.failed();
                        Some(IDLE_POLL)
                    }
                };
                drop(inner);
                if let Some(p) = pause {
                    link.pause(&at, p).await;
                }
            }
        }))
    }
}

/// Writes each copy's bytes from our segment into its new replica; one result each.
async fn copy_out(inner: &Inner, copies: &[DrainCopy]) -> Vec<DrainCopyResult> {
    let Some(seg) = inner.segment.as_ref() else {
        return Vec::new();
    };
    let base = seg.memory.lock().as_ref().map(|m| m.addr());
    let mut results: Vec<DrainCopyResult> = copies
        .iter()
        .map(|c| DrainCopyResult {
            task_id: c.task_id,
            code: 0,
        })
        .collect();
    let mut jobs = Vec::new();
    let mut which = Vec::new();
    for (i, c) in copies.iter().enumerate() {
        let in_bounds = c
            .src_offset
            .checked_add(c.size)
            .is_some_and(|end| end <= seg.desc.size);
        match (&c.dst, base, in_bounds) {
            (Some(dst), Some(base), true) => {
                jobs.push(Job {
                    replica: dst,
                    pieces: vec![Piece {
                        local: base + c.src_offset as usize,
                        len: c.size as usize,
                        obj_off: 0,
                    }],
                });
                which.push(i);
            }
            _ => results[i].code = ErrorCode::InvalidParams.code(),
        }
    }
    // Safety: the ranges lie inside our own mapped segment (checked above), which
    // stays mapped while the client lives (`close` takes it only after this task's
    // client handle is gone or closed).
    let out = unsafe { inner.data.run(Opcode::Write, &jobs).await };
    for (j, r) in which.into_iter().zip(out) {
        if let Err(e) = r {
            tracing::warn!(error = %e, "drain: a copy failed; the master hands it out again");
            results[j].code = e.code.code();
        }
    }
    results
}

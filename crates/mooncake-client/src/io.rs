//! The data path: moving bytes between local memory and replicas. A batch of jobs is
//! split once: replicas in this process's own segment are copied with `memcpy` into
//! the memory it already maps, replicas in other same-host segments through their
//! mapped file, all others go to the transfer engine in one `transfer` call (which
//! pipelines and stripes them). One result per job, in order.

use crate::errors::transfer_error;
use crate::mount::LocalSegment;
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{Replica, SegmentDesc};
use mooncake_segment::{PeerMap, ShmCache};
use mooncake_transfer::tcp::lane::LaneOp;
use mooncake_transfer::{Opcode, TransferEngine, TransferRequest};
use std::collections::HashMap;
use std::sync::Arc;

/// A piece of local memory and where it sits inside the object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub local: usize,
    pub len: usize,
    pub obj_off: u64,
}

/// Move `pieces` to (Write) or from (Read) one replica.
pub(crate) struct Job<'a> {
    pub replica: &'a Replica,
    pub pieces: Vec<Piece>,
}

/// Lays `bufs` (local address, length) out back to back from object offset `start`.
pub(crate) fn layout(bufs: &[(usize, usize)], start: u64) -> Vec<Piece> {
    let mut off = start;
    bufs.iter()
        .filter(|(_, len)| *len > 0)
        .map(|&(local, len)| {
            let p = Piece {
                local,
                len,
                obj_off: off,
            };
            off += len as u64;
            p
        })
        .collect()
}

/// Cuts `bufs` so that exactly `total` bytes are covered (the object may be smaller
/// than the caller's buffers).
pub(crate) fn truncate(bufs: &[(usize, usize)], mut total: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &(a, l) in bufs {
        if total == 0 {
            break;
        }
        let take = l.min(total);
        out.push((a, take));
        total -= take;
    }
    out
}

pub(crate) struct DataPath {
    pub engine: Arc<TransferEngine>,
    pub shm: ShmCache,
}

/// What the synchronous half of [`DataPath::run_with`] leaves for the transfer engine.
struct Planned {
    results: Vec<Result<()>>,
    reqs: Vec<TransferRequest>,
    /// Request index -> job index.
    owner: Vec<usize>,
}

/// Whether `seg` is the segment `own` describes (this process's own memory).
fn is_own(seg: &SegmentDesc, own: &SegmentDesc) -> bool {
    seg.base == own.base
        && seg.size == own.size
        && seg.name == own.name
        && seg.host_id == own.host_id
}

impl DataPath {
    /// Runs every job; the result of job `i` is at index `i`.
    ///
    /// # Safety
    /// Each piece's local range must be valid for the whole call (readable for
    /// `Write`, writable for `Read`) and not aliased by another piece being read into.
    pub async unsafe fn run(&self, op: Opcode, jobs: &[Job<'_>]) -> Vec<Result<()>> {
        // Safety: forwarded.
        unsafe { self.run_with(op, jobs, None).await }
    }

    /// As [`DataPath::run`]; replicas in `own` (this process's segment) are copied
    /// straight into (or out of) the memory this process already maps, not through a
    /// second mapping of its file.
    ///
    /// # Safety
    /// As [`DataPath::run`].
    pub async unsafe fn run_with(
        &self,
        op: Opcode,
        jobs: &[Job<'_>],
        own: Option<&LocalSegment>,
    ) -> Vec<Result<()>> {
        // Safety: forwarded.
        let Planned {
            mut results,
            reqs,
            owner,
        } = unsafe { self.copy_local(op, jobs, own) };
        if let [req] = &reqs[..] {
            // One small remote transfer from a thread that waits for it anyway: on a
            // lane this thread drives (`mooncake_transfer::tcp::lane`). If the lane
            // fails, the pooled path below runs the same transfer again.
            // Safety: the caller keeps the local range valid for this call, and a lane
            // is finished (or dropped) before we return.
            if let Some(op) = unsafe { self.engine.lane_start(req) }.await {
                // Safety: as above.
                if unsafe { op.finish() }.is_ok() {
                    return results;
                }
            }
        }
        if !reqs.is_empty() {
            let bytes: usize = reqs.iter().map(|r| r.length).sum();
            let deadline = data_deadline(bytes);
            // Safety: the caller keeps every local range valid for this call; a dropped
            // (timed-out) transfer touches none of it afterwards.
            let outcome = match tokio::time::timeout(deadline, unsafe {
                self.engine.transfer(&reqs)
            })
            .await
            {
                Ok(o) => o,
                Err(_) => {
                    let e = MooncakeError::new(
                        ErrorCode::TransferFail,
                        format!("transfer of {bytes} bytes did not finish within {deadline:?}"),
                    );
                    for j in owner {
                        if results[j].is_ok() {
                            results[j] = Err(e.clone());
                        }
                    }
                    return results;
                }
            };
            for (i, r) in outcome.into_iter().enumerate() {
                if let Err(e) = r {
                    let j = owner[i];
                    if results[j].is_ok() {
                        results[j] = Err(transfer_error(&e));
                    }
                }
            }
        }
        results
    }

    /// Sends a one-piece read of a replica in another host's segment on a lane and
    /// returns it unfinished, so that the caller can do other work (a lookup) while the
    /// answer travels. `None` when a lane does not apply (a same-host or invalid
    /// replica, more than one piece, a large read, a caller that must not block):
    /// [`DataPath::run`] decides then.
    ///
    /// # Safety
    /// The piece's local range stays writable and unaliased until the returned read is
    /// finished or dropped.
    pub async unsafe fn lane_read(&self, job: &Job<'_>) -> Option<LaneOp> {
        let [p] = &job.pieces[..] else { return None };
        let seg = job.replica.segment.as_ref()?;
        if p.obj_off + p.len as u64 > job.replica.size || self.shm.is_local(seg) {
            return None;
        }
        let grant = job.replica.grant.clone().map(Arc::new);
        let req = remote_request(Opcode::Read, seg, job.replica, p, grant);
        // Safety: forwarded from the caller.
        unsafe { self.engine.lane_start(&req) }.await
    }

    /// Checks every job, copies the same-host ones (our own segment and mapped peers)
    /// and returns the requests left for the transfer engine. Synchronous: our own
    /// segment's memory is locked for the copies (so `close` cannot unmap it under
    /// them) and released before anything awaits.
    ///
    /// # Safety
    /// As [`DataPath::run`].
    unsafe fn copy_local(
        &self,
        op: Opcode,
        jobs: &[Job<'_>],
        own: Option<&LocalSegment>,
    ) -> Planned {
        let mut results: Vec<Result<()>> = Vec::with_capacity(jobs.len());
        let mut reqs = Vec::new();
        let mut owner = Vec::new(); // request index -> job index
        let mut maps: HashMap<&str, Option<Arc<PeerMap>>> = HashMap::new();
        let mut copies = Vec::new();
        // Held until the copies ran: `close` takes the memory out under this lock.
        let own_mem = own.map(|s| (&s.desc, s.memory.lock()));
        let own_range = own_mem
            .as_ref()
            .and_then(|(d, m)| m.as_ref().map(|m| (*d, m.addr(), m.len())));
        for (j, job) in jobs.iter().enumerate() {
            results.push(Ok(()));
            let Some(seg) = job.replica.segment.as_ref() else {
                results[j] = Err(MooncakeError::new(
                    ErrorCode::InvalidReplica,
                    "replica without a segment",
                ));
                continue;
            };
            if let Some(bad) = job
                .pieces
                .iter()
                .find(|p| p.obj_off + p.len as u64 > job.replica.size)
            {
                results[j] = Err(MooncakeError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "range +{}..{} is outside the {}-byte object",
                        bad.obj_off,
                        bad.obj_off + bad.len as u64,
                        job.replica.size
                    ),
                ));
                continue;
            }
            let pieces = job
                .pieces
                .iter()
                .map(|p| (p.local, p.len, job.replica.offset + p.obj_off));
            if let Some((desc, addr, len)) = own_range {
                if is_own(seg, desc) {
                    let range = |off: u64, n: usize| {
                        let end = off.checked_add(n as u64)?;
                        (end <= len as u64).then(|| (addr + off as usize) as *mut u8)
                    };
                    results[j] = crate::copy::plan(op, range, pieces, &mut copies);
                    continue;
                }
            }
            if self.shm.is_local(seg) {
                let map = maps.entry(seg.shm_path.as_str()).or_insert_with(|| {
                    let m = self.shm.get(seg);
                    match m {
                        Some(m) if !m.owner_alive() => {
                            self.shm.forget(&seg.shm_path);
                            None
                        }
                        other => other,
                    }
                });
                if let Some(map) = map {
                    results[j] = crate::copy::plan(op, |o, n| map.range(o, n), pieces, &mut copies);
                    continue;
                }
                // Not mappable here (another container's /dev/shm, another user, or a
                // dead owner): the transfer engine decides.
            }
            let grant = job.replica.grant.clone().map(Arc::new);
            for p in &job.pieces {
                reqs.push(remote_request(op, seg, job.replica, p, grant.clone()));
                owner.push(j);
            }
        }
        // Safety: every copy was checked against its mapping; local ranges are the
        // caller's contract. Peer mappings stay alive in `maps`, our own memory under
        // its lock in `own_mem`, until we return.
        unsafe { crate::copy::run(&copies) };
        drop(own_mem);
        Planned {
            results,
            reqs,
            owner,
        }
    }
}

/// The transfer-engine request for `piece` of `replica` (in segment `seg`).
fn remote_request(
    op: Opcode,
    seg: &SegmentDesc,
    replica: &Replica,
    piece: &Piece,
    grant: Option<Arc<Vec<u8>>>,
) -> TransferRequest {
    TransferRequest {
        opcode: op,
        local_addr: piece.local,
        length: piece.len,
        target: seg.name.clone(),
        target_endpoint: (!seg.transport_endpoint.is_empty())
            .then(|| seg.transport_endpoint.clone()),
        remote_addr: seg.base + replica.offset + piece.obj_off,
        grant,
    }
}

/// A bound on one batch of network transfers, so no call hangs on a stalled peer:
/// 10 s plus the time the bytes take at a pessimistic 50 MB/s.
pub(crate) fn data_deadline(bytes: usize) -> std::time::Duration {
    std::time::Duration::from_secs(10) + std::time::Duration::from_micros(bytes as u64 / 50)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_truncate() {
        let p = layout(&[(100, 10), (500, 0), (200, 5)], 7);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].local, p[0].obj_off), (100, 7));
        assert_eq!((p[1].local, p[1].obj_off, p[1].len), (200, 17, 5));
        assert_eq!(truncate(&[(1, 10), (2, 10)], 12), vec![(1, 10), (2, 2)]);
        assert_eq!(truncate(&[(1, 10)], 0), vec![]);
    }
}

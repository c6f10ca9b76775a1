//! The batch driver: splits requests into slices, hands each slice to a connection of
//! the target peer, collects completions, and retries failed slices on another path.
//!
//! One driver per batch. It owns no socket: connection tasks do, and they report back
//! through a channel, so a driver that is dropped (its future or its [`Batch`]) leaves
//! every connection in sync; the [`CancelGuard`] makes sure no task touches the
//! caller's memory afterwards.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::engine::{TransferEngine, BUDGET_UNIT};
use crate::errors::TransferError;
use crate::metrics::Metrics;
use crate::tcp::pool::Peer;
use crate::tcp::slice::{CancelGuard, Done, Job, SliceCtl};

mod state;
use crate::{Opcode, TransferRequest};
pub(crate) use state::submit;
pub use state::{Batch, BatchState, RequestStatus};

struct SliceSpec {
    req: usize,
    local: usize,
    remote: u64,
    len: usize,
    attempts: usize,
    last_slot: Option<usize>,
    ctl: Arc<SliceCtl>,
}

/// The slices of a batch.
pub(crate) struct Plan {
    slices: Vec<SliceSpec>,
}

impl Plan {
    pub(crate) fn guard(&self) -> CancelGuard {
        CancelGuard::new(self.slices.iter().map(|s| s.ctl.clone()).collect())
    }
}

pub(crate) fn validate(r: &TransferRequest) -> Result<(), TransferError> {
    let bad = |m: String| Err(TransferError::InvalidRequest(m));
    if r.length == 0 {
        return bad("length is zero".into());
    }
    if r.local_addr == 0 {
        return bad("local address is null".into());
    }
    if r.local_addr.checked_add(r.length).is_none() {
        return bad(format!(
            "local range {:#x}+{} wraps",
            r.local_addr, r.length
        ));
    }
    if r.remote_addr.checked_add(r.length as u64).is_none() {
        return bad(format!(
            "remote range {:#x}+{} wraps",
            r.remote_addr, r.length
        ));
    }
    if r.target.is_empty() {
        return bad("target segment name is empty".into());
    }
    Ok(())
}

/// Validates requests (invalid ones fail at once) and cuts the rest into slices.
pub(crate) fn plan(eng: &TransferEngine, reqs: &[TransferRequest], state: &BatchState) -> Plan {
    let slice = eng.cfg.tcp.slice_size;
    let mut slices = Vec::new();
    let mut g = state.status.lock();
    for (i, r) in reqs.iter().enumerate() {
        if let Err(e) = validate(r) {
            g.0[i] = RequestStatus::Failed(e);
            continue;
        }
        let mut off = 0;
        while off < r.length {
            let len = slice.min(r.length - off);
            slices.push(SliceSpec {
                req: i,
                local: r.local_addr + off,
                remote: r.remote_addr + off as u64,
                len,
                attempts: 0,
                last_slot: None,
                ctl: Arc::new(SliceCtl::default()),
            });
            g.1[i].left += 1;
            off += len;
        }
    }
    Plan { slices }
}

#[derive(Clone)]
enum Target {
    Local,
    Remote(Arc<Peer>),
}

/// Runs a planned batch to completion.
pub(crate) async fn drive(
    eng: &TransferEngine,
    reqs: &[TransferRequest],
    mut plan: Plan,
    state: &BatchState,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let mut targets: HashMap<&str, Result<Target, TransferError>> = HashMap::new();
    let mut queue: VecDeque<usize> = (0..plan.slices.len()).collect();
    let mut in_flight = 0usize;
    let max_retries = eng.cfg.tcp.max_retries;
    let metrics = &eng.seg.metrics;
    loop {
        while let Some(i) = queue.pop_front() {
            let req = &reqs[plan.slices[i].req];
            if !targets.contains_key(req.target.as_str()) {
                let t = resolve(eng, req).await;
                targets.insert(req.target.as_str(), t);
            }
            let target = targets[req.target.as_str()].clone();
            let s = &mut plan.slices[i];
            let outcome = match target {
                Err(e) => Err(e),
                Ok(t) => dispatch(eng, s, req.opcode, &t, &tx, i, &req.grant).await,
            };
            match outcome {
                Ok(true) => in_flight += 1,
                Ok(false) => state.slice_done(s.req, Ok(()), metrics),
                Err(e) => on_error(
                    eng,
                    s,
                    i,
                    e,
                    req,
                    &mut targets,
                    &mut queue,
                    state,
                    max_retries,
                ),
            }
        }
        if in_flight == 0 {
            break;
        }
        let Some(d) = rx.recv().await else { break };
        in_flight -= 1;
        let s = &mut plan.slices[d.tag];
        let req = &reqs[s.req];
        match d.result {
            Ok(()) => state.slice_done(s.req, Ok(()), metrics),
            Err(e) => on_error(
                eng,
                s,
                d.tag,
                e,
                req,
                &mut targets,
                &mut queue,
                state,
                max_retries,
            ),
        }
    }
    state.finish();
}

#[allow(clippy::too_many_arguments)]
fn on_error<'a>(
    eng: &TransferEngine,
    s: &mut SliceSpec,
    idx: usize,
    e: TransferError,
    req: &'a TransferRequest,
    targets: &mut HashMap<&'a str, Result<Target, TransferError>>,
    queue: &mut VecDeque<usize>,
    state: &BatchState,
    max_retries: usize,
) {
    if e.retryable() && s.attempts < max_retries {
        s.attempts += 1;
        Metrics::add(&eng.seg.metrics.slices_retried, 1);
        tracing::debug!(error = %e, attempt = s.attempts, "retrying slice on another path");
        // A restarted peer (stale generation), or one that keeps failing on several
        // paths (it may have moved): resolve it again instead of trusting the cache.
        let stale = matches!(e, TransferError::StaleDescriptor { .. });
        if stale || s.attempts >= 2 {
            if let Some(Ok(Target::Remote(p))) = targets.remove(req.target.as_str()) {
                eng.forget_peer(&req.target, &p);
            }
        }
        queue.push_back(idx);
    } else {
        state.slice_done(s.req, Err(e), &eng.seg.metrics);
    }
}

async fn resolve(eng: &TransferEngine, req: &TransferRequest) -> Result<Target, TransferError> {
    if req.target == eng.segment_name() {
        return Ok(Target::Local);
    }
    eng.peer(&req.target, req.target_endpoint.as_deref())
        .await
        .map(Target::Remote)
}

/// Sends one slice. `Ok(true)`: in flight, a `Done` will follow; `Ok(false)`: done now.
async fn dispatch(
    eng: &TransferEngine,
    s: &mut SliceSpec,
    op: Opcode,
    target: &Target,
    tx: &mpsc::UnboundedSender<Done>,
    tag: usize,
    req_grant: &Option<Arc<Vec<u8>>>,
) -> Result<bool, TransferError> {
    let peer = match target {
        Target::Local => return local_copy(eng, s, op).map(|_| false),
        Target::Remote(p) => p,
    };
    #[cfg(feature = "rdma")]
    if let Some(r) = rdma_route(eng, peer, s) {
        let (tx, len) = (tx.clone(), s.len as u64);
        let (local, remote) = (s.local as u64, s.remote);
        let name = peer.desc.name.clone();
        let endpoint = peer.desc.endpoints[0].addr.clone();
        let nics = peer
            .desc
            .buffers
            .iter()
            .map(|b| b.rkeys.len())
            .max()
            .unwrap_or(1)
            .max(1);
        tokio::spawn(async move {
            let result = r
                .transfer(&name, &endpoint, nics, op, local, remote, len)
                .await;
            let _ = tx.send(Done { tag, result });
        });
        return Ok(true);
    }
    let units = s.len.div_ceil(BUDGET_UNIT).min(eng.budget_units) as u32;
    let permit = eng
        .budget
        .clone()
        .acquire_many_owned(units)
        .await
        .map_err(|_| TransferError::Shutdown)?;
    let slot = peer.pick(s.last_slot);
    s.last_slot = Some(slot);
    let conn = peer.conn(slot, &eng.cfg.tcp, &eng.seg).await?;
    let job = Job {
        op,
        grant: req_grant.clone(),
        remote_addr: s.remote,
        local: s.local,
        len: s.len,
        ctl: s.ctl.clone(),
        tag,
        done: tx.clone(),
        permit: Some(permit),
    };
    match conn.send(job).await {
        Ok(()) => Ok(true),
        Err(_) => Err(TransferError::Io(format!(
            "connection to {} closed",
            conn.remote
        ))),
    }
}

/// The RDMA path for a slice: both engines speak RDMA and both ranges are registered
/// (RDMA NICs only reach registered memory); otherwise the slice goes over TCP, which
/// every engine's listener also serves. A remote range outside the peer's registered
/// memory is an SSD tier's record (served by the owner's CPU from its read source):
/// no NIC holds a key for it.
#[cfg(feature = "rdma")]
fn rdma_route(
    eng: &TransferEngine,
    peer: &Peer,
    s: &SliceSpec,
) -> Option<Arc<dyn crate::rdma::RdmaPath>> {
    let r = eng.rdma.as_ref()?;
    let len = s.len as u64;
    let remote_registered = peer.desc.buffers.iter().any(|b| {
        s.remote >= b.addr
            && s.remote
                .checked_add(len)
                .is_some_and(|end| end <= b.addr + b.length)
    });
    (peer.desc.protocol == "rdma"
        && !peer.desc.endpoints.is_empty()
        && remote_registered
        && r.covers_local(s.local as u64, len))
    .then(|| r.clone())
}

/// A transfer to this engine's own segment: a bounds-checked memcpy.
fn local_copy(eng: &TransferEngine, s: &SliceSpec, op: Opcode) -> Result<(), TransferError> {
    if let (Opcode::Read, Some(src)) = (op, eng.seg.source_for(s.remote, s.len as u64)) {
        if !s.ctl.begin() {
            return Err(TransferError::Shutdown);
        }
        // SAFETY: the local range is valid per the transfer's contract and `begin`
        // says it has not been cancelled.
        let dst = unsafe { std::slice::from_raw_parts_mut(s.local as *mut u8, s.len) };
        let r = src.read(s.remote, dst);
        s.ctl.end();
        return r.map_err(|_| TransferError::OutOfRegion {
            segment: eng.seg.name.clone(),
            addr: s.remote,
            len: s.len as u64,
        });
    }
    let region = eng
        .seg
        .memory
        .lookup(s.remote, s.len as u64)
        .ok_or_else(|| TransferError::OutOfRegion {
            segment: eng.seg.name.clone(),
            addr: s.remote,
            len: s.len as u64,
        })?;
    if !s.ctl.begin() {
        return Err(TransferError::Shutdown);
    }
    let (src, dst) = match op {
        Opcode::Write => (s.local as *const u8, s.remote as usize as *mut u8),
        Opcode::Read => (s.remote as usize as *const u8, s.local as *mut u8),
    };
    // SAFETY: the remote range is inside a pinned registered region; the local range is
    // valid per the transfer's contract and `begin` says it has not been cancelled.
    unsafe { std::ptr::copy(src, dst, s.len) };
    s.ctl.end();
    drop(region);
    Ok(())
}

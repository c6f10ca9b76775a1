//! The RDMA transport, generic over [`Verbs`]: opens the selected devices, registers
//! each region on every device, connects RC queue pairs to a peer (one per local NIC x
//! remote NIC) through a handshake carried by the TCP control connection, slices each
//! request into work requests spread over all pairs, and retries a failed work
//! request on another pair. A completion-polling worker thread drains every device's
//! completion queue and wakes the waiting request.

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::plan;
use super::qp::{self, QpEvent, QpState};
use super::verbs::{Completion, DeviceId, MrKeys, QpEndpoint, Verbs, WorkRequest, WrOp};
use crate::errors::TransferError;
use crate::segment::BufferDesc;
use crate::Opcode;

/// Handshake request: our endpoint for each (local NIC, remote NIC) pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectRequest {
    pub segment: String,
    pub qps: Vec<(usize, QpEndpoint)>,
}

/// Handshake answer: the peer's endpoints (same order) and its buffers with rkeys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectResponse {
    pub qps: Vec<QpEndpoint>,
    pub buffers: Vec<BufferDesc>,
}

struct Pair {
    dev: DeviceId,
    remote_nic: usize,
    qpn: u32,
    psn: u32,
    state: Mutex<QpState>,
}

/// A connected peer.
pub struct RdmaPeer {
    pairs: Vec<Pair>,
    buffers: Vec<BufferDesc>,
    rr: AtomicUsize,
}

struct Shared<V> {
    verbs: Arc<V>,
    devs: Vec<DeviceId>,
    waiters: DashMap<u64, oneshot::Sender<Completion>>,
    stop: AtomicBool,
}

pub struct RdmaTransport<V: Verbs> {
    shared: Arc<Shared<V>>,
    /// addr -> (len, keys per device)
    mrs: Mutex<BTreeMap<u64, (u64, Vec<MrKeys>)>>,
    next_wr: AtomicU64,
    slice: u32,
    max_retries: usize,
    worker: Option<std::thread::JoinHandle<()>>,
    accepted: Mutex<Vec<(DeviceId, u32)>>,
}

impl<V: Verbs> RdmaTransport<V> {
    /// Opens `devices` and starts the completion worker.
    pub fn new(verbs: Arc<V>, devices: &[String], slice: u32) -> Result<Self, TransferError> {
        if devices.is_empty() {
            return Err(TransferError::Rdma("no RDMA device selected".into()));
        }
        let devs = devices
            .iter()
            .map(|d| verbs.open(d))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            verbs,
            devs,
            waiters: DashMap::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("rdma-cq".into())
            .spawn(move || poll_loop(&s))
            .map_err(|e| TransferError::Rdma(format!("cannot start the completion worker: {e}")))?;
        Ok(Self {
            shared,
            mrs: Mutex::default(),
            next_wr: AtomicU64::new(1),
            slice: slice.max(4096),
            max_retries: 3,
            worker: Some(worker),
            accepted: Mutex::default(),
        })
    }

    pub fn device_count(&self) -> usize {
        self.shared.devs.len()
    }

    /// Registers a region on every device.
    pub fn register(&self, addr: u64, len: u64) -> Result<Vec<MrKeys>, TransferError> {
        let v = &self.shared.verbs;
        let keys = self
            .shared
            .devs
            .iter()
            .map(|&d| v.register(d, addr, len))
            .collect::<Result<Vec<_>, _>>()?;
        self.mrs.lock().insert(addr, (len, keys.clone()));
        Ok(keys)
    }

    pub fn deregister(&self, addr: u64) -> Result<(), TransferError> {
        self.mrs.lock().remove(&addr);
        for &d in &self.shared.devs {
            self.shared.verbs.deregister(d, addr)?;
        }
        Ok(())
    }

    /// Our buffers with their rkeys (one per device), for the handshake answer.
    pub fn buffers(&self) -> Vec<BufferDesc> {
        self.mrs
            .lock()
            .iter()
            .map(|(&addr, (len, keys))| BufferDesc {
                addr,
                length: *len,
                rkeys: keys.iter().map(|k| k.rkey).collect(),
            })
            .collect()
    }

    fn local_keys(&self, addr: u64, len: u64) -> Option<Vec<MrKeys>> {
        let m = self.mrs.lock();
        let (&a, (l, keys)) = m.range(..=addr).next_back()?;
        (addr + len <= a + l).then(|| keys.clone())
    }

    /// Connects one RC queue pair per (local device, remote NIC); `exchange` carries the
    /// request to the peer (over the TCP control connection) and returns its answer.
    pub async fn connect<F, Fut>(
        &self,
        segment: &str,
        remote_nics: usize,
        exchange: F,
    ) -> Result<RdmaPeer, TransferError>
    where
        F: FnOnce(ConnectRequest) -> Fut,
        Fut: Future<Output = Result<ConnectResponse, TransferError>>,
    {
        let v = &self.shared.verbs;
        let mut pairs = Vec::new();
        let mut mine = Vec::new();
        // max(local, remote) pairs: pair k joins local NIC k % L with remote NIC k % R,
        // so every NIC on both sides carries traffic.
        let locals = self.shared.devs.len();
        for k in 0..locals.max(remote_nics.max(1)) {
            let dev = self.shared.devs[k % locals];
            let r = k % remote_nics.max(1);
            let ep = v.create_qp(dev)?;
            v.qp_init(dev, ep.qpn)?;
            let st = qp::next(QpState::Reset, QpEvent::Init)?;
            mine.push((r, ep.clone()));
            pairs.push(Pair {
                dev,
                remote_nic: r,
                qpn: ep.qpn,
                psn: ep.psn,
                state: Mutex::new(st),
            });
        }
        let resp = exchange(ConnectRequest {
            segment: segment.to_string(),
            qps: mine,
        })
        .await?;
        if resp.qps.len() != pairs.len() {
            return Err(TransferError::Rdma(format!(
                "peer answered {} queue pairs for {}",
                resp.qps.len(),
                pairs.len()
            )));
        }
        for (p, remote) in pairs.iter().zip(&resp.qps) {
            let mut st = p.state.lock();
            v.qp_rtr(p.dev, p.qpn, remote)?;
            *st = qp::next(*st, QpEvent::PeerKnown)?;
            v.qp_rts(p.dev, p.qpn, p.psn)?;
            *st = qp::next(*st, QpEvent::Ready)?;
        }
        Ok(RdmaPeer {
            pairs,
            buffers: resp.buffers,
            rr: AtomicUsize::new(0),
        })
    }

    /// The responder side of [`RdmaTransport::connect`].
    pub fn accept(&self, req: &ConnectRequest) -> Result<ConnectResponse, TransferError> {
        let v = &self.shared.verbs;
        let mut qps = Vec::new();
        for (nic, remote) in &req.qps {
            let dev = *self
                .shared
                .devs
                .get(*nic % self.shared.devs.len())
                .ok_or_else(|| TransferError::Rdma("no device".into()))?;
            let ep = v.create_qp(dev)?;
            v.qp_init(dev, ep.qpn)?;
            v.qp_rtr(dev, ep.qpn, remote)?;
            v.qp_rts(dev, ep.qpn, ep.psn)?;
            self.accepted.lock().push((dev, ep.qpn));
            qps.push(ep);
        }
        Ok(ConnectResponse {
            qps,
            buffers: self.buffers(),
        })
    }

    /// Moves `len` bytes between registered local memory and the peer's registered
    /// memory, sliced over every connected pair; a failed slice is retried elsewhere.
    pub async fn transfer(
        &self,
        peer: &RdmaPeer,
        op: Opcode,
        local: u64,
        remote: u64,
        len: u64,
    ) -> Result<(), TransferError> {
        let lkeys = self
            .local_keys(local, len)
            .ok_or_else(|| TransferError::OutOfRegion {
                segment: "local (RDMA needs registered local memory)".into(),
                addr: local,
                len,
            })?;
        let rbuf = peer
            .buffers
            .iter()
            .find(|b| remote >= b.addr && remote + len <= b.addr + b.length)
            .ok_or_else(|| TransferError::OutOfRegion {
                segment: "remote".into(),
                addr: remote,
                len,
            })?;
        let first = peer.rr.fetch_add(1, Ordering::Relaxed);
        let mut pending: Vec<(plan::WorkItem, usize, oneshot::Receiver<Completion>)> = Vec::new();
        for item in plan::slice(len, self.slice, peer.pairs.len(), first) {
            pending.push(self.post(peer, &lkeys, rbuf, op, local, remote, item, 0)?);
        }
        while let Some((item, attempts, rx)) = pending.pop() {
            let c = rx
                .await
                .map_err(|_| TransferError::Rdma("completion worker stopped".into()))?;
            if let Some(err) = c.error {
                let p = &peer.pairs[item.pair];
                let mut st = p.state.lock();
                *st = qp::next(*st, QpEvent::Fail)?;
                drop(st);
                if attempts >= self.max_retries {
                    return Err(TransferError::Rdma(format!(
                        "work request failed {} times: {err}",
                        attempts + 1
                    )));
                }
                let moved = plan::WorkItem {
                    pair: self.healthy_pair(peer, item.pair)?,
                    ..item
                };
                pending.push(self.post(
                    peer,
                    &lkeys,
                    rbuf,
                    op,
                    local,
                    remote,
                    moved,
                    attempts + 1,
                )?);
            }
        }
        Ok(())
    }

    fn healthy_pair(&self, peer: &RdmaPeer, not: usize) -> Result<usize, TransferError> {
        let n = peer.pairs.len();
        (1..=n)
            .map(|k| (not + k) % n)
            .find(|&i| qp::can_post(*peer.pairs[i].state.lock()))
            .ok_or_else(|| TransferError::Rdma("every queue pair to the peer is in error".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn post(
        &self,
        peer: &RdmaPeer,
        lkeys: &[MrKeys],
        rbuf: &BufferDesc,
        op: Opcode,
        local: u64,
        remote: u64,
        item: plan::WorkItem,
        attempts: usize,
    ) -> Result<(plan::WorkItem, usize, oneshot::Receiver<Completion>), TransferError> {
        let p = &peer.pairs[item.pair];
        if !qp::can_post(*p.state.lock()) {
            return Err(TransferError::Rdma(format!(
                "queue pair {} is not ready",
                p.qpn
            )));
        }
        let dev_idx = self
            .shared
            .devs
            .iter()
            .position(|&d| d == p.dev)
            .unwrap_or(0);
        let rkey = *rbuf
            .rkeys
            .get(p.remote_nic)
            .or(rbuf.rkeys.first())
            .ok_or_else(|| TransferError::Rdma("peer buffer has no rkey".into()))?;
        let wr = WorkRequest {
            wr_id: self.next_wr.fetch_add(1, Ordering::Relaxed),
            op: match op {
                Opcode::Write => WrOp::Write,
                Opcode::Read => WrOp::Read,
            },
            local_addr: local + item.offset,
            lkey: lkeys[dev_idx].lkey,
            remote_addr: remote + item.offset,
            rkey,
            len: item.len,
        };
        let (tx, rx) = oneshot::channel();
        self.shared.waiters.insert(wr.wr_id, tx);
        if let Err(e) = self.shared.verbs.post(p.dev, p.qpn, &wr) {
            self.shared.waiters.remove(&wr.wr_id);
            return Err(e);
        }
        Ok((item, attempts, rx))
    }

    /// Queue pairs per state, for tests and status pages.
    pub fn pair_states(peer: &RdmaPeer) -> HashMap<usize, QpState> {
        peer.pairs
            .iter()
            .enumerate()
            .map(|(i, p)| (i, *p.state.lock()))
            .collect()
    }
}

impl<V: Verbs> Drop for RdmaTransport<V> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        for (dev, qpn) in self.accepted.lock().drain(..) {
            self.shared.verbs.destroy_qp(dev, qpn);
        }
    }
}

/// The completion worker: polls every device, wakes waiters; backs off when idle.
fn poll_loop<V: Verbs>(s: &Shared<V>) {
    let mut idle = 0u32;
    while !s.stop.load(Ordering::Acquire) {
        let mut got = 0;
        for &d in &s.devs {
            for c in s.verbs.poll(d, 64) {
                got += 1;
                if let Some((_, tx)) = s.waiters.remove(&c.wr_id) {
                    let _ = tx.send(c);
                }
            }
        }
        if got == 0 {
            idle = idle.saturating_add(1);
            if idle < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        } else {
            idle = 0;
        }
    }
}

//! An in-process fake of RDMA hardware for tests: several [`FakeVerbs`] ("hosts")
//! share one [`FakeFabric`]; a posted WRITE or READ really copies bytes between
//! registered ranges (checked against lkey/rkey bounds) and completes on the poster's
//! completion queue. Failures can be injected per device.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::verbs::{Completion, DeviceId, MrKeys, QpEndpoint, Verbs, WorkRequest, WrOp};
use crate::errors::TransferError;

#[derive(Default)]
struct Fabric {
    next_key: u32,
    next_qpn: u32,
    /// rkey/lkey -> (addr, len)
    mrs: HashMap<u32, (u64, u64)>,
    /// qpn -> (state rank 0..=3, remote qpn)
    qps: HashMap<u32, (u8, Option<u32>)>,
}

/// The shared "network".
#[derive(Clone, Default)]
pub struct FakeFabric(Arc<Mutex<Fabric>>);

/// One host's devices.
pub struct FakeVerbs {
    fabric: FakeFabric,
    names: Vec<String>,
    cqs: Vec<Mutex<VecDeque<Completion>>>,
    fail_next: Vec<Mutex<usize>>,
    regs: Mutex<HashMap<(DeviceId, u64), MrKeys>>,
    /// Every work request posted here, in order (for tests that check what went out).
    posted: Mutex<Vec<WorkRequest>>,
}

impl FakeVerbs {
    pub fn new(fabric: &FakeFabric, names: &[&str]) -> Self {
        Self {
            fabric: fabric.clone(),
            names: names.iter().map(|s| s.to_string()).collect(),
            cqs: names.iter().map(|_| Mutex::default()).collect(),
            fail_next: names.iter().map(|_| Mutex::new(0)).collect(),
            regs: Mutex::default(),
            posted: Mutex::default(),
        }
    }

    /// The work requests posted on this host's devices so far, in order.
    pub fn posted(&self) -> Vec<WorkRequest> {
        self.posted.lock().clone()
    }

    /// The next `n` work requests posted on `dev` complete with an error.
    pub fn fail_next(&self, dev: DeviceId, n: usize) {
        *self.fail_next[dev].lock() = n;
    }

    fn dev(&self, dev: DeviceId) -> Result<(), TransferError> {
        if dev < self.names.len() {
            Ok(())
        } else {
            Err(TransferError::Rdma(format!("no fake device {dev}")))
        }
    }

    fn step(&self, qpn: u32, from: u8, to: u8, remote: Option<u32>) -> Result<(), TransferError> {
        let mut f = self.fabric.0.lock();
        let qp = f
            .qps
            .get_mut(&qpn)
            .ok_or_else(|| TransferError::Rdma(format!("no qp {qpn}")))?;
        if qp.0 != from {
            return Err(TransferError::Rdma(format!(
                "qp {qpn} in state {} cannot go to {to}",
                qp.0
            )));
        }
        qp.0 = to;
        if remote.is_some() {
            qp.1 = remote;
        }
        Ok(())
    }
}

impl Verbs for FakeVerbs {
    fn open(&self, name: &str) -> Result<DeviceId, TransferError> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| TransferError::Rdma(format!("no fake device named {name}")))
    }

    fn register(&self, dev: DeviceId, addr: u64, len: u64) -> Result<MrKeys, TransferError> {
        self.dev(dev)?;
        let mut f = self.fabric.0.lock();
        f.next_key += 1;
        let k = f.next_key;
        f.mrs.insert(k, (addr, len));
        let keys = MrKeys { lkey: k, rkey: k };
        self.regs.lock().insert((dev, addr), keys);
        Ok(keys)
    }

    fn deregister(&self, dev: DeviceId, addr: u64) -> Result<(), TransferError> {
        let keys = self
            .regs
            .lock()
            .remove(&(dev, addr))
            .ok_or_else(|| TransferError::Rdma(format!("no registration at {addr:#x}")))?;
        self.fabric.0.lock().mrs.remove(&keys.rkey);
        Ok(())
    }

    fn create_qp(&self, dev: DeviceId) -> Result<QpEndpoint, TransferError> {
        self.dev(dev)?;
        let mut f = self.fabric.0.lock();
        f.next_qpn += 1;
        let qpn = f.next_qpn;
        f.qps.insert(qpn, (0, None));
        Ok(QpEndpoint {
            lid: dev as u16,
            gid: [0; 16],
            qpn,
            psn: qpn * 7,
            mtu: 4096,
        })
    }

    fn qp_init(&self, _dev: DeviceId, qpn: u32) -> Result<(), TransferError> {
        self.step(qpn, 0, 1, None)
    }

    fn qp_rtr(&self, _dev: DeviceId, qpn: u32, remote: &QpEndpoint) -> Result<(), TransferError> {
        self.step(qpn, 1, 2, Some(remote.qpn))
    }

    fn qp_rts(&self, _dev: DeviceId, qpn: u32, _psn: u32) -> Result<(), TransferError> {
        self.step(qpn, 2, 3, None)
    }

    fn destroy_qp(&self, _dev: DeviceId, qpn: u32) {
        self.fabric.0.lock().qps.remove(&qpn);
    }

    fn post(&self, dev: DeviceId, qpn: u32, wr: &WorkRequest) -> Result<(), TransferError> {
        self.dev(dev)?;
        self.posted.lock().push(*wr);
        let result = {
            let f = self.fabric.0.lock();
            let inside = |key: u32, addr: u64| {
                f.mrs
                    .get(&key)
                    .is_some_and(|&(a, l)| addr >= a && addr + wr.len as u64 <= a + l)
            };
            match f.qps.get(&qpn) {
                Some((3, Some(_))) => {}
                _ => {
                    return Err(TransferError::Rdma(format!(
                        "qp {qpn} is not ready to send"
                    )))
                }
            }
            let mut fail = self.fail_next[dev].lock();
            if *fail > 0 {
                *fail -= 1;
                Some("injected failure (WR_FLUSH_ERR)".to_string())
            } else if !inside(wr.lkey, wr.local_addr) {
                Some("local protection error".into())
            } else if !inside(wr.rkey, wr.remote_addr) {
                Some("remote access error".into())
            } else {
                let (src, dst) = match wr.op {
                    WrOp::Write => (wr.local_addr, wr.remote_addr),
                    WrOp::Read => (wr.remote_addr, wr.local_addr),
                };
                // SAFETY: both ranges are inside registrations whose owners keep them
                // valid while registered (the same contract as real RDMA).
                unsafe {
                    std::ptr::copy(
                        src as usize as *const u8,
                        dst as usize as *mut u8,
                        wr.len as usize,
                    )
                };
                None
            }
        };
        self.cqs[dev].lock().push_back(Completion {
            wr_id: wr.wr_id,
            error: result,
        });
        Ok(())
    }

    fn poll(&self, dev: DeviceId, max: usize) -> Vec<Completion> {
        let Some(cq) = self.cqs.get(dev) else {
            return Vec::new();
        };
        let mut q = cq.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}

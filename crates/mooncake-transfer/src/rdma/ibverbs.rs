//! [`Verbs`] over libibverbs (rdma-sys): one context, protection domain and completion
//! queue per device, port 1, GID index 0, RC queue pairs. Compiled with the `rdma`
//! feature; on a host without devices [`IbVerbs::open`] fails naming the device.

use parking_lot::Mutex;
use rdma_sys::*;
use std::collections::HashMap;
use std::ffi::CStr;
use std::ptr;

use super::verbs::{Completion, DeviceId, MrKeys, QpEndpoint, Verbs, WorkRequest, WrOp};
use crate::errors::TransferError;

const PORT: u8 = 1;
const CQ_DEPTH: i32 = 4096;
const MAX_WR: u32 = 1024;

struct Dev {
    ctx: *mut ibv_context,
    pd: *mut ibv_pd,
    cq: *mut ibv_cq,
    lid: u16,
    gid: [u8; 16],
    mtu: u32,
}

#[derive(Default)]
struct State {
    devs: Vec<Dev>,
    qps: HashMap<u32, *mut ibv_qp>,
    mrs: HashMap<(DeviceId, u64), *mut ibv_mr>,
}

/// libibverbs-backed verbs.
#[derive(Default)]
pub struct IbVerbs {
    st: Mutex<State>,
}

// SAFETY: libibverbs objects may be used from any thread; all map access is locked.
unsafe impl Send for IbVerbs {}
unsafe impl Sync for IbVerbs {}

fn fail(what: &str) -> TransferError {
    TransferError::Rdma(format!(
        "{what} failed: {}",
        std::io::Error::last_os_error()
    ))
}

impl IbVerbs {
    fn with_qp<T>(
        &self,
        qpn: u32,
        f: impl FnOnce(*mut ibv_qp) -> Result<T, TransferError>,
    ) -> Result<T, TransferError> {
        let qp = *self
            .st
            .lock()
            .qps
            .get(&qpn)
            .ok_or_else(|| TransferError::Rdma(format!("unknown queue pair {qpn}")))?;
        f(qp)
    }

    fn modify(
        qp: *mut ibv_qp,
        attr: &mut ibv_qp_attr,
        mask: ibv_qp_attr_mask,
        what: &str,
    ) -> Result<(), TransferError> {
        // SAFETY: `qp` is a live queue pair, `attr` a fully initialised attribute set.
        if unsafe { ibv_modify_qp(qp, attr, mask.0 as i32) } != 0 {
            return Err(fail(what));
        }
        Ok(())
    }
}

impl Drop for IbVerbs {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        // SAFETY: every object was created by this instance and is released once,
        // children (QPs, MRs) before their CQ/PD/context.
        unsafe {
            for (_, qp) in st.qps.drain() {
                ibv_destroy_qp(qp);
            }
            for (_, mr) in st.mrs.drain() {
                ibv_dereg_mr(mr);
            }
            for d in st.devs.drain(..) {
                ibv_destroy_cq(d.cq);
                ibv_dealloc_pd(d.pd);
                ibv_close_device(d.ctx);
            }
        }
    }
}

impl Verbs for IbVerbs {
    fn open(&self, name: &str) -> Result<DeviceId, TransferError> {
        let mut n = 0;
        // SAFETY: standard device-list walk; the list is freed before returning.
        unsafe {
            let list = ibv_get_device_list(&mut n);
            if list.is_null() {
                return Err(TransferError::Rdma(format!(
                    "RDMA device {name:?}: no device list"
                )));
            }
            let mut found = ptr::null_mut();
            for i in 0..n.max(0) as usize {
                let d = *list.add(i);
                if !d.is_null() && CStr::from_ptr(ibv_get_device_name(d)).to_string_lossy() == name
                {
                    found = d;
                }
            }
            let ctx = if found.is_null() {
                ptr::null_mut()
            } else {
                ibv_open_device(found)
            };
            ibv_free_device_list(list);
            if ctx.is_null() {
                return Err(TransferError::Rdma(format!(
                    "RDMA device {name:?} not found or cannot be opened"
                )));
            }
            let pd = ibv_alloc_pd(ctx);
            if pd.is_null() {
                return Err(fail("ibv_alloc_pd"));
            }
            let cq = ibv_create_cq(ctx, CQ_DEPTH, ptr::null_mut(), ptr::null_mut(), 0);
            if cq.is_null() {
                return Err(fail("ibv_create_cq"));
            }
            let mut port: ibv_port_attr = std::mem::zeroed();
            if ___ibv_query_port(ctx, PORT, &mut port) != 0 {
                return Err(fail("ibv_query_port"));
            }
            let mut gid: ibv_gid = std::mem::zeroed();
            if ibv_query_gid(ctx, PORT, 0, &mut gid) != 0 {
                return Err(fail("ibv_query_gid"));
            }
            let mut st = self.st.lock();
            st.devs.push(Dev {
                ctx,
                pd,
                cq,
                lid: port.lid,
                gid: gid.raw,
                mtu: port.active_mtu,
            });
            Ok(st.devs.len() - 1)
        }
    }

    fn register(&self, dev: DeviceId, addr: u64, len: u64) -> Result<MrKeys, TransferError> {
        let mut st = self.st.lock();
        let pd = st
            .devs
            .get(dev)
            .ok_or_else(|| TransferError::Rdma(format!("no device {dev}")))?
            .pd;
        let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0
            | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0
            | ibv_access_flags::IBV_ACCESS_REMOTE_READ.0;
        // SAFETY: the caller keeps the range valid while registered.
        let mr = unsafe { ibv_reg_mr(pd, addr as usize as *mut _, len as usize, access as i32) };
        if mr.is_null() {
            return Err(fail("ibv_reg_mr"));
        }
        // SAFETY: `mr` is a live registration.
        let keys = unsafe {
            MrKeys {
                lkey: (*mr).lkey,
                rkey: (*mr).rkey,
            }
        };
        st.mrs.insert((dev, addr), mr);
        Ok(keys)
    }

    fn deregister(&self, dev: DeviceId, addr: u64) -> Result<(), TransferError> {
        let mr = self
            .st
            .lock()
            .mrs
            .remove(&(dev, addr))
            .ok_or_else(|| TransferError::Rdma(format!("no registration at {addr:#x}")))?;
        // SAFETY: `mr` came from ibv_reg_mr and is deregistered once.
        if unsafe { ibv_dereg_mr(mr) } != 0 {
            return Err(fail("ibv_dereg_mr"));
        }
        Ok(())
    }

    fn create_qp(&self, dev: DeviceId) -> Result<QpEndpoint, TransferError> {
        let mut st = self.st.lock();
        let d = st
            .devs
            .get(dev)
            .ok_or_else(|| TransferError::Rdma(format!("no device {dev}")))?;
        // SAFETY: zeroed attributes are a valid starting point; fields set below.
        let qp = unsafe {
            let mut init: ibv_qp_init_attr = std::mem::zeroed();
            init.send_cq = d.cq;
            init.recv_cq = d.cq;
            init.qp_type = ibv_qp_type::IBV_QPT_RC;
            init.cap.max_send_wr = MAX_WR;
            init.cap.max_recv_wr = 1;
            init.cap.max_send_sge = 1;
            init.cap.max_recv_sge = 1;
            ibv_create_qp(d.pd, &mut init)
        };
        if qp.is_null() {
            return Err(fail("ibv_create_qp"));
        }
        // SAFETY: live queue pair.
        let qpn = unsafe { (*qp).qp_num };
        let ep = QpEndpoint {
            lid: d.lid,
            gid: d.gid,
            qpn,
            psn: rand::random::<u32>() & 0xff_ffff,
            mtu: d.mtu,
        };
        st.qps.insert(qpn, qp);
        Ok(ep)
    }

    fn qp_init(&self, _dev: DeviceId, qpn: u32) -> Result<(), TransferError> {
        self.with_qp(qpn, |qp| {
            // SAFETY: plain-old-data attribute struct.
            let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
            a.qp_state = ibv_qp_state::IBV_QPS_INIT;
            a.port_num = PORT;
            a.qp_access_flags = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0
                | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0
                | ibv_access_flags::IBV_ACCESS_REMOTE_READ.0;
            let m = ibv_qp_attr_mask::IBV_QP_STATE
                | ibv_qp_attr_mask::IBV_QP_PKEY_INDEX
                | ibv_qp_attr_mask::IBV_QP_PORT
                | ibv_qp_attr_mask::IBV_QP_ACCESS_FLAGS;
            Self::modify(qp, &mut a, m, "modify QP to INIT")
        })
    }

    fn qp_rtr(&self, _dev: DeviceId, qpn: u32, remote: &QpEndpoint) -> Result<(), TransferError> {
        self.with_qp(qpn, |qp| {
            // SAFETY: plain-old-data attribute struct.
            let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
            a.qp_state = ibv_qp_state::IBV_QPS_RTR;
            a.path_mtu = remote.mtu.min(ibv_mtu::IBV_MTU_4096);
            a.dest_qp_num = remote.qpn;
            a.rq_psn = remote.psn;
            a.max_dest_rd_atomic = 16;
            a.min_rnr_timer = 12;
            a.ah_attr.is_global = 1;
            a.ah_attr.dlid = remote.lid;
            a.ah_attr.port_num = PORT;
            a.ah_attr.grh.hop_limit = 1;
            a.ah_attr.grh.dgid = ibv_gid { raw: remote.gid };
            let m = ibv_qp_attr_mask::IBV_QP_STATE
                | ibv_qp_attr_mask::IBV_QP_AV
                | ibv_qp_attr_mask::IBV_QP_PATH_MTU
                | ibv_qp_attr_mask::IBV_QP_DEST_QPN
                | ibv_qp_attr_mask::IBV_QP_RQ_PSN
                | ibv_qp_attr_mask::IBV_QP_MAX_DEST_RD_ATOMIC
                | ibv_qp_attr_mask::IBV_QP_MIN_RNR_TIMER;
            Self::modify(qp, &mut a, m, "modify QP to RTR")
        })
    }

    fn qp_rts(&self, _dev: DeviceId, qpn: u32, psn: u32) -> Result<(), TransferError> {
        self.with_qp(qpn, |qp| {
            // SAFETY: plain-old-data attribute struct.
            let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
            a.qp_state = ibv_qp_state::IBV_QPS_RTS;
            a.timeout = 14;
            a.retry_cnt = 7;
            a.rnr_retry = 7;
            a.sq_psn = psn;
            a.max_rd_atomic = 16;
            let m = ibv_qp_attr_mask::IBV_QP_STATE
                | ibv_qp_attr_mask::IBV_QP_TIMEOUT
                | ibv_qp_attr_mask::IBV_QP_RETRY_CNT
                | ibv_qp_attr_mask::IBV_QP_RNR_RETRY
                | ibv_qp_attr_mask::IBV_QP_SQ_PSN
                | ibv_qp_attr_mask::IBV_QP_MAX_QP_RD_ATOMIC;
            Self::modify(qp, &mut a, m, "modify QP to RTS")
        })
    }

    fn destroy_qp(&self, _dev: DeviceId, qpn: u32) {
        if let Some(qp) = self.st.lock().qps.remove(&qpn) {
            // SAFETY: destroyed once, removed from the map first.
            unsafe { ibv_destroy_qp(qp) };
        }
    }

    fn post(&self, _dev: DeviceId, qpn: u32, wr: &WorkRequest) -> Result<(), TransferError> {
        self.with_qp(qpn, |qp| {
            let mut sge = ibv_sge {
                addr: wr.local_addr,
                length: wr.len,
                lkey: wr.lkey,
            };
            // SAFETY: a single signaled RDMA WRITE/READ with one SGE; structs outlive the call.
            unsafe {
                let mut swr: ibv_send_wr = std::mem::zeroed();
                swr.wr_id = wr.wr_id;
                swr.sg_list = &mut sge;
                swr.num_sge = 1;
                swr.opcode = match wr.op {
                    WrOp::Write => ibv_wr_opcode::IBV_WR_RDMA_WRITE,
                    WrOp::Read => ibv_wr_opcode::IBV_WR_RDMA_READ,
                };
                swr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
                swr.wr.rdma.remote_addr = wr.remote_addr;
                swr.wr.rdma.rkey = wr.rkey;
                let mut bad = ptr::null_mut();
                if ibv_post_send(qp, &mut swr, &mut bad) != 0 {
                    return Err(fail("ibv_post_send"));
                }
            }
            Ok(())
        })
    }

    fn poll(&self, dev: DeviceId, max: usize) -> Vec<Completion> {
        let Some(cq) = self.st.lock().devs.get(dev).map(|d| d.cq) else {
            return Vec::new();
        };
        // SAFETY: `wcs` has room for `max` entries; poll writes at most that many.
        unsafe {
            let mut wcs: Vec<ibv_wc> = (0..max).map(|_| std::mem::zeroed()).collect();
            let n = ibv_poll_cq(cq, max as i32, wcs.as_mut_ptr());
            wcs.truncate(n.max(0) as usize);
            wcs.iter()
                .map(|w| Completion {
                    wr_id: w.wr_id,
                    error: (w.status != ibv_wc_status::IBV_WC_SUCCESS).then(|| {
                        CStr::from_ptr(ibv_wc_status_str(w.status))
                            .to_string_lossy()
                            .into_owned()
                    }),
                })
                .collect()
        }
    }
}

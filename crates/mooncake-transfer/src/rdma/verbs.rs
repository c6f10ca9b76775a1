//! The verbs seam: every call the RDMA transport makes to hardware goes through
//! [`Verbs`], so the queue-pair state machine, slicing and completion handling are
//! tested with [`super::fake::FakeVerbs`] on machines without an RDMA NIC.

use serde::{Deserialize, Serialize};

use crate::errors::TransferError;

/// Index of an opened device in the transport's device list.
pub type DeviceId = usize;

/// Keys of one memory registration on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MrKeys {
    pub lkey: u32,
    pub rkey: u32,
}

/// What the other side needs to connect an RC queue pair to ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QpEndpoint {
    pub lid: u16,
    pub gid: [u8; 16],
    pub qpn: u32,
    pub psn: u32,
    pub mtu: u32,
}

/// A one-sided operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrOp {
    /// Local -> remote (RDMA WRITE).
    Write,
    /// Remote -> local (RDMA READ).
    Read,
}

/// One work request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkRequest {
    pub wr_id: u64,
    pub op: WrOp,
    pub local_addr: u64,
    pub lkey: u32,
    pub remote_addr: u64,
    pub rkey: u32,
    pub len: u32,
}

/// One completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub wr_id: u64,
    /// `None` on success, otherwise the work-completion status text.
    pub error: Option<String>,
}

/// Hardware operations. Implementations must be thread-safe: the completion worker
/// polls while callers post.
pub trait Verbs: Send + Sync + 'static {
    /// Opens a device by name; returns its id.
    fn open(&self, name: &str) -> Result<DeviceId, TransferError>;
    /// Registers `[addr, addr+len)` on a device for local and remote read/write.
    fn register(&self, dev: DeviceId, addr: u64, len: u64) -> Result<MrKeys, TransferError>;
    fn deregister(&self, dev: DeviceId, addr: u64) -> Result<(), TransferError>;
    /// Creates an RC queue pair in RESET state; returns our endpoint description.
    fn create_qp(&self, dev: DeviceId) -> Result<QpEndpoint, TransferError>;
    /// RESET -> INIT.
    fn qp_init(&self, dev: DeviceId, qpn: u32) -> Result<(), TransferError>;
    /// INIT -> RTR, aimed at `remote`.
    fn qp_rtr(&self, dev: DeviceId, qpn: u32, remote: &QpEndpoint) -> Result<(), TransferError>;
    /// RTR -> RTS.
    fn qp_rts(&self, dev: DeviceId, qpn: u32, psn: u32) -> Result<(), TransferError>;
    fn destroy_qp(&self, dev: DeviceId, qpn: u32);
    /// Posts a signaled work request.
    fn post(&self, dev: DeviceId, qpn: u32, wr: &WorkRequest) -> Result<(), TransferError>;
    /// Up to `max` completions of the device's completion queue (non-blocking).
    fn poll(&self, dev: DeviceId, max: usize) -> Vec<Completion>;
}

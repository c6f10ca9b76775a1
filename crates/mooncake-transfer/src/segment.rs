//! Segment descriptors: what a peer needs to reach this engine's memory. Published as
//! JSON under `mooncake/ram/<name>` (HTTP/etcd metadata) or handed out by the data
//! listener itself (P2PHANDSHAKE).
//!
//! `generation` is drawn at engine start (start time in nanoseconds mixed with random
//! bits). The data-connection handshake carries the generation the initiator expects;
//! a restarted peer answers with its new one, the initiator drops the stale descriptor
//! and resolves the segment again, so bytes never land in a previous incarnation's
//! address layout.

use serde::{Deserialize, Serialize};

/// One NIC's data endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicEndpoint {
    /// Interface name (`eth0`, `mlx5_0`) or the address itself when unknown.
    pub nic: String,
    /// `ip:port` of the data listener reachable through that NIC.
    pub addr: String,
}

/// One registered buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferDesc {
    pub addr: u64,
    pub length: u64,
    /// RDMA remote keys, one per NIC in `endpoints` order (empty for TCP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rkeys: Vec<u32>,
}

/// Everything a peer needs to reach a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDescriptor {
    pub name: String,
    /// `tcp` or `rdma`.
    pub protocol: String,
    pub generation: u64,
    pub endpoints: Vec<NicEndpoint>,
    pub buffers: Vec<BufferDesc>,
}

/// `mooncake/rpc_meta/<name>`: where the segment's handshake listener is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcMeta {
    pub ip_or_host_name: String,
    pub rpc_port: u16,
}

impl SegmentDescriptor {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| format!("bad segment descriptor JSON: {e}"))
    }

    /// Whether `[addr, addr+len)` lies inside one advertised buffer.
    pub fn covers(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.buffers
            .iter()
            .any(|b| addr >= b.addr && end <= b.addr.saturating_add(b.length))
    }
}

/// The metadata keys of a segment.
pub fn ram_key(name: &str) -> String {
    format!("mooncake/ram/{name}")
}

pub fn rpc_meta_key(name: &str) -> String {
    format!("mooncake/rpc_meta/{name}")
}

/// A fresh generation: nanoseconds since the epoch xor random bits, never 0.
pub fn new_generation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (rand::random::<u64>() & 0xffff_ffff)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_coverage() {
        let d = SegmentDescriptor {
            name: "n:1".into(),
            protocol: "tcp".into(),
            generation: new_generation(),
            endpoints: vec![NicEndpoint {
                nic: "lo".into(),
                addr: "127.0.0.1:5".into(),
            }],
            buffers: vec![BufferDesc {
                addr: 4096,
                length: 100,
                rkeys: vec![],
            }],
        };
        let back = SegmentDescriptor::from_json(&d.to_json()).unwrap();
        assert_eq!(back, d);
        assert!(d.covers(4096, 100));
        assert!(!d.covers(4096, 101));
        assert!(!d.covers(u64::MAX, 2));
        assert!(SegmentDescriptor::from_json("{").is_err());
        assert_ne!(d.generation, 0);
        assert_eq!(ram_key("a"), "mooncake/ram/a");
    }
}

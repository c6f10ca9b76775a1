//! The local segment: this engine's identity (name, generation), its registered memory
//! and the endpoints it advertises. Shared by the listener and the engine.

use parking_lot::RwLock;
use std::sync::Arc;

/// Answers Control frames (transport handshakes such as RDMA queue-pair setup).
pub type ControlHandler = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

use crate::memory::MemoryRegistry;
use crate::metrics::Metrics;
use crate::segment::{BufferDesc, NicEndpoint, SegmentDescriptor};

pub struct LocalSegment {
    pub name: String,
    pub generation: u64,
    pub protocol: String,
    pub endpoints: RwLock<Vec<NicEndpoint>>,
    pub memory: MemoryRegistry,
    pub metrics: Metrics,
    /// Extra per-buffer RDMA keys (filled by the RDMA transport when active).
    pub rkeys: RwLock<Vec<(u64, Vec<u32>)>>,
    pub control: RwLock<Option<ControlHandler>>,
}

impl LocalSegment {
    pub fn new(name: String, generation: u64, protocol: &str) -> Self {
        Self {
            name,
            generation,
            protocol: protocol.to_string(),
            endpoints: RwLock::new(Vec::new()),
            memory: MemoryRegistry::default(),
            metrics: Metrics::default(),
            rkeys: RwLock::new(Vec::new()),
            control: RwLock::new(None),
        }
    }

    /// The descriptor peers use, reflecting the regions registered right now.
    pub fn descriptor(&self) -> SegmentDescriptor {
        let rkeys = self.rkeys.read();
        SegmentDescriptor {
            name: self.name.clone(),
            protocol: self.protocol.clone(),
            generation: self.generation,
            endpoints: self.endpoints.read().clone(),
            buffers: self
                .memory
                .list()
                .into_iter()
                .map(|(addr, len)| BufferDesc {
                    addr: addr as u64,
                    length: len as u64,
                    rkeys: rkeys
                        .iter()
                        .find(|(a, _)| *a == addr as u64)
                        .map(|(_, k)| k.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

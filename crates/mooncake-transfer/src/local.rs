//! The local segment: this engine's identity (name, generation), its registered memory
//! and the endpoints it advertises. Shared by the listener and the engine.

use parking_lot::RwLock;
use std::sync::Arc;

/// Answers Control frames (transport handshakes such as RDMA queue-pair setup).
pub type ControlHandler = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// Bytes a [`ReadSource`] read, in a buffer of its own.
pub type SourceBytes = Box<dyn AsRef<[u8]> + Send>;

/// Serves reads of an address range that is not memory: an SSD tier's records, which
/// peers read like any replica (`[addr, addr+len)` in this engine's address space) and
/// which the source reads from its files, checked, on each request. Reads only: a
/// write into the range is refused like any write outside the registered memory.
pub trait ReadSource: Send + Sync {
    /// Whether `[addr, addr+len)` belongs to this source (even if no record holds it).
    fn covers(&self, addr: u64, len: u64) -> bool;
    /// Fills `buf` with the bytes at `addr`. An error refuses the read; bytes that
    /// cannot be vouched for are never returned.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String>;
    /// The `len` bytes at `addr` in a buffer of the source's, sent from there (a
    /// source that reads into buffers of its own saves a copy); by default read into
    /// a fresh one with [`read`](Self::read).
    fn read_bytes(&self, addr: u64, len: usize) -> Result<SourceBytes, String> {
        let mut b = vec![0u8; len];
        self.read(addr, &mut b)?;
        Ok(Box::new(b))
    }
    /// As [`read_bytes`](Self::read_bytes) when the source can answer without
    /// blocking I/O (bytes in memory, a small range): served on the connection's task
    /// instead of a blocking thread. `None`: use `read_bytes`.
    fn read_at_hand(&self, _addr: u64, _len: usize) -> Option<Result<SourceBytes, String>> {
        None
    }
}

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
    /// Non-memory ranges served for reads (an SSD tier), see [`ReadSource`].
    pub source: RwLock<Option<Arc<dyn ReadSource>>>,
    /// The token this engine proves and how its listener checks peers (`tcp::auth`).
    pub auth: crate::tcp::auth::DataAuth,
    /// TLS on the data port (`tcp::tls`); `None`: plaintext.
    pub tls: Option<crate::tcp::tls::DataTls>,
    /// The secrets grants for this engine's memory are checked with (`tcp::grant`).
    pub grants: Arc<crate::tcp::grant::GrantKeys>,
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
            source: RwLock::new(None),
            auth: Default::default(),
            tls: None,
            grants: Default::default(),
        }
    }

    /// The read source covering `[addr, addr+len)`, if any.
    pub fn source_for(&self, addr: u64, len: u64) -> Option<Arc<dyn ReadSource>> {
        self.source
            .read()
            .as_ref()
            .filter(|s| s.covers(addr, len))
            .cloned()
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

//! The control plane's domain types: what a segment is and how a write is replicated.
//! The master, the client and the Python binding use these; the protocol crate maps
//! them to and from the wire (`mooncake_proto::convert`), so each exists in one shape.

/// Everything a peer needs to reach one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentDesc {
    /// The segment's name (its owner's `local_hostname`).
    pub name: String,
    /// Owner identity for "replicas on distinct owners".
    pub owner: String,
    /// Address of the segment in its owner's address space.
    pub base: u64,
    pub size: u64,
    /// `tcp` or `rdma`.
    pub protocol: String,
    /// The owner's transfer-engine listener, `ip:port`.
    pub transport_endpoint: String,
    /// Same-host fast path: the file the segment is mapped from, or empty.
    pub shm_path: String,
    /// The host (boot id) on which `shm_path` is valid.
    pub host_id: String,
    /// Identifies the segment's memory across restarts of its owner (drawn when the
    /// memory is created, kept beside its file); empty when the memory cannot outlive
    /// its process. The master only gives a returning owner its objects back when
    /// this matches, never on the name alone.
    pub generation: String,
}

/// The soft pin a write asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SoftPin {
    /// Keep what the object has (new objects: none).
    #[default]
    Preserve,
    /// Pin; `ttl_ms: None` = the master's default TTL.
    Enable {
        ttl_ms: Option<u64>,
    },
    Disable,
}

/// How many copies a write makes and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicateConfig {
    /// Copies wanted; 0 is read as 1.
    pub replica_num: usize,
    pub with_hard_pin: bool,
    /// Segment names tried first, in order.
    pub preferred_segments: Vec<String>,
    pub soft_pin: SoftPin,
    /// Segment names never placed on: set by a writer retrying writes that could not
    /// reach them (an owner that died is still mounted until its heartbeats run out).
    pub avoid_segments: Vec<String>,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        Self {
            replica_num: 1,
            with_hard_pin: false,
            preferred_segments: Vec::new(),
            soft_pin: SoftPin::Preserve,
            avoid_segments: Vec::new(),
        }
    }
}

impl ReplicateConfig {
    /// `n` replicas, nothing else special.
    pub fn replicas(n: usize) -> Self {
        Self {
            replica_num: n,
            ..Self::default()
        }
    }
}

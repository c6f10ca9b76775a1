//! The SSD tier of a segment owner (a store daemon, or a client with a segment).
//!
//! The master allocates each disk replica an extent in the owner's tier, exactly as it
//! allocates memory replicas in the owner's segment; the owner writes a checksummed
//! record there ([`record`]), keeps an index of its records ([`store`]) so a restart
//! finds them again, and serves reads of them, verified block by block, to readers.
//!
//! - [`config`]: `MOONCAKE_OFFLOAD_FILE_STORAGE_PATH`, `MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES`,
//!   `MOONCAKE_ENABLE_SSD_OFFLOAD`.
//! - [`record`]: the on-disk record format.
//! - [`store`]: [`DiskTier`], the files, reads, writes and recovery.
//! - [`io`]: how the file is read (page cache when it holds the bytes, else O_DIRECT).
//! - [`errors`], [`metrics`].

pub mod config;
pub mod errors;
pub mod io;
pub mod metrics;
pub mod record;
pub mod store;

/// Where a tier's range starts in its owner's transfer-engine address space: above
/// every user-space address, so a tier read is never mistaken for a memory read.
pub const DISK_BASE: u64 = 1 << 56;

pub use config::{DirectWrites, TierConfig};
pub use errors::TierError;
pub use metrics::{TierMetrics, TierStats};
pub use record::{record_len, BLOCK};
pub use store::{DiskTier, PreparedRecord, RecordInfo, TierBytes};

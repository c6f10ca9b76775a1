//! The memory a Mooncake process contributes to the pool, and how other processes on
//! the same host map it.
//!
//! Why a crate of its own: this is the part of a segment owner that deals in raw
//! mappings, `flock`s, files in `/dev/shm` and threads that touch pages behind the
//! caller's back, where a mistake is a SIGBUS or a read of a dead process's memory
//! rather than an error code. None of it needs the master or the transfer engine, so
//! it is kept apart from the client's RPC and data path and tested on its own. The
//! owner side and the mapper side live together because they are two halves of one
//! protocol: the owner's lock on the file is what tells a mapper that the bytes are
//! still served, and the file name prefix is what lets a new owner sweep files a
//! killed one left behind.
//!
//! What stays with the client (`mooncake-client`): registering the memory with the
//! transfer engine, mounting it at the master, the heartbeat that re-mounts it, and
//! the `memcpy` data path that uses the mappings; the store daemon contributes its
//! segment through the client.
//!
//! Layout (each module has one job):
//! - `memory`: [`SegmentMemory`], the owner's mapping (shm file or memfd, hugepages,
//!   sweeping files of dead owners).
//! - `descriptor`: the [`SegmentDesc`](mooncake_proto::SegmentDesc) peers are told.
//! - `shm`: [`ShmCache`] / [`PeerMap`], mappings of same-host peers' segment files and
//!   their liveness probe.
//! - `prefault`: faulting a segment's head in, and a mapped peer segment's used pages
//!   from a low-priority background thread.
//! - `host`: [`host_id`], this host's identity (boot id).
//! - `retain`: segment files that outlive a restart of their owner (the record
//!   beside each file: identity, size, generation), and taking them back.
//!
//! Configuration comes in as arguments (directory, hugepages, whether to map peers);
//! the client reads the environment for it.

#![warn(missing_docs)]

mod descriptor;
mod host;
mod memory;
mod prefault;
mod retain;
mod shm;

pub use host::host_id;
pub use memory::{sweep_stale, SegmentMemory, SHM_PREFIX};
pub use shm::{PeerMap, ShmCache};

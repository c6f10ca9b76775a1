//! Behaviour of `Master` operations, driven directly (the gRPC layer is tested in
//! `tests/grpc_*.rs`). Time-dependent tests run on paused tokio time.

mod batch;
mod concurrency;
mod eviction;
mod generations;
mod lifecycle;
mod liveness;

use super::Master;
use crate::api::Placed;
use crate::config::MasterConfig;
use mooncake_common::{ReplicateConfig, SegmentDesc};
use std::sync::Arc;

pub fn master(cfg: MasterConfig) -> Arc<Master> {
    Master::new(cfg)
}

/// Mounts segment `name` (owner = name) of `size` bytes for client `client`.
pub fn mount(m: &Master, client: &str, name: &str, size: u64) {
    let desc = SegmentDesc {
        name: name.into(),
        owner: name.into(),
        size,
        base: 0x1000_0000,
        protocol: "tcp".into(),
        transport_endpoint: "127.0.0.1:1".into(),
        ..Default::default()
    };
    assert_eq!(m.mount_segment(client, desc), Ok(()));
}

pub fn replicas(n: usize) -> ReplicateConfig {
    ReplicateConfig::replicas(n)
}

/// The default replicate config (one replica, no pins).
pub fn no_rc() -> ReplicateConfig {
    ReplicateConfig::default()
}

/// Where replicas are, comparably: (segment name, offset) each.
pub fn locs(placed: &[Placed]) -> Vec<(String, u64)> {
    placed
        .iter()
        .map(|p| (p.segment.desc.name.clone(), p.offset))
        .collect()
}

/// put start + end; panics unless both succeed.
pub fn put(m: &Master, key: &str, size: u64) {
    let r = m
        .put_start("c", key, size, &no_rc())
        .unwrap_or_else(|e| panic!("put_start {key}: {e:?}"));
    assert_eq!(m.write_end("c", key, r.put_id), Ok(()), "put_end {key}");
}

//! Behaviour of `Master` operations, driven directly (the gRPC layer is tested in
//! `tests/grpc_*.rs`). Time-dependent tests run on paused tokio time.

mod batch;
mod concurrency;
mod eviction;
mod lifecycle;
mod liveness;

use super::Master;
use crate::config::MasterConfig;
use mooncake_proto::{ReplicateConfig, SegmentDesc};
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
    assert_eq!(m.mount_segment(client, Some(desc)).code, 0);
}

pub fn replicas(n: u32) -> ReplicateConfig {
    ReplicateConfig {
        replica_num: n,
        ..Default::default()
    }
}

/// put start + end; panics unless both succeed.
pub fn put(m: &Master, key: &str, size: u64) {
    let r = m.put_start("c", key, size, None);
    assert_eq!(r.code, 0, "put_start {key}");
    assert_eq!(m.write_end("c", key, r.put_id), 0, "put_end {key}");
}

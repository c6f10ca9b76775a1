//! The tier's control plane driven directly: a persist pins its memory replica until
//! the owner answers; a written object evicted from DRAM is read from its disk replica;
//! a failed write leaves nothing on disk.

use super::DISK_BASE;
use crate::config::MasterConfig;
use crate::master::Master;
use mooncake_common::{ErrorCode, ReplicateConfig, SegmentDesc};
use mooncake_proto::{TierTaskKind, TierTaskResult, TierWorkRequest};
use std::sync::Arc;

fn offload_master() -> Arc<Master> {
    let cfg = MasterConfig {
        enable_offload: true,
        ..Default::default()
    };
    let m = Master::new(cfg);
    let desc = SegmentDesc {
        name: "s1".into(),
        owner: "s1".into(),
        size: 16 << 20,
        base: 0x1000_0000,
        protocol: "tcp".into(),
        transport_endpoint: "127.0.0.1:1".into(),
        ..Default::default()
    };
    assert_eq!(m.mount_segment("c", desc), Ok(()));
    m
}

fn call(report: bool, done: Vec<TierTaskResult>) -> TierWorkRequest {
    TierWorkRequest {
        client_id: "c".into(),
        segment_name: "s1".into(),
        transport_endpoint: "127.0.0.1:1".into(),
        capacity: 64 << 20,
        report,
        done,
        tier_id: "t1".into(),
        ..Default::default()
    }
}

fn put(m: &Master, key: &str) {
    let w = m
        .put_start("c", key, 1 << 20, &ReplicateConfig::default())
        .unwrap();
    m.write_end("c", key, w.put_id).unwrap();
}

fn ok(task_id: u64) -> Vec<TierTaskResult> {
    vec![TierTaskResult { task_id, code: 0 }]
}

#[tokio::test(start_paused = true)]
async fn a_write_pins_its_memory_until_the_owner_answers() {
    let m = offload_master();
    assert!(m
        .tier_work(call(true, vec![]))
        .await
        .unwrap()
        .tasks
        .is_empty());
    put(&m, "k");
    let r = m.tier_work(call(false, vec![])).await.unwrap();
    assert_eq!(r.tasks.len(), 1);
    let t = r.tasks[0].clone();
    assert_eq!(t.kind, TierTaskKind::TierPersist as i32);
    assert_eq!(t.disk_len, mooncake_tier::record_len(1, 1 << 20));
    let used = m.segments.totals().0;
    assert!(used >= 1 << 20);
    // Removed while the owner writes: its memory is not handed out again yet.
    m.remove("k", true).unwrap();
    assert_eq!(m.segments.totals().0, used, "freed under the owner's write");
    let r = m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    assert_eq!(m.segments.totals().0, 0, "freed once answered");
    // And the record is discarded.
    assert!(r
        .tasks
        .iter()
        .any(|d| d.kind == TierTaskKind::TierDiscard as i32 && d.disk_offset == t.disk_offset));
    assert_eq!(
        m.get_replica_list("k").err(),
        Some(ErrorCode::ObjectNotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn an_object_evicted_from_dram_is_read_from_its_disk_replica() {
    let m = offload_master();
    m.tier_work(call(true, vec![])).await.unwrap();
    put(&m, "k");
    let t = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    assert_eq!(m.evict_bytes(u64::MAX).objects, 1);
    let l = m.get_replica_list("k").unwrap();
    assert_eq!(l.size, 1 << 20);
    assert_eq!(l.replicas.len(), 1);
    let p = &l.replicas[0];
    assert_eq!(p.segment.desc.base, DISK_BASE);
    assert_eq!(p.segment.desc.name, "s1");
    assert_eq!(
        p.offset,
        t.disk_offset + mooncake_tier::record::header_len(1, 1 << 20)
    );
    assert_eq!(m.exist("k"), Ok(true));
    // A put of the same key is refused; a leased disk replica resists a plain remove.
    assert_eq!(
        m.put_start("c", "k", 1 << 20, &ReplicateConfig::default())
            .err(),
        Some(ErrorCode::ObjectAlreadyExists)
    );
    assert_eq!(m.remove("k", false), Err(ErrorCode::ObjectHasLease));
    assert_eq!(m.remove("k", true), Ok(()));
    assert_eq!(m.exist("k"), Ok(false));
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_leaves_the_object_in_dram_only() {
    let m = offload_master();
    m.tier_work(call(true, vec![])).await.unwrap();
    put(&m, "k");
    let t = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    let failed = vec![TierTaskResult {
        task_id: t.task_id,
        code: ErrorCode::InternalError.code(),
    }];
    m.tier_work(call(false, failed)).await.unwrap();
    assert_eq!(m.evict_bytes(u64::MAX).objects, 1);
    assert_eq!(
        m.get_replica_list("k").err(),
        Some(ErrorCode::ObjectNotFound)
    );
    assert_eq!(
        m.tiers()
            .stats
            .persist_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

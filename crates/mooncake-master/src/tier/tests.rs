//! The tier's control plane driven directly: a persist pins its memory replica until
//! the owner answers; a written object evicted from DRAM is read from its disk replica;
//! a failed write leaves nothing on disk; under `--offload_on_evict` eviction demotes
//! (a put's own eviction too, waiting for the memory); `--promotion_on_hit` copies a disk hit back.

use super::DISK_BASE;
use crate::config::MasterConfig;
use crate::master::Master;
use mooncake_common::{ErrorCode, ReplicateConfig, SegmentDesc};
use mooncake_proto::{TierTaskKind, TierTaskResult, TierWorkRequest};
use std::sync::Arc;

fn offload_master() -> Arc<Master> {
    master_with(MasterConfig {
        enable_offload: true,
        ..Default::default()
    })
}

fn master_with(cfg: MasterConfig) -> Arc<Master> {
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

/// Persisting after put, an object eviction takes out of DRAM before the owner has
/// written it is read from the memory replica the write reads from, then from disk.
#[tokio::test(start_paused = true)]
async fn a_key_evicted_while_its_persist_runs_is_read_from_its_memory_replica() {
    let m = offload_master();
    m.tier_work(call(true, vec![])).await.unwrap();
    put(&m, "k");
    let t = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    assert_eq!(m.evict_bytes(u64::MAX).objects, 1);
    let l = m.get_replica_list("k").unwrap();
    assert_ne!(l.replicas[0].segment.desc.base, DISK_BASE, "memory");
    assert_eq!(m.exist("k"), Ok(true));
    m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    let l = m.get_replica_list("k").unwrap();
    assert_eq!(
        l.replicas[0].segment.desc.base, DISK_BASE,
        "disk once written"
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

fn stat(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn offload_on_evict_demotes_the_rounds_victims_and_frees_them_once_written() {
    let m = master_with(MasterConfig {
        enable_offload: true,
        offload_on_evict: true,
        // (A put of the whole pool is kept.)
        eviction_high_watermark_ratio: 1.0,
        ..Default::default()
    });
    m.tier_work(call(true, vec![])).await.unwrap();
    put(&m, "a");
    put(&m, "b");
    // Nothing is written after a put.
    assert!(m
        .tier_work(call(false, vec![]))
        .await
        .unwrap()
        .tasks
        .is_empty());
    let used = m.segments.totals().0;
    assert_eq!(m.evict_bytes(1).objects, 1, "one victim");
    // The victim (the policy's lowest: "a") is being demoted: its memory stays
    // allocated and counted as demoting, so a round does not demote twice.
    assert_eq!(m.segments.totals().0, used);
    assert_eq!(m.tiers().demoting_bytes(), 1 << 20);
    let tasks = m.tier_work(call(false, vec![])).await.unwrap().tasks;
    assert_eq!(tasks.len(), 1);
    let t = tasks[0].clone();
    assert_eq!(t.kind, TierTaskKind::TierPersist as i32);
    assert_eq!(t.key, "a");
    assert!(t.demotion);
    m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    assert_eq!(
        m.segments.totals().0,
        used - (1 << 20),
        "freed once written"
    );
    assert_eq!(m.tiers().demoting_bytes(), 0);
    assert_eq!(stat(&m.tiers().stats.demotions), 1);
    let l = m.get_replica_list("a").unwrap();
    assert_eq!(l.replicas[0].segment.desc.base, DISK_BASE);
    // A put that finds no room (the whole pool) demotes too ("b"), and its memory
    // comes back only when the owner answers. (On this single-threaded runtime the
    // put cannot wait for that, so it answers -200 and is tried again.)
    assert_eq!(
        m.put_start("c", "big", 16 << 20, &ReplicateConfig::default())
            .err(),
        Some(ErrorCode::NoAvailableHandle)
    );
    assert_eq!(stat(&m.tiers().stats.evict_drops), 0, "nothing dropped");
    let tasks = m.tier_work(call(false, vec![])).await.unwrap().tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].key, "b");
    assert!(tasks[0].demotion);
    m.tier_work(call(false, ok(tasks[0].task_id)))
        .await
        .unwrap();
    let w = m
        .put_start("c", "big", 16 << 20, &ReplicateConfig::default())
        .unwrap();
    m.write_end("c", "big", w.put_id).unwrap();
    assert_eq!(stat(&m.tiers().stats.demotions), 2);
    assert_eq!(stat(&m.tiers().stats.evict_drops), 0);
    for k in ["a", "b"] {
        let l = m.get_replica_list(k).unwrap();
        assert_eq!(l.replicas[0].segment.desc.base, DISK_BASE, "{k} on disk");
    }
}

/// On the multi-threaded runtime (the master's), a put that finds DRAM full of
/// objects the rounds have not demoted yet demotes them itself and waits for their
/// memory: it succeeds once the owner has written them, and nothing is dropped.
/// Persisting after put, a put that finds DRAM full of objects still being written
/// waits for those writes the same way instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_finds_dram_full_waits_for_the_tier_writes_and_drops_nothing() {
    for offload_on_evict in [true, false] {
        let m = master_with(MasterConfig {
            enable_offload: true,
            offload_on_evict,
            // No round ever runs: every eviction is a put's own.
            eviction_high_watermark_ratio: 1.0,
            ..Default::default()
        });
        m.tier_work(call(true, vec![])).await.unwrap();
        // The owner: answers every task it is handed.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let owner = {
            let (m, stop) = (m.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                // Once stopped: until every task handed out is answered.
                loop {
                    let stopped = stop.load(std::sync::atomic::Ordering::Relaxed);
                    let tasks = m
                        .tier_work(call(false, std::mem::take(&mut done)))
                        .await
                        .unwrap()
                        .tasks;
                    if stopped && tasks.is_empty() {
                        break;
                    }
                    done = tasks.iter().flat_map(|t| ok(t.task_id)).collect();
                }
            })
        };
        // 40 MiB into 16 MiB, from a blocking thread (as the rpc handlers' puts
        // block their thread); `put` panics on a failed put.
        let m2 = m.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..40 {
                put(&m2, &format!("k{i}"));
            }
        })
        .await
        .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        owner.await.unwrap();
        let stats = &m.tiers().stats;
        assert_eq!(stat(&stats.evict_drops), 0, "{offload_on_evict}");
        if offload_on_evict {
            assert!(stat(&stats.demotions) >= 24);
        } else {
            assert!(stat(&stats.persisted) >= 24);
        }
        for i in 0..40 {
            assert!(
                m.get_replica_list(&format!("k{i}")).is_ok(),
                "k{i} lost ({offload_on_evict})"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_disk_hit_is_promoted_on_the_owners_next_call_and_read_from_disk_meanwhile() {
    let m = master_with(MasterConfig {
        enable_offload: true,
        promotion_on_hit: true,
        ..Default::default()
    });
    m.tier_work(call(true, vec![])).await.unwrap();
    put(&m, "k");
    let t = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    assert_eq!(m.evict_bytes(u64::MAX).objects, 1);
    assert_eq!(m.segments.totals().0, 0);
    // The read is answered from disk and asks for a promotion.
    let l = m.get_replica_list("k").unwrap();
    assert_eq!(l.replicas[0].segment.desc.base, DISK_BASE);
    assert_eq!(m.tiers().promoting(), 1);
    let tasks = m.tier_work(call(false, vec![])).await.unwrap().tasks;
    assert_eq!(tasks.len(), 1);
    let p = tasks[0].clone();
    assert_eq!(p.kind, TierTaskKind::TierPromote as i32);
    assert_eq!(p.disk_offset, t.disk_offset);
    assert_eq!(
        m.segments.totals().0,
        1 << 20,
        "memory allocated for the copy"
    );
    // While the owner copies, reads still get the disk replica, not -703.
    let l = m.get_replica_list("k").unwrap();
    assert_eq!(l.replicas[0].segment.desc.base, DISK_BASE);
    assert_eq!(m.exist("k"), Ok(true));
    m.tier_work(call(false, ok(p.task_id))).await.unwrap();
    assert_eq!(stat(&m.tiers().stats.promotions), 1);
    assert_eq!(m.tiers().promoting(), 0);
    let l = m.get_replica_list("k").unwrap();
    assert_ne!(
        l.replicas[0].segment.desc.base, DISK_BASE,
        "a memory hit now"
    );
    assert_eq!(l.replicas[0].offset, p.mem_offset);
    // The disk replica stays, and nothing new is written for the promoted copy.
    assert!(m.tiers().contains("k"));
    assert!(m
        .tier_work(call(false, vec![]))
        .await
        .unwrap()
        .tasks
        .is_empty());
    // A failed copy gives the memory back and leaves the object on disk. (Past the
    // read guard of the memory hit above first.)
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(m.evict_bytes(u64::MAX).objects, 1);
    m.get_replica_list("k").unwrap();
    let p = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    let failed = vec![TierTaskResult {
        task_id: p.task_id,
        code: ErrorCode::InternalError.code(),
    }];
    m.tier_work(call(false, failed)).await.unwrap();
    assert_eq!(stat(&m.tiers().stats.promotion_failures), 1);
    assert_eq!(m.segments.totals().0, 0);
    let l = m.get_replica_list("k").unwrap();
    assert_eq!(l.replicas[0].segment.desc.base, DISK_BASE);
}

#[tokio::test(start_paused = true)]
async fn a_key_being_demoted_is_read_from_its_memory_replica_which_outlives_the_readers_lease() {
    let m = master_with(MasterConfig {
        enable_offload: true,
        offload_on_evict: true,
        default_kv_lease_ttl: std::time::Duration::from_millis(50),
        ..Default::default()
    });
    m.tier_work(call(true, vec![])).await.unwrap();
    put(&m, "a");
    put(&m, "b");
    let used = m.segments.totals().0;
    assert_eq!(m.evict_bytes(1).objects, 1, "one victim");
    // Out of the memory index, its record not written yet: the reader is given the
    // memory replica the owner writes from (and `exist` sees the key).
    let l = m.get_replica_list("a").unwrap();
    assert_eq!(l.size, 1 << 20);
    assert_eq!(l.replicas.len(), 1);
    assert_eq!(l.replicas[0].segment.desc.base, 0x1000_0000);
    assert_eq!(m.get_replica_list("b").unwrap().replicas[0].offset, 1 << 20);
    assert_eq!(
        l.replicas[0].offset, 0,
        "the victim is the first put, \"a\""
    );
    assert_eq!(m.exist("a"), Ok(true));
    assert_eq!(stat(&m.tiers().stats.demoting_hits), 1);
    let t = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    assert!(t.demotion);
    m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    // Written: readers get the disk replica now, but the memory the last reader was
    // given stays allocated until its lease ends.
    let l = m.get_replica_list("a").unwrap();
    assert_eq!(l.replicas[0].segment.desc.base, DISK_BASE);
    assert_eq!(m.segments.totals().0, used, "freed under a reader's lease");
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    m.tier_work(call(false, vec![])).await.unwrap();
    assert_eq!(
        m.segments.totals().0,
        used - (1 << 20),
        "freed once the lease ended"
    );
    assert_eq!(stat(&m.tiers().stats.demotions), 1);
}

/// A tenant's records on the tier are its disk figure, apart from the memory its
/// quota caps: a demotion moves the object's bytes from the one to the other, a
/// promotion charges memory again while the record stays, a remove gives back both.
#[tokio::test(start_paused = true)]
async fn a_tenants_disk_records_are_counted_apart_from_its_memory_charge() {
    let m = master_with(MasterConfig {
        enable_offload: true,
        offload_on_evict: true,
        promotion_on_hit: true,
        ..Default::default()
    });
    let usage = m.index.usage().clone();
    let figures = || {
        let v = usage.view("beta");
        (v.bytes, v.disk_bytes)
    };
    const MIB: u64 = 1 << 20;
    m.tier_work(call(true, vec![])).await.unwrap();
    let k = mooncake_common::auth::namespaced_key("beta", "k");
    put(&m, &k);
    assert_eq!(figures(), (MIB, 0));
    // Demoted: out of memory at once (its record is being written), on disk.
    assert_eq!(m.evict_bytes(1).objects, 1);
    assert_eq!(figures(), (0, MIB));
    let t = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    assert!(t.demotion);
    m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    assert_eq!(figures(), (0, MIB), "disk only");
    assert_eq!(usage.disk_bytes(mooncake_common::auth::CLUSTER_TENANT), 0);
    // The disk-only object does not count against a memory quota of one object.
    usage.set_quota("beta", MIB);
    let k2 = mooncake_common::auth::namespaced_key("beta", "k2");
    put(&m, &k2);
    assert_eq!(figures(), (MIB, MIB));
    // Memory is what the quota caps: a second object in DRAM would pass it.
    let k3 = mooncake_common::auth::namespaced_key("beta", "k3");
    assert_eq!(
        m.put_start("c", &k3, MIB, &ReplicateConfig::default())
            .err(),
        Some(ErrorCode::TenantQuotaExceeded)
    );
    m.remove(&k2, true).unwrap();
    assert_eq!(figures(), (0, MIB));
    usage.remove_quota("beta");
    // Promoted: memory is charged again (from the copy's start), the record stays.
    m.get_replica_list(&k).unwrap();
    let p = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    assert_eq!(p.kind, TierTaskKind::TierPromote as i32);
    m.tier_work(call(false, ok(p.task_id))).await.unwrap();
    assert_eq!(stat(&m.tiers().stats.promotions), 1);
    assert_eq!(figures(), (MIB, MIB));
    // Evicted again: its record is current, so memory alone goes.
    assert_eq!(m.evict_bytes(u64::MAX).objects, 1);
    assert_eq!(figures(), (0, MIB));
    // Removed while disk-only: both figures are back to zero.
    m.remove(&k, true).unwrap();
    assert_eq!(figures(), (0, 0));
    assert_eq!(usage.view("beta").inflight, 0);
}

/// A call that brings results is answered at once even with no task to hand out (its
/// owner may still be writing others, whose results must not wait for a task); one
/// that brings nothing waits for work.
#[tokio::test(start_paused = true)]
async fn a_call_with_results_is_answered_at_once_and_one_without_waits_for_work() {
    let m = master_with(MasterConfig {
        enable_offload: true,
        ..Default::default()
    });
    m.tier_work(call(true, vec![])).await.unwrap();
    put(&m, "k");
    let t = m.tier_work(call(false, vec![])).await.unwrap().tasks[0].clone();
    // (Takes the wake-up the task's push left.)
    assert!(m
        .tier_work(call(false, vec![]))
        .await
        .unwrap()
        .tasks
        .is_empty());
    let at = tokio::time::Instant::now();
    let r = m.tier_work(call(false, ok(t.task_id))).await.unwrap();
    assert!(r.tasks.is_empty());
    assert_eq!(at.elapsed(), std::time::Duration::ZERO, "answered at once");
    assert_eq!(stat(&m.tiers().stats.persisted), 1);
    let r = m.tier_work(call(false, vec![])).await.unwrap();
    assert!(r.tasks.is_empty());
    assert!(
        at.elapsed() >= std::time::Duration::from_millis(500),
        "waited for work"
    );
}

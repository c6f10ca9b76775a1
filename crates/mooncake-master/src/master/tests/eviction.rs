use super::*;
use mooncake_common::{ErrorCode, SoftPin};
use std::time::Duration;

const KB64: u64 = 64 * 1024;

fn cfg() -> MasterConfig {
    MasterConfig {
        eviction_high_watermark_ratio: 0.5,
        eviction_ratio: 0.25,
        default_kv_lease_ttl: Duration::from_millis(10),
        ..Default::default()
    }
}

fn keys(m: &Master) -> Vec<String> {
    m.all_keys()
}

#[tokio::test(start_paused = true)]
async fn below_the_watermark_nothing_is_evicted() {
    let m = master(cfg());
    mount(&m, "c", "a:1", 1 << 20);
    for i in 0..8 {
        put(&m, &format!("k{i}"), KB64);
    }
    assert_eq!(m.run_eviction().objects, 0, "exactly at 50%");
}

#[tokio::test(start_paused = true)]
async fn least_recently_used_go_first() {
    let m = master(cfg());
    mount(&m, "c", "a:1", 1 << 20);
    for i in 0..10 {
        put(&m, &format!("k{i}"), KB64);
    }
    // Reading k0 and k1 makes them the most recently used.
    assert_eq!(m.exist("k0"), Ok(true));
    assert!(m.get_replica_list("k1").is_ok());
    tokio::time::advance(Duration::from_millis(20)).await; // leases over
    let r = m.run_eviction();
    assert_eq!((r.objects, r.bytes), (4, 4 * KB64), "25% of 1 MiB");
    assert_eq!(keys(&m), ["k0", "k1", "k6", "k7", "k8", "k9"]);
    assert_eq!(m.stats().allocated_bytes, 6 * KB64);
    let c = m.counters().snapshot();
    assert!(c.contains(&("evicted_objects", 4)));
}

#[tokio::test(start_paused = true)]
async fn leased_in_progress_and_hard_pinned_objects_are_skipped() {
    let m = master(cfg());
    mount(&m, "c", "a:1", 1 << 20);
    let hard = ReplicateConfig {
        with_hard_pin: true,
        ..Default::default()
    };
    for i in 0..3 {
        let r = m
            .put_start("c", &format!("h{i}"), KB64, &hard)
            .expect("put_start");
        assert_eq!(m.write_end("c", &format!("h{i}"), r.put_id), Ok(()));
    }
    m.put_start("c", "open", KB64, &no_rc())
        .expect("put_start open");
    put(&m, "leased", KB64);
    for i in 0..5 {
        put(&m, &format!("k{i}"), KB64);
    }
    // The lease runs 10 ms; no time passes.
    assert_eq!(m.exist("leased"), Ok(true));
    // k3 took usage over the watermark: its round leaves it (and k4, written since)
    // alone and takes k0..k2, short of its 25% target.
    let r = m.run_eviction();
    assert_eq!(r.objects, 3);
    assert_eq!(keys(&m), ["h0", "h1", "h2", "k3", "k4", "leased", "open"]);
    // Hard-pinned, leased and in-progress objects are never taken; the next round,
    // triggered by k6, takes k3..k5 but not k6 and k7.
    put(&m, "k5", KB64);
    put(&m, "k6", KB64);
    put(&m, "k7", KB64);
    let r = m.run_eviction();
    assert_eq!(keys(&m), ["h0", "h1", "h2", "k6", "k7", "leased", "open"]);
    assert_eq!(r.objects, 3);
}

#[tokio::test(start_paused = true)]
async fn soft_pinned_only_in_a_second_pass_and_only_if_allowed() {
    for allow in [true, false] {
        let m = master(MasterConfig {
            allow_evict_soft_pinned_objects: allow,
            ..cfg()
        });
        mount(&m, "c", "a:1", 1 << 20);
        let soft = ReplicateConfig {
            soft_pin: SoftPin::Enable { ttl_ms: None },
            ..Default::default()
        };
        // Soft-pinned objects are the oldest, yet plain ones go first.
        for i in 0..6 {
            let r = m
                .put_start("c", &format!("s{i}"), KB64, &soft)
                .expect("put_start");
            assert_eq!(m.write_end("c", &format!("s{i}"), r.put_id), Ok(()));
        }
        put(&m, "p0", KB64);
        put(&m, "p1", KB64);
        put(&m, "p2", KB64);
        let r = m.run_eviction();
        // p2 took usage over the watermark: its own round leaves it.
        if allow {
            assert_eq!(r.objects, 4);
            assert_eq!(
                keys(&m),
                ["p2", "s2", "s3", "s4", "s5"],
                "plain first, then the oldest soft-pinned"
            );
        } else {
            assert_eq!(r.objects, 2);
            assert_eq!(keys(&m), ["p2", "s0", "s1", "s2", "s3", "s4", "s5"]);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_put_that_finds_no_space_evicts_and_succeeds() {
    let m = master(cfg());
    mount(&m, "c", "a:1", 1 << 20);
    for i in 0..16 {
        put(&m, &format!("k{i}"), KB64);
    }
    assert_eq!(m.stats().allocated_bytes, 1 << 20, "full");
    let r = m.put_start("c", "new", 2 * KB64, &no_rc());
    assert!(r.is_ok(), "evicted at once instead of -200: {:?}", r.err());
    assert!(!m.all_keys().contains(&"k0".to_string()), "oldest went");
    assert_eq!(
        m.counters()
            .snapshot()
            .iter()
            .find(|c| c.0 == "sync_evictions")
            .unwrap()
            .1,
        1
    );
    // Larger than any segment: -200 and nothing is evicted for it.
    let before = m.all_keys().len();
    assert_eq!(
        m.put_start("c", "huge", u64::MAX, &replicas(u32::MAX as usize))
            .err(),
        Some(ErrorCode::NoAvailableHandle)
    );
    assert_eq!(
        m.put_start("c", "huge", (1 << 20) + 1, &no_rc()).err(),
        Some(ErrorCode::NoAvailableHandle)
    );
    assert_eq!(m.all_keys().len(), before);
    // Nothing evictable: -200.
    let m = master(cfg());
    mount(&m, "c", "a:1", 1 << 20);
    let hard = ReplicateConfig {
        with_hard_pin: true,
        ..Default::default()
    };
    let r = m
        .put_start("c", "pinned", 1 << 20, &hard)
        .expect("put_start");
    assert_eq!(m.write_end("c", "pinned", r.put_id), Ok(()));
    assert_eq!(
        m.put_start("c", "new", KB64, &no_rc()).err(),
        Some(ErrorCode::NoAvailableHandle)
    );
}

#[tokio::test(start_paused = true)]
async fn the_background_worker_evicts_above_the_watermark() {
    let m = master(cfg());
    mount(&m, "c", "a:1", 1 << 20);
    let _w = m.spawn_workers();
    let names: Vec<String> = m.workers_status().into_iter().map(|w| w.0).collect();
    assert_eq!(names, ["eviction", "liveness", "put_reaper"]);
    for i in 0..12 {
        put(&m, &format!("k{i}"), KB64);
    }
    assert_eq!(m.stats().allocated_bytes, 12 * KB64);
    for _ in 0..10 {
        tokio::time::sleep(crate::workers::EVICTION_INTERVAL).await;
        if m.stats().allocated_bytes < 12 * KB64 {
            break;
        }
    }
    assert_eq!(
        m.stats().allocated_bytes,
        8 * KB64,
        "evicted 25% of capacity"
    );
    let status = m.workers_status();
    assert!(status[0].1.contains("evicted 4 objects"), "{status:?}");
}

/// A lease (10 s here) keeps answering -706 to remove, but eviction waits only for the
/// read guard: objects read a moment ago stay protected, older reads fall back into
/// plain LRU order instead of pinning the pool.
#[tokio::test(start_paused = true)]
async fn eviction_waits_for_the_read_guard_not_the_whole_lease() {
    use crate::lease::{read_guard_ms, READ_GUARD_BASE_MS};
    let m = master(MasterConfig {
        default_kv_lease_ttl: Duration::from_secs(10),
        ..cfg()
    });
    mount(&m, "c", "a:1", 1 << 20);
    for i in 0..10 {
        put(&m, &format!("k{i}"), KB64);
    }
    // k0..k3 are the least recently used; k0 is read, k1 only checked.
    assert!(m.get_replica_list("k0").is_ok());
    assert_eq!(m.exist("k1"), Ok(true));
    let r = m.run_eviction();
    assert_eq!(r.objects, 4, "25% of 1 MiB");
    assert_eq!(
        keys(&m),
        ["k0", "k1", "k6", "k7", "k8", "k9"],
        "just-read objects are guarded; the next oldest go"
    );
    // After the guard (the lease still runs): remove still -706, but k0 and k1 are
    // ordinary LRU candidates again (more recent than k6..k9, which go now).
    tokio::time::advance(Duration::from_millis(read_guard_ms(10_000, KB64))).await;
    assert_eq!(m.remove("k0", false), Err(ErrorCode::ObjectHasLease));
    for i in 10..14 {
        put(&m, &format!("k{i}"), KB64);
    }
    assert_eq!(m.run_eviction().objects, 4);
    assert_eq!(keys(&m), ["k0", "k1", "k10", "k11", "k12", "k13"]);
    // A batched read is guarded for as long as copying the whole batch can take;
    // the leased but unguarded k0 and k1 can go meanwhile.
    let batch: Vec<String> = (10..14).map(|i| format!("k{i}")).collect();
    let got = m.batch_get_replica_list(&batch);
    assert!(got
        .iter()
        .all(|g| matches!(g, Ok(g) if g.lease_ttl_ms == 10_000)));
    let guard = read_guard_ms(10_000, 4 * KB64);
    assert!(guard > READ_GUARD_BASE_MS);
    assert_eq!(m.evict_bytes(u64::MAX).objects, 2);
    assert_eq!(keys(&m), ["k10", "k11", "k12", "k13"]);
    tokio::time::advance(Duration::from_millis(guard - 1)).await;
    assert_eq!(m.evict_bytes(u64::MAX).objects, 0, "all still guarded");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(m.evict_bytes(u64::MAX).objects, 4, "guard over");
}

/// A put into a full pool whose objects were all read within the lease (but not
/// within the read guard) evicts and succeeds instead of failing with -200.
#[tokio::test(start_paused = true)]
async fn a_full_pool_of_recently_read_objects_still_takes_puts() {
    let m = master(MasterConfig {
        default_kv_lease_ttl: Duration::from_secs(10),
        ..cfg()
    });
    mount(&m, "c", "a:1", 1 << 20);
    let all: Vec<String> = (0..16).map(|i| format!("k{i}")).collect();
    for k in &all {
        put(&m, k, KB64);
    }
    assert!(m.batch_exist(&all).iter().all(|&c| c == Ok(true)));
    assert_eq!(
        m.put_start("c", "new", KB64, &no_rc()).err(),
        Some(ErrorCode::NoAvailableHandle),
        "all guarded"
    );
    tokio::time::advance(Duration::from_millis(crate::lease::READ_GUARD_BASE_MS)).await;
    let r = m
        .put_start("c", "new", KB64, &no_rc())
        .expect("evicted the least recently used instead of -200");
    assert_eq!(m.write_end("c", "new", r.put_id), Ok(()));
}

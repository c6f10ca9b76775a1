use super::*;
use mooncake_common::auth::CLUSTER_TENANT;
use mooncake_common::{ErrorCode, SoftPin};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn in_progress_objects_are_invisible_until_put_end() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    let r = m.put_start("c", "k", 1000, &no_rc()).expect("put_start");
    assert_eq!(r.replicas.len(), 1);
    assert_eq!(r.size, 1000);
    assert_eq!(m.exist("k"), Ok(false));
    assert_eq!(
        m.get_replica_list("k").err(),
        Some(ErrorCode::ReplicaIsNotReady)
    );
    assert_eq!(m.remove("k", false), Err(ErrorCode::ReplicaIsNotReady));
    assert_eq!(
        m.put_start("c", "k", 1000, &no_rc()).err(),
        Some(ErrorCode::ObjectAlreadyExists),
        "first writer wins"
    );
    assert_eq!(
        m.write_end("c", "k", r.put_id + 1000),
        Err(ErrorCode::IllegalClient)
    );
    assert_eq!(m.write_end("c", "k", r.put_id), Ok(()));
    assert_eq!(m.exist("k"), Ok(true));
    let g = m.get_replica_list("k").expect("replica list");
    assert_eq!((g.size, g.replicas.len()), (1000, 1));
    assert_eq!(g.replicas[0].offset, r.replicas[0].offset);
    assert_eq!(
        m.put_start("c", "k", 5, &no_rc()).err(),
        Some(ErrorCode::ObjectAlreadyExists)
    );
    assert_eq!(m.stats().key_count, 1);
}

#[tokio::test(start_paused = true)]
async fn a_forced_remove_reclaims_a_put_that_never_ended() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    // A squatter starts a put of most of the segment and never ends it.
    let squat = m
        .put_start("evil", "k", 900 << 10, &no_rc())
        .expect("put_start");
    assert_eq!(
        m.put_start("c", "other", 900 << 10, &no_rc()).err(),
        Some(ErrorCode::NoAvailableHandle),
        "the space is held"
    );
    assert_eq!(m.remove("k", false), Err(ErrorCode::ReplicaIsNotReady));
    assert_eq!(m.remove("k", true), Ok(()), "forced: reclaimed");
    assert_eq!(m.stats().allocated_bytes, 0);
    assert_eq!(
        m.write_end("evil", "k", squat.put_id),
        Err(ErrorCode::ObjectNotFound),
        "the squatter's end finds nothing"
    );
    let r = m
        .put_start("c", "other", 900 << 10, &no_rc())
        .expect("room again");
    assert_eq!(m.write_end("c", "other", r.put_id), Ok(()));
    assert_eq!(m.index.usage().inflight(CLUSTER_TENANT), 0);
    assert_eq!(m.index.usage().bytes(CLUSTER_TENANT), 900 << 10);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_are_invalid_params() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    const BAD: Option<ErrorCode> = Some(ErrorCode::InvalidParams);
    assert_eq!(m.put_start("c", "", 10, &no_rc()).err(), BAD);
    assert_eq!(m.put_start("c", "k", 0, &no_rc()).err(), BAD);
    assert_eq!(m.exist("").err(), BAD);
    assert_eq!(m.remove_by_regex("([", false).err(), BAD);
    // Patterns that would cost the master memory out of proportion are refused.
    let long = "a".repeat(crate::master::remove::MAX_REGEX_LEN + 1);
    assert_eq!(m.remove_by_regex(&long, false).err(), BAD);
    assert_eq!(m.remove_by_regex("(a{1000}){1000}", false).err(), BAD);
    // A soft-pin TTL without Enable is refused at the protocol edge
    // (mooncake-proto's convert tests): the domain type cannot express it.
    assert_eq!(
        m.put_start("c", "k", 2 << 20, &no_rc()).err(),
        Some(ErrorCode::NoAvailableHandle),
        "too big"
    );
}

#[tokio::test(start_paused = true)]
async fn revoke_frees_space_and_the_key() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    // (Most of the pool: a put above the high watermark alone would be refused.)
    let r = m
        .put_start("c", "k", 900 << 10, &no_rc())
        .expect("put_start");
    assert_eq!(m.stats().allocated_bytes, 900 << 10);
    assert_eq!(m.write_revoke("c", "k", r.put_id), Ok(()));
    assert_eq!(m.stats().allocated_bytes, 0);
    assert_eq!(m.stats().key_count, 0);
    assert_eq!(
        m.write_revoke("c", "k", r.put_id),
        Err(ErrorCode::ObjectNotFound)
    );
    put(&m, "k", 900 << 10);
}

#[tokio::test(start_paused = true)]
async fn replicas_land_on_distinct_owners_best_effort() {
    let m = master(MasterConfig::default());
    for n in ["a:1", "b:1", "c:1"] {
        mount(&m, n, n, 1 << 20);
    }
    let r = m.put_start("c", "k", 100, &replicas(5)).expect("put_start");
    let mut owners: Vec<String> = r
        .replicas
        .iter()
        .map(|x| x.segment.desc.owner.clone())
        .collect();
    owners.sort();
    assert_eq!(owners, ["a:1", "b:1", "c:1"]);
    let pref = ReplicateConfig {
        replica_num: 1,
        preferred_segments: vec!["b:1".into()],
        ..Default::default()
    };
    for i in 0..20 {
        let r = m
            .put_start("c", &format!("p{i}"), 100, &pref)
            .expect("put_start");
        assert_eq!(r.replicas[0].segment.desc.name, "b:1");
    }
}

#[tokio::test(start_paused = true)]
async fn stuck_puts_are_taken_over_then_reaped() {
    let cfg = MasterConfig {
        put_start_discard_timeout: Duration::from_secs(30),
        put_start_release_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    let m = master(cfg);
    mount(&m, "c", "a:1", 1 << 20);
    let old = m.put_start("c", "k", 4096, &no_rc()).expect("put_start");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(
        m.put_start("c", "k", 4096, &no_rc()).err(),
        Some(ErrorCode::ObjectAlreadyExists)
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    let new = m
        .put_start("c", "k", 4096, &no_rc())
        .expect("stale put taken over");
    assert_ne!(new.put_id, old.put_id);
    assert_eq!(
        m.stats().allocated_bytes,
        4096,
        "the stale writer's space was freed"
    );
    assert_eq!(
        m.write_end("c", "k", old.put_id),
        Err(ErrorCode::IllegalClient)
    );
    assert_eq!(
        m.write_revoke("c", "k", old.put_id),
        Err(ErrorCode::IllegalClient)
    );
    // Nobody finishes the new one either: the reaper frees it after the release timeout.
    m.put_start("c", "other", 4096, &no_rc())
        .expect("put_start other");
    assert_eq!(m.reap_stuck_puts(), 0);
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(m.reap_stuck_puts(), 2);
    assert_eq!(m.stats().allocated_bytes, 0);
    assert_eq!(m.stats().key_count, 0);
}

#[tokio::test(start_paused = true)]
async fn upsert_replaces_on_end_and_keeps_old_value_until_then() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    let u = m
        .upsert_start("c", "k", 100, &no_rc())
        .expect("upsert of a missing key is a put");
    assert_eq!(m.write_end("c", "k", u.put_id), Ok(()));
    let u2 = m
        .upsert_start("c", "k", 300, &no_rc())
        .expect("upsert_start");
    assert_eq!(
        m.upsert_start("c", "k", 300, &no_rc()).err(),
        Some(ErrorCode::ObjectReplicaBusy),
        "one upsert at a time"
    );
    let g = m.get_replica_list("k").map(|g| g.size);
    assert_eq!(g, Ok(100), "old value readable meanwhile");
    assert_eq!(m.stats().allocated_bytes, 128 + 320);
    assert_eq!(m.write_end("c", "k", u2.put_id), Ok(()));
    let g = m.get_replica_list("k").expect("replica list");
    assert_eq!(g.size, 300);
    assert_eq!(g.replicas[0].offset, u2.replicas[0].offset);
    assert_eq!(
        m.stats().allocated_bytes,
        128 + 320,
        "old space kept while the reader's lease runs"
    );
    assert_eq!(m.run_deferred_frees(), 0);
    tokio::time::advance(m.config().default_kv_lease_ttl).await;
    assert_eq!(m.run_deferred_frees(), 1);
    assert_eq!(m.stats().allocated_bytes, 320, "old space freed");
    // A revoked upsert leaves the old value alone.
    let u3 = m
        .upsert_start("c", "k", 50, &no_rc())
        .expect("upsert_start");
    assert_eq!(m.write_revoke("c", "k", u3.put_id), Ok(()));
    assert_eq!(m.get_replica_list("k").map(|g| g.size), Ok(300));
    assert_eq!(m.stats().allocated_bytes, 320);
}

#[tokio::test(start_paused = true)]
async fn leases_block_remove_until_they_expire() {
    let cfg = MasterConfig {
        default_kv_lease_ttl: Duration::from_millis(500),
        ..Default::default()
    };
    let m = master(cfg);
    mount(&m, "c", "a:1", 1 << 20);
    put(&m, "k", 10);
    assert_eq!(m.remove("k", false), Ok(()), "no lease before any read");
    put(&m, "k", 10);
    assert_eq!(m.exist("k"), Ok(true));
    assert_eq!(m.remove("k", false), Err(ErrorCode::ObjectHasLease));
    assert!(m.query_key("k").unwrap().lease_remaining_ms > 0);
    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(m.remove("k", false), Err(ErrorCode::ObjectHasLease));
    assert_eq!(
        m.get_replica_list("k").map(|g| g.lease_ttl_ms),
        Ok(500),
        "get renews"
    );
    tokio::time::advance(Duration::from_millis(501)).await;
    assert_eq!(m.remove("k", false), Ok(()));
    assert_eq!(m.remove("k", false), Err(ErrorCode::ObjectNotFound));
    put(&m, "k", 10);
    assert_eq!(m.exist("k"), Ok(true));
    assert_eq!(m.remove("k", true), Ok(()), "force ignores the lease");
    assert_eq!(m.stats().allocated_bytes, 0);
}

#[tokio::test(start_paused = true)]
async fn bulk_removal_skips_leased_and_in_progress_objects() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    for k in ["a1", "a2", "b1", "b2"] {
        put(&m, k, 10);
    }
    assert_eq!(m.exist("a2"), Ok(true));
    let p = m.put_start("c", "a3", 10, &no_rc()).expect("put_start");
    assert_eq!(m.remove_by_regex("^a", false), Ok(1));
    assert_eq!(m.all_keys(), ["a2", "a3", "b1", "b2"]);
    assert_eq!(m.remove_all(true), 3);
    assert_eq!(m.all_keys(), ["a3"]);
    assert_eq!(m.write_end("c", "a3", p.put_id), Ok(()));
    assert_eq!(m.remove_all(false), 1);
    assert_eq!(m.stats().allocated_bytes, 0);
}

#[tokio::test(start_paused = true)]
async fn soft_pin_defaults_and_caps_and_shows_in_stats() {
    let cfg = MasterConfig {
        default_kv_soft_pin_ttl: Duration::from_secs(60),
        max_kv_soft_pin_ttl: Duration::from_secs(120),
        ..Default::default()
    };
    let m = master(cfg);
    mount(&m, "c", "a:1", 1 << 20);
    let enable = ReplicateConfig {
        soft_pin: SoftPin::Enable { ttl_ms: None },
        ..Default::default()
    };
    let r = m.put_start("c", "k", 10, &enable).expect("put_start");
    assert_eq!(
        m.stats().soft_pin_key_count,
        0,
        "pins apply when the put ends"
    );
    assert_eq!(m.write_end("c", "k", r.put_id), Ok(()));
    assert_eq!(m.stats().soft_pin_key_count, 1);
    assert!(m.query_key("k").unwrap().soft_pinned);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(m.stats().soft_pin_key_count, 0, "default ttl expired");
    assert_eq!(
        m.put_start("c", "k", 10, &no_rc()).err(),
        Some(ErrorCode::ObjectAlreadyExists)
    );
}

#[test]
fn view_ids_survive_a_float_gauge_exactly() {
    for _ in 0..64 {
        let v = master(MasterConfig::default()).view_id();
        assert!(v > 0 && v < 1 << 53, "{v}");
        assert_eq!(v as f64 as u64, v);
    }
}

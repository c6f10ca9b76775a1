use super::*;
use mooncake_common::ErrorCode;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn in_progress_objects_are_invisible_until_put_end() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    let r = m.put_start("c", "k", 1000, None);
    assert_eq!(r.code, 0);
    assert_eq!(r.replicas.len(), 1);
    assert_eq!(r.replicas[0].size, 1000);
    assert_eq!(m.exist("k"), 0);
    assert_eq!(m.get_replica_list("k").code, -703);
    assert_eq!(m.remove("k", true), -703);
    assert_eq!(
        m.put_start("c", "k", 1000, None).code,
        -705,
        "first writer wins"
    );
    assert_eq!(m.write_end("c", "k", r.put_id + 1000), -601);
    assert_eq!(m.write_end("c", "k", r.put_id), 0);
    assert_eq!(m.exist("k"), 1);
    let g = m.get_replica_list("k");
    assert_eq!((g.code, g.size, g.replicas.len()), (0, 1000, 1));
    assert_eq!(g.replicas[0].offset, r.replicas[0].offset);
    assert_eq!(m.put_start("c", "k", 5, None).code, -705);
    assert_eq!(m.stats().key_count, 1);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_are_invalid_params() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    assert_eq!(m.put_start("c", "", 10, None).code, -600);
    assert_eq!(m.put_start("c", "k", 0, None).code, -600);
    assert_eq!(m.exist(""), -600);
    assert_eq!(m.remove_by_regex("([", false), -600);
    let ttl_with_preserve = ReplicateConfig {
        soft_pin_ttl_ms: Some(5),
        ..Default::default()
    };
    assert_eq!(
        m.put_start("c", "k", 10, Some(&ttl_with_preserve)).code,
        -600
    );
    assert_eq!(m.put_start("c", "k", 2 << 20, None).code, -200, "too big");
}

#[tokio::test(start_paused = true)]
async fn revoke_frees_space_and_the_key() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    let r = m.put_start("c", "k", 1 << 20, None);
    assert_eq!(r.code, 0);
    assert_eq!(m.stats().allocated_bytes, 1 << 20);
    assert_eq!(m.write_revoke("c", "k", r.put_id), 0);
    assert_eq!(m.stats().allocated_bytes, 0);
    assert_eq!(m.stats().key_count, 0);
    assert_eq!(m.write_revoke("c", "k", r.put_id), -704);
    put(&m, "k", 1 << 20);
}

#[tokio::test(start_paused = true)]
async fn replicas_land_on_distinct_owners_best_effort() {
    let m = master(MasterConfig::default());
    for n in ["a:1", "b:1", "c:1"] {
        mount(&m, n, n, 1 << 20);
    }
    let r = m.put_start("c", "k", 100, Some(&replicas(5)));
    assert_eq!(r.code, 0);
    let mut owners: Vec<String> = r
        .replicas
        .iter()
        .map(|x| x.segment.as_ref().unwrap().owner.clone())
        .collect();
    owners.sort();
    assert_eq!(owners, ["a:1", "b:1", "c:1"]);
    let pref = ReplicateConfig {
        replica_num: 1,
        preferred_segments: vec!["b:1".into()],
        ..Default::default()
    };
    for i in 0..20 {
        let r = m.put_start("c", &format!("p{i}"), 100, Some(&pref));
        assert_eq!(r.replicas[0].segment.as_ref().unwrap().name, "b:1");
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
    let old = m.put_start("c", "k", 4096, None);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(m.put_start("c", "k", 4096, None).code, -705);
    tokio::time::advance(Duration::from_secs(2)).await;
    let new = m.put_start("c", "k", 4096, None);
    assert_eq!(new.code, 0, "stale put taken over");
    assert_ne!(new.put_id, old.put_id);
    assert_eq!(
        m.stats().allocated_bytes,
        4096,
        "the stale writer's space was freed"
    );
    assert_eq!(m.write_end("c", "k", old.put_id), -601);
    assert_eq!(m.write_revoke("c", "k", old.put_id), -601);
    // Nobody finishes the new one either: the reaper frees it after the release timeout.
    let stuck = m.put_start("c", "other", 4096, None);
    assert_eq!(stuck.code, 0);
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
    let u = m.upsert_start("c", "k", 100, None);
    assert_eq!(u.code, 0, "upsert of a missing key is a put");
    assert_eq!(m.write_end("c", "k", u.put_id), 0);
    let u2 = m.upsert_start("c", "k", 300, None);
    assert_eq!(u2.code, 0);
    assert_eq!(
        m.upsert_start("c", "k", 300, None).code,
        -714,
        "one upsert at a time"
    );
    let g = m.get_replica_list("k");
    assert_eq!((g.code, g.size), (0, 100), "old value readable meanwhile");
    assert_eq!(m.stats().allocated_bytes, 128 + 320);
    assert_eq!(m.write_end("c", "k", u2.put_id), 0);
    let g = m.get_replica_list("k");
    assert_eq!((g.code, g.size), (0, 300));
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
    let u3 = m.upsert_start("c", "k", 50, None);
    assert_eq!(m.write_revoke("c", "k", u3.put_id), 0);
    assert_eq!(m.get_replica_list("k").size, 300);
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
    assert_eq!(m.remove("k", false), 0, "no lease before any read");
    put(&m, "k", 10);
    assert_eq!(m.exist("k"), 1);
    assert_eq!(m.remove("k", false), -706);
    assert!(m.query_key("k").unwrap().lease_remaining_ms > 0);
    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(m.remove("k", false), -706);
    assert_eq!(m.get_replica_list("k").lease_ttl_ms, 500, "get renews");
    tokio::time::advance(Duration::from_millis(501)).await;
    assert_eq!(m.remove("k", false), 0);
    assert_eq!(m.remove("k", false), -704);
    put(&m, "k", 10);
    assert_eq!(m.exist("k"), 1);
    assert_eq!(m.remove("k", true), 0, "force ignores the lease");
    assert_eq!(m.stats().allocated_bytes, 0);
}

#[tokio::test(start_paused = true)]
async fn bulk_removal_skips_leased_and_in_progress_objects() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    for k in ["a1", "a2", "b1", "b2"] {
        put(&m, k, 10);
    }
    assert_eq!(m.exist("a2"), 1);
    let p = m.put_start("c", "a3", 10, None);
    assert_eq!(m.remove_by_regex("^a", false), 1);
    assert_eq!(m.all_keys(), ["a2", "a3", "b1", "b2"]);
    assert_eq!(m.remove_all(true), 3);
    assert_eq!(m.all_keys(), ["a3"]);
    assert_eq!(m.write_end("c", "a3", p.put_id), 0);
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
        soft_pin_action: mooncake_proto::SoftPinAction::SoftPinEnable as i32,
        ..Default::default()
    };
    let r = m.put_start("c", "k", 10, Some(&enable));
    assert_eq!(
        m.stats().soft_pin_key_count,
        0,
        "pins apply when the put ends"
    );
    assert_eq!(m.write_end("c", "k", r.put_id), 0);
    assert_eq!(m.stats().soft_pin_key_count, 1);
    assert!(m.query_key("k").unwrap().soft_pinned);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(m.stats().soft_pin_key_count, 0, "default ttl expired");
    assert_eq!(
        ErrorCode::from_code(m.put_start("c", "k", 10, None).code),
        ErrorCode::ObjectAlreadyExists
    );
}

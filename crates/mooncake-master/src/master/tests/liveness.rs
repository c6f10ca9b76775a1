use super::*;
use crate::liveness::Sweep;
use mooncake_common::ErrorCode;
use std::time::Duration;

fn cfg() -> MasterConfig {
    MasterConfig {
        client_ttl: Duration::from_secs(2),
        ..Default::default()
    }
}

/// Two owners; "both" has a replica on each, "only_b" only on b.
fn two_owners() -> Arc<Master> {
    let m = master(cfg());
    mount(&m, "ca", "a:1", 1 << 20);
    mount(&m, "cb", "b:1", 1 << 20);
    put_on(&m, "both", 2, &[]);
    put_on(&m, "only_b", 1, &["b:1"]);
    put_on(&m, "only_a", 1, &["a:1"]);
    m
}

fn put_on(m: &Master, key: &str, n: usize, preferred: &[&str]) {
    let rc = ReplicateConfig {
        replica_num: n,
        preferred_segments: preferred.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let r = m.put_start("x", key, 1000, &rc).expect("put_start");
    assert_eq!(r.replicas.len(), n);
    assert_eq!(m.write_end("x", key, r.put_id), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn silent_owner_loses_its_segment_and_sole_replicas() {
    let m = two_owners();
    let _w = m.spawn_workers();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!m.heartbeat("ca").remount_needed);
    }
    // cb has been silent for 3 s > 2 s.
    assert_eq!(m.all_keys(), ["both", "only_a"]);
    let g = m.get_replica_list("both").expect("replica list");
    assert_eq!(g.replicas.len(), 1);
    assert_eq!(g.replicas[0].segment.desc.name, "a:1");
    assert_eq!(m.stats().segment_count, 1);
    assert_eq!(m.stats().active_clients, 1);
    let hb = m.heartbeat("cb");
    assert!(hb.remount_needed);
    assert_eq!(hb.view_id, m.view_id());
}

#[tokio::test(start_paused = true)]
async fn any_rpc_from_a_client_counts_as_liveness() {
    let m = two_owners();
    let _w = m.spawn_workers();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!m.heartbeat("ca").remount_needed);
        let _ = m.put_start("cb", &format!("k{i}"), 10, &no_rc());
    }
    assert_eq!(m.stats().segment_count, 2);
}

#[tokio::test(start_paused = true)]
async fn master_stall_grants_a_fresh_ttl() {
    let m = two_owners();
    assert!(matches!(m.sweep_clients(), Sweep::Expired(v) if v.is_empty()));
    // The master is frozen for 10 s (> client_ttl): nobody could heartbeat.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(m.sweep_clients(), Sweep::StallGrace { .. }));
    assert_eq!(m.stats().segment_count, 2);
    assert_eq!(m.all_keys().len(), 3);
    // After the resume (sweeps every 500 ms again), clients that stay silent for a
    // whole ttl do expire.
    for _ in 0..4 {
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(!m.heartbeat("ca").remount_needed);
        assert!(matches!(m.sweep_clients(), Sweep::Expired(v) if v.is_empty()));
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(!m.heartbeat("ca").remount_needed);
    assert!(matches!(m.sweep_clients(), Sweep::Expired(v) if v.len() == 1));
    assert_eq!(m.all_keys(), ["both", "only_a"]);
}

#[tokio::test(start_paused = true)]
async fn clean_unmount_drops_at_once_and_remount_is_idempotent() {
    let m = two_owners();
    assert_eq!(
        m.unmount_segment("ca", "b:1"),
        Err(ErrorCode::IllegalClient),
        "not the owner"
    );
    assert_eq!(
        m.unmount_segment("cb", "zz"),
        Err(ErrorCode::SegmentNotFound)
    );
    assert_eq!(m.unmount_segment("cb", "b:1"), Ok(1));
    assert_eq!(m.all_keys(), ["both", "only_a"]);
    assert_eq!(
        m.stats().allocated_bytes,
        2 * 1024,
        "a holds both and only_a"
    );
    let desc = SegmentDesc {
        name: "a:1".into(),
        size: 1 << 20,
        ..Default::default()
    };
    assert_eq!(m.remount_segment("ca", desc.clone()), Ok(()));
    assert_eq!(m.mount_segment("ca", desc.clone()), Ok(()));
    assert_eq!(
        m.mount_segment("other", desc.clone()),
        Err(ErrorCode::SegmentAlreadyExists)
    );
    assert_eq!(m.all_keys().len(), 2, "idempotent remount keeps objects");
    // A restarted owner (new client id) takes its name back with remount.
    assert_eq!(m.remount_segment("ca-restarted", desc), Ok(()));
    assert!(m.all_keys().is_empty());
    assert_eq!(m.segments()[0].client_id, "ca-restarted");
}

#[tokio::test(start_paused = true)]
async fn in_flight_put_on_a_vanished_segment_fails_cleanly() {
    let m = master(cfg());
    mount(&m, "ca", "a:1", 1 << 20);
    let r = m.put_start("x", "k", 100, &no_rc()).expect("put_start");
    assert_eq!(m.unmount_segment("ca", "a:1"), Ok(0));
    assert_eq!(
        m.write_end("x", "k", r.put_id),
        Err(ErrorCode::ObjectNotFound)
    );
    assert!(m.all_keys().is_empty());
}

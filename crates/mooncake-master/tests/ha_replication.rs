//! Replication at the control-plane level, with real etcd and two real
//! `mooncake_master --enable_ha`: across kill -9 of the leader the standby continues
//! the same view (no re-mount needed), a write in flight at the kill can still be
//! ended with its put id, objects keep their offsets, a re-mount of a known segment
//! keeps its objects, and new allocations never overlap the old ones.

mod ha_support;
mod http_support;

use ha_support::*;
use mooncake_proto::master_client::MasterClient;
use mooncake_proto::{
    HeartbeatRequest, KeyRequest, MountSegmentRequest, PutEndRequest, PutStartRequest,
};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const CLIENT: &str = "store-1";
const SEGMENT: &str = "store-1:1";

async fn start(c: &mut MasterClient<Channel>, key: &str, size: u64) -> (u64, Vec<u64>) {
    let s = c
        .put_start(PutStartRequest {
            client_id: CLIENT.into(),
            key: key.into(),
            size,
            config: None,
        })
        .await
        .expect("put_start")
        .into_inner();
    assert_eq!(s.code, 0, "put_start {key}");
    (s.put_id, s.replicas.iter().map(|r| r.offset).collect())
}

async fn end(c: &mut MasterClient<Channel>, key: &str, put_id: u64) -> i32 {
    c.put_end(PutEndRequest {
        client_id: CLIENT.into(),
        key: key.into(),
        put_id,
    })
    .await
    .expect("put_end")
    .into_inner()
    .code
}

/// (code, offsets) of a key's replica list.
async fn located(c: &mut MasterClient<Channel>, key: &str) -> (i32, Vec<u64>) {
    let r = c
        .get_replica_list(KeyRequest { key: key.into() })
        .await
        .expect("get_replica_list")
        .into_inner();
    (r.code, r.replicas.iter().map(|r| r.offset).collect())
}

async fn wait_in_sync(leader: &HaMaster) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http_support::get(addr(leader.admin_port), "/workers").await;
        if r.text().contains("standbys in sync: 1") {
            return;
        }
        assert!(Instant::now() < end, "no standby in sync: {}", r.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_continues_the_view_with_in_flight_writes_and_offsets() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ms = [
        HaMaster::start(&etcd.endpoint, "repl", dir.path()),
        HaMaster::start(&etcd.endpoint, "repl", dir.path()),
    ];
    let l = wait_for_one_leader(&[&ms[0], &ms[1]], Duration::from_secs(20)).await;
    let s = 1 - l;
    wait_in_sync(&ms[l]).await;
    let mut c = ms[l].rpc().await;
    let mounted = c
        .mount_segment(MountSegmentRequest {
            client_id: CLIENT.into(),
            segment: Some(segment(SEGMENT, 64 << 20)),
        })
        .await
        .expect("mount")
        .into_inner();
    assert_eq!(mounted.code, 0);
    let mut complete = Vec::new();
    for i in 0..20u64 {
        let key = format!("done-{i}");
        let (id, offsets) = start(&mut c, &key, 10_000 + i * 999).await;
        assert_eq!(end(&mut c, &key, id).await, 0);
        complete.push((key, offsets));
    }
    let (in_flight_id, in_flight_offsets) = start(&mut c, "in-flight", 50_000).await;

    ms[l].proc.kill9();
    let end_by = Instant::now() + Duration::from_secs(30);
    while !matches!(ms[s].health().await, Some((200, _))) {
        assert!(Instant::now() < end_by, "the standby never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = ms[s].rpc().await;

    // Same view, and the store is known: its heartbeat asks for no re-mount.
    let hb = c
        .heartbeat(HeartbeatRequest {
            client_id: CLIENT.into(),
        })
        .await
        .expect("heartbeat")
        .into_inner();
    assert_eq!(hb.view_id, mounted.view_id, "the view continues");
    assert!(!hb.remount_needed, "the store is known to the new leader");

    // Every complete object where it was; the write in flight completes.
    for (key, offsets) in &complete {
        assert_eq!(located(&mut c, key).await, (0, offsets.clone()), "{key}");
    }
    assert_eq!(end(&mut c, "in-flight", in_flight_id).await, 0);
    assert_eq!(located(&mut c, "in-flight").await, (0, in_flight_offsets));

    // A re-mount of the same segment by the same client keeps its objects.
    let again = c
        .remount_segment(MountSegmentRequest {
            client_id: CLIENT.into(),
            segment: Some(segment(SEGMENT, 64 << 20)),
        })
        .await
        .expect("remount")
        .into_inner();
    assert_eq!((again.code, again.view_id), (0, mounted.view_id));
    assert_eq!(
        located(&mut c, "done-0").await.0,
        0,
        "kept across the re-mount"
    );

    // New allocations never overlap the old ranges.
    let mut taken: Vec<(u64, u64)> = Vec::new();
    for i in 0..20u64 {
        let (code, offsets) = located(&mut c, &format!("done-{i}")).await;
        assert_eq!(code, 0);
        taken.push((offsets[0], offsets[0] + 10_000 + i * 999));
    }
    let (code, offsets) = located(&mut c, "in-flight").await;
    assert_eq!(code, 0);
    taken.push((offsets[0], offsets[0] + 50_000));
    for i in 0..40u64 {
        let key = format!("new-{i}");
        let (id, offsets) = start(&mut c, &key, 20_000).await;
        assert_eq!(end(&mut c, &key, id).await, 0);
        taken.push((offsets[0], offsets[0] + 20_000));
    }
    taken.sort();
    for w in taken.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping ranges {:?} {:?}", w[0], w[1]);
    }
}

/// A graceful stop (SIGTERM) of the leader hands over at once, and the standby keeps
/// the replicated index (the stream ends with UNAVAILABLE, not as a drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_over_the_index() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ms = [
        HaMaster::start(&etcd.endpoint, "repl-stop", dir.path()),
        HaMaster::start(&etcd.endpoint, "repl-stop", dir.path()),
    ];
    let l = wait_for_one_leader(&[&ms[0], &ms[1]], Duration::from_secs(20)).await;
    let s = 1 - l;
    wait_in_sync(&ms[l]).await;
    let mut c = ms[l].rpc().await;
    for i in 0..10 {
        control_plane_put(&mut c, &format!("kept-{i}"))
            .await
            .unwrap_or_else(|e| panic!("put: {e}"));
    }
    ms[l].proc.signal("-TERM");
    let end_by = Instant::now() + Duration::from_secs(30);
    while !matches!(ms[s].health().await, Some((200, _))) {
        assert!(Instant::now() < end_by, "the standby never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = ms[s].rpc().await;
    for i in 0..10 {
        let key = format!("kept-{i}");
        assert_eq!(located(&mut c, &key).await.0, 0, "{key} after the handover");
    }
}

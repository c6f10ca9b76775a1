//! Segments and liveness through gRPC: heartbeats, expiry, unmount, remount.

mod grpc_common;

use grpc_common::{mount, segment, start};
use mooncake_master::config::MasterConfig;
use mooncake_proto::*;
use std::time::Duration;

#[tokio::test]
async fn heartbeat_tells_unknown_clients_to_remount() {
    let srv = start(MasterConfig::default()).await;
    let mut c = srv.client().await;
    let hb = |id: &str| HeartbeatRequest {
        client_id: id.into(),
    };
    let first = c.heartbeat(hb("fresh")).await.unwrap().into_inner();
    assert!(first.remount_needed);
    assert_eq!(first.view_id, srv.master.view_id());
    assert!(
        !c.heartbeat(hb("fresh"))
            .await
            .unwrap()
            .into_inner()
            .remount_needed
    );
    let err = c.heartbeat(hb("")).await.unwrap_err();
    assert_eq!(
        mooncake_proto::status::from_status(&err),
        mooncake_common::ErrorCode::InvalidParams
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_silent_store_expires_and_its_sole_replicas_go() {
    let cfg = MasterConfig {
        client_ttl: Duration::from_millis(1000),
        ..Default::default()
    };
    let srv = start(cfg).await;
    let mut c = srv.client().await;
    mount(&mut c, "alive", "a:1", 1 << 20).await;
    mount(&mut c, "silent", "b:1", 1 << 20).await;
    let put = |key: &str, n: u32, pref: &str| PutStartRequest {
        client_id: "w".into(),
        key: key.into(),
        size: 100,
        config: Some(ReplicateConfig {
            replica_num: n,
            preferred_segments: vec![pref.into()],
            ..Default::default()
        }),
    };
    for (key, n, pref) in [("both", 2, "a:1"), ("only_b", 1, "b:1")] {
        let s = c.put_start(put(key, n, pref)).await.unwrap().into_inner();
        let e = PutEndRequest {
            client_id: "w".into(),
            key: key.into(),
            put_id: s.put_id,
        };
        assert_eq!(c.put_end(e).await.unwrap().into_inner().code, 0);
    }
    // Heartbeat "alive" every 100 ms; "silent" says nothing. Poll until the silent
    // store's segment is gone (bounded, so a slow machine does not flake).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let segs = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hb = HeartbeatRequest {
            client_id: "alive".into(),
        };
        assert!(!c.heartbeat(hb).await.unwrap().into_inner().remount_needed);
        let segs = c
            .list_segments(ListSegmentsRequest {})
            .await
            .unwrap()
            .into_inner()
            .segments;
        if segs.len() < 2 || tokio::time::Instant::now() > deadline {
            break segs;
        }
    };
    assert_eq!(segs.len(), 1, "the silent store's segment was unmounted");
    assert_eq!(segs[0].client_id, "alive");
    let ex = c
        .batch_exist(BatchKeyRequest {
            keys: vec!["both".into(), "only_b".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ex.codes, vec![1, 0]);
    let hb = HeartbeatRequest {
        client_id: "silent".into(),
    };
    assert!(c.heartbeat(hb).await.unwrap().into_inner().remount_needed);
    let again = MountSegmentRequest {
        client_id: "silent".into(),
        segment: Some(segment("b:1", 1 << 20)),
    };
    assert_eq!(
        c.remount_segment(again.clone())
            .await
            .unwrap()
            .into_inner()
            .code,
        0
    );
    assert_eq!(
        c.remount_segment(again).await.unwrap().into_inner().code,
        0,
        "idempotent"
    );
    assert_eq!(srv.master.stats().segment_count, 2);
    srv.stop().await;
}

#[tokio::test]
async fn clean_unmount_and_segment_errors() {
    let srv = start(MasterConfig::default()).await;
    let mut c = srv.client().await;
    mount(&mut c, "s", "a:1", 1 << 20).await;
    let dup = MountSegmentRequest {
        client_id: "other".into(),
        segment: Some(segment("a:1", 1 << 20)),
    };
    assert_eq!(c.mount_segment(dup).await.unwrap().into_inner().code, -102);
    let none = MountSegmentRequest {
        client_id: "s".into(),
        segment: None,
    };
    assert_eq!(c.mount_segment(none).await.unwrap().into_inner().code, -600);
    let s = c
        .put_start(PutStartRequest {
            client_id: "s".into(),
            key: "k".into(),
            size: 10,
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    let e = PutEndRequest {
        client_id: "s".into(),
        key: "k".into(),
        put_id: s.put_id,
    };
    assert_eq!(c.put_end(e).await.unwrap().into_inner().code, 0);
    let um = |name: &str| UnmountSegmentRequest {
        client_id: "s".into(),
        segment_name: name.into(),
    };
    assert_eq!(
        c.unmount_segment(um("nope"))
            .await
            .unwrap()
            .into_inner()
            .code,
        -101
    );
    let r = c.unmount_segment(um("a:1")).await.unwrap().into_inner();
    assert_eq!((r.code, r.objects_dropped), (0, 1));
    assert!(srv.master.all_keys().is_empty());
    srv.stop().await;
}

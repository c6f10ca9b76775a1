//! Object lifecycle through the real gRPC service on 127.0.0.1:0.

mod grpc_common;

use grpc_common::{mount, start};
use mooncake_master::config::MasterConfig;
use mooncake_proto::*;

fn start_req(key: &str, size: u64, replicas: u32) -> PutStartRequest {
    PutStartRequest {
        client_id: "writer".into(),
        key: key.into(),
        size,
        config: Some(ReplicateConfig {
            replica_num: replicas,
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn put_get_exist_remove_round_trip() {
    let srv = start(MasterConfig::default()).await;
    let mut c = srv.client().await;
    mount(&mut c, "store-a", "a:1", 64 << 20).await;
    mount(&mut c, "store-b", "b:1", 64 << 20).await;

    let s = c
        .put_start(start_req("k", 5000, 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.code, 0);
    assert_eq!(s.replicas.len(), 2);
    let names: Vec<_> = s
        .replicas
        .iter()
        .map(|r| r.segment.clone().unwrap().name)
        .collect();
    assert_ne!(names[0], names[1], "distinct owners");
    for r in &s.replicas {
        let seg = r.segment.as_ref().unwrap();
        assert_eq!(seg.transport_endpoint, "127.0.0.1:9");
        assert_eq!(r.size, 5000);
        assert!(r.offset + r.size <= seg.size);
    }
    let ex = c
        .exist(KeyRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ex.code, 0, "in progress is invisible");
    let g = c
        .get_replica_list(KeyRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.code, -703);

    let end = PutEndRequest {
        client_id: "writer".into(),
        key: "k".into(),
        put_id: s.put_id,
    };
    assert_eq!(c.put_end(end.clone()).await.unwrap().into_inner().code, 0);
    let g = c
        .get_replica_list(KeyRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((g.code, g.size, g.replicas.len()), (0, 5000, 2));
    assert_eq!(g.lease_ttl_ms, 10_000);
    assert_eq!(
        c.put_start(start_req("k", 1, 1))
            .await
            .unwrap()
            .into_inner()
            .code,
        -705
    );

    let rm = |force| RemoveRequest {
        key: "k".into(),
        force,
    };
    assert_eq!(
        c.remove(rm(false)).await.unwrap().into_inner().code,
        -706,
        "leased"
    );
    assert_eq!(c.remove(rm(true)).await.unwrap().into_inner().code, 0);
    assert_eq!(c.remove(rm(true)).await.unwrap().into_inner().code, -704);

    let q = c
        .query_key(KeyRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.code, -704);
    let st = c.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (st.key_count, st.allocated_bytes, st.segment_count),
        (0, 0, 2)
    );
    assert_eq!(st.total_capacity_bytes, 128 << 20);
    let counters = srv.master.counters().snapshot();
    assert!(counters.contains(&("put_start", 2)));
    assert!(counters.contains(&("put_start_failures", 1)));
    srv.stop().await;
}

#[tokio::test]
async fn batches_answer_in_order_and_reject_mismatched_lengths() {
    let srv = start(MasterConfig::default()).await;
    let mut c = srv.client().await;
    mount(&mut c, "store-a", "a:1", 64 << 20).await;
    let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
    let sizes: Vec<u64> = (0..100).map(|i| 1000 + i).collect();
    let s = c
        .batch_put_start(BatchPutStartRequest {
            segment_table: false,
            client_id: "w".into(),
            keys: keys.clone(),
            sizes: sizes.clone(),
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.results.len(), 100);
    assert!(s.results.iter().all(|r| r.code == 0));
    // End the even ones, revoke the odd ones.
    let (even, odd): (Vec<usize>, Vec<usize>) = (0..100).partition(|i| i % 2 == 0);
    let pick = |ix: &[usize]| BatchPutEndRequest {
        client_id: "w".into(),
        keys: ix.iter().map(|&i| keys[i].clone()).collect(),
        put_ids: ix.iter().map(|&i| s.results[i].put_id).collect(),
    };
    let e = c.batch_put_end(pick(&even)).await.unwrap().into_inner();
    assert_eq!(e.codes, vec![0; 50]);
    let r = c.batch_put_revoke(pick(&odd)).await.unwrap().into_inner();
    assert_eq!(r.codes, vec![0; 50]);

    let mut probe = keys.clone();
    probe.push(String::new());
    let ex = c
        .batch_exist(BatchKeyRequest {
            keys: probe.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<i32> = (0..100)
        .map(|i| i32::from(i % 2 == 0))
        .chain([-600])
        .collect();
    assert_eq!(ex.codes, want);
    let g = c
        .batch_get_replica_list(BatchKeyRequest { keys: probe })
        .await
        .unwrap()
        .into_inner();
    for (i, r) in g.results.iter().enumerate().take(100) {
        if i % 2 == 0 {
            assert_eq!((r.code, r.size), (0, 1000 + i as u64));
        } else {
            assert_eq!(r.code, -704);
        }
    }
    assert_eq!(g.results[100].code, -600);

    // Mismatched lengths: every item -600.
    let bad = c
        .batch_put_start(BatchPutStartRequest {
            segment_table: false,
            client_id: "w".into(),
            keys: vec!["x".into(), "y".into()],
            sizes: vec![1],
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(bad.results.iter().all(|r| r.code == -600) && bad.results.len() == 2);
    let bad = c
        .batch_put_end(BatchPutEndRequest {
            client_id: "w".into(),
            keys: vec!["x".into()],
            put_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad.codes, vec![-600]);

    let rm = c
        .batch_remove(BatchRemoveRequest {
            keys: vec!["key-0".into(), "key-1".into()],
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rm.codes, vec![0, -704]);
    let n = c
        .remove_by_regex(RemoveByRegexRequest {
            pattern: "^key-[0-4]".into(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.count, 22, "even keys among key-2..4 and key-10..48");
    let n = c
        .remove_by_regex(RemoveByRegexRequest {
            pattern: "(".into(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.count, -600);
    let n = c
        .remove_all(RemoveAllRequest { force: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.count, 27);
    assert_eq!(srv.master.stats().allocated_bytes, 0);
    srv.stop().await;
}

#[tokio::test]
async fn upsert_and_stale_writer_through_grpc() {
    let srv = start(MasterConfig::default()).await;
    let mut c = srv.client().await;
    mount(&mut c, "store-a", "a:1", 1 << 20).await;
    let u = c
        .upsert_start(start_req("k", 100, 1))
        .await
        .unwrap()
        .into_inner();
    let end = |put_id| PutEndRequest {
        client_id: "writer".into(),
        key: "k".into(),
        put_id,
    };
    assert_eq!(
        c.upsert_end(end(u.put_id)).await.unwrap().into_inner().code,
        0
    );
    let u2 = c
        .upsert_start(start_req("k", 200, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u2.code, 0);
    assert_eq!(
        c.upsert_end(end(u.put_id)).await.unwrap().into_inner().code,
        -601
    );
    assert_eq!(
        c.upsert_end(end(u2.put_id))
            .await
            .unwrap()
            .into_inner()
            .code,
        0
    );
    let g = c
        .get_replica_list(KeyRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.size, 200);
    let u3 = c
        .upsert_start(start_req("k", 300, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        c.upsert_revoke(end(u3.put_id))
            .await
            .unwrap()
            .into_inner()
            .code,
        0
    );
    let q = c
        .query_key(KeyRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((q.code, q.size, q.complete), (0, 200, true));
    // Too large for any segment: -200 at once.
    let big = c
        .put_start(start_req("big", 2 << 20, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(big.code, -200);
    srv.stop().await;
}

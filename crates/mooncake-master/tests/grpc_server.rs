//! The gRPC server itself (hyper's HTTP/2 server, not tonic's): it answers tonic's own
//! `Channel` as before, survives peers that do not speak HTTP/2, answers a batch of
//! many keys, and a stop lets an idle client connection go instead of hanging.

mod grpc_common;

use grpc_common::start;
use mooncake_master::config::MasterConfig;
use mooncake_proto::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous: the machine running the tests may be busy compiling.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn garbage_and_http1_peers_do_not_disturb_grpc_clients() {
    let srv = start(MasterConfig::default()).await;
    let mut c = srv.client().await;
    c.get_stats(GetStatsRequest {}).await.expect("first call");

    // An HTTP/1 request and raw garbage: each connection is closed by the server.
    for junk in [
        &b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"\x00\x01\x02 not a protocol at all \xff\xfe"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server kept a junk connection open");
    }

    // The gRPC client still gets answers, including a large batch.
    let keys: Vec<String> = (0..5000).map(|i| format!("absent-{i}")).collect();
    let r = c
        .batch_exist(BatchKeyRequest { keys: keys.clone() })
        .await
        .expect("batch exist after junk peers")
        .into_inner();
    assert_eq!(r.codes.len(), keys.len());
    assert!(r.codes.iter().all(|&x| x == 0), "{:?}", &r.codes[..8]);
    srv.stop().await;
}

#[tokio::test]
async fn batches_count_every_item_and_every_failure() {
    let srv = start(MasterConfig::default()).await;
    let mut c = srv.client().await;
    grpc_common::mount(&mut c, "store-a", "a:1", 64 << 20).await;
    let r = c
        .batch_exist(BatchKeyRequest {
            keys: vec!["x".into(), String::new(), "y".into(), String::new()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.codes, vec![0, -600, 0, -600]);
    let r = c
        .batch_put_start(BatchPutStartRequest {
            segment_table: false,
            client_id: "w".into(),
            keys: vec!["a".into(), String::new(), "b".into()],
            sizes: vec![100, 100, 100],
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = r.results.iter().map(|x| x.code).collect();
    assert_eq!(codes, vec![0, -600, 0]);
    let r = c
        .batch_get_replica_list(BatchKeyRequest {
            keys: vec!["nope".into(), String::new()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.results.iter().all(|x| x.code < 0));
    let n = srv.master.counters().snapshot();
    let get = |name: &str| n.iter().find(|(k, _)| *k == name).unwrap().1;
    assert_eq!((get("exist"), get("exist_failures")), (4, 2));
    assert_eq!((get("put_start"), get("put_start_failures")), (3, 1));
    assert_eq!(
        (get("get_replica_list"), get("get_replica_list_failures")),
        (2, 2)
    );
    assert_eq!(get("failures"), 2 + 1 + 2);
    srv.stop().await;
}

#[tokio::test]
async fn stop_returns_while_a_client_holds_an_idle_connection() {
    let srv = start(MasterConfig::default()).await;
    let addr = srv.addr;
    let mut c = srv.client().await;
    c.get_stats(GetStatsRequest {}).await.expect("call");
    // `c` keeps its HTTP/2 connection open and idle across the stop.
    tokio::time::timeout(WAIT, srv.stop())
        .await
        .expect("the server did not stop while a client connection was idle");
    let after = tokio::time::timeout(WAIT, c.get_stats(GetStatsRequest {})).await;
    assert!(
        matches!(after, Ok(Err(_))),
        "a stopped server still answered: {after:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is still accepting after stop"
    );
}

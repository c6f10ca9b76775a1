//! The Rust client's API against a real master and store: put-if-absent, upsert,
//! parts, zero-copy and scatter/gather on registered memory, ranged reads, removal,
//! a client that contributes its own segment, and recovery after a master restart.

use mooncake_client::{Client, ClientConfig, ErrorCode, Health, ReplicateConfig};
use mooncake_tests::{client, store_env, value_for, Master, Store};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_operations() {
    let m = Master::start(&["--default_kv_lease_ttl=200"]);
    let _s = Store::start(&store_env(&m, "32mb"));
    let c = client(&m).await;
    let rc = ReplicateConfig::default();
    assert_eq!(c.health().await, Health::Healthy);

    // Put-if-absent: the first writer wins, the second reports success.
    c.put("k", b"first", &rc).await.unwrap();
    c.put("k", b"second", &rc).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), b"first");
    // Upsert replaces.
    c.upsert("k", b"third!", &rc).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), b"third!");
    assert_eq!(c.get_size("k").await.unwrap(), 6);
    // Parts are one object.
    c.put_parts("p", &[b"ab", b"", b"cde"], &rc).await.unwrap();
    assert_eq!(c.get("p").await.unwrap(), b"abcde");

    // Zero-copy on registered memory, batch and scatter/gather.
    let mut src = value_for("src", 3 << 20);
    let mut dst = vec![0u8; 4 << 20];
    let (sp, dp) = (src.as_mut_ptr() as usize, dst.as_mut_ptr() as usize);
    unsafe {
        c.register_buffer(sp, src.len()).unwrap();
        c.register_buffer(dp, dst.len()).unwrap();
    }
    let keys: Vec<String> = (0..3).map(|i| format!("z{i}")).collect();
    let bufs: Vec<(usize, usize)> = (0..3).map(|i| (sp + (i << 20), 1 << 20)).collect();
    for r in unsafe { c.batch_put_from(&keys, &bufs, &rc).await } {
        r.unwrap();
    }
    let outs: Vec<(usize, usize)> = (0..3).map(|i| (dp + (i << 20), 1 << 20)).collect();
    let got = unsafe { c.batch_get_into(&keys, &outs).await };
    assert!(got.iter().all(|r| *r.as_ref().unwrap() == 1 << 20));
    assert_eq!(&dst[..3 << 20], &src[..]);
    // One object from three buffers; read back into two.
    let multi = vec![vec![(sp, 1000), (sp + 5000, 2000), (sp + 9000, 24)]];
    for r in unsafe {
        c.batch_put_from_multi(&["mm".to_string()], &multi, &rc)
            .await
    } {
        r.unwrap();
    }
    dst.fill(0);
    let into = vec![vec![(dp, 10), (dp + 100, 4000)]];
    let n = unsafe { c.batch_get_into_multi(&["mm".to_string()], &into).await };
    assert_eq!(*n[0].as_ref().unwrap(), 3024, "the object's real size");
    let mut expect = src[..1000].to_vec();
    expect.extend_from_slice(&src[5000..7000]);
    expect.extend_from_slice(&src[9000..9024]);
    let mut seen = dst[..10].to_vec();
    seen.extend_from_slice(&dst[100..100 + 3014]);
    assert_eq!(seen, expect);
    // Ranged read.
    let n = unsafe { c.get_range_into("z1", 1000, dp, 500).await }.unwrap();
    assert_eq!(n, 500);
    assert_eq!(&dst[..500], &src[(1 << 20) + 1000..(1 << 20) + 1500]);
    let e = unsafe { c.get_range_into("z1", (1 << 20) - 10, dp, 500).await }.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);

    // Existence and removal.
    let ex = c
        .batch_exist(&["k".into(), "nope".into(), String::new()])
        .await;
    assert!(*ex[0].as_ref().unwrap());
    assert!(!*ex[1].as_ref().unwrap());
    assert!(ex[2].is_err());
    let e = c.remove("k", false).await.unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::ObjectHasLease,
        "a fresh get holds a lease"
    );
    c.remove("k", true).await.unwrap();
    assert!(!c.exist("k").await.unwrap());
    assert_eq!(
        c.get("k").await.unwrap_err().code,
        ErrorCode::ObjectNotFound
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // leases run out
    assert_eq!(c.remove_by_regex("^z[01]$", false).await.unwrap(), 2);
    assert_eq!(
        c.remove_by_regex("(", false).await.unwrap_err().code,
        ErrorCode::InvalidParams
    );
    assert!(c.remove_all(true).await.unwrap() >= 3);
    assert_eq!(c.stats().await.unwrap().key_count, 0);

    c.unregister_buffer(sp).unwrap();
    c.unregister_buffer(dp).unwrap();
    c.close().await.unwrap();
    c.close().await.unwrap();
    assert_eq!(c.health().await, Health::NotSetUp);
    assert!(c.get("p").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_segment_serves_others_until_close() {
    let m = Master::start(&[]);
    let node = mooncake_common::config::NodeConfig {
        master_server_address: m.addr(),
        metadata_server: m.metadata_url(),
        global_segment_size: 8 << 20,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        ..Default::default()
    };
    let owner = Client::connect(ClientConfig::new(node)).await.unwrap();
    assert!(
        owner.hostname().starts_with("127.0.0.1:"),
        "{}",
        owner.hostname()
    );
    assert!(owner.is_mounted());
    assert_eq!(
        m.wait_metric(
            "master_total_capacity_bytes",
            (8 << 20) as f64,
            Duration::from_secs(3)
        ),
        Some((8 << 20) as f64)
    );
    let reader = client(&m).await;
    let v = value_for("own", 100_000);
    owner
        .put("own", &v, &ReplicateConfig::default())
        .await
        .unwrap();
    assert_eq!(reader.get("own").await.unwrap(), v);
    owner.close().await.unwrap();
    assert_eq!(
        m.wait_metric("master_total_capacity_bytes", 0.0, Duration::from_secs(2)),
        Some(0.0)
    );
    assert!(
        reader.get("own").await.is_err(),
        "its objects went with the segment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_down_fails_fast_and_the_client_reconnects() {
    let mut m = Master::start(&[]);
    let c = client(&m).await;
    c.exist("x").await.unwrap();
    m.proc.kill9();
    let t0 = std::time::Instant::now();
    let e = c.exist("x").await.unwrap_err();
    assert!(
        matches!(e.code, ErrorCode::RpcFail | ErrorCode::RpcTimeout),
        "{e}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "bounded: {:?}",
        t0.elapsed()
    );
    assert_eq!(c.health().await, Health::MasterUnreachable);
    assert_eq!(c.get("x").await.unwrap_err().code, ErrorCode::RpcFail);
    // A master back on the same port: the same client works again.
    let again = Master::start_on(m.rpc_port, &[]);
    let mut ok = false;
    for _ in 0..50 {
        if c.exist("x").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "client reconnected by itself");
    assert_eq!(c.health().await, Health::Healthy);
    drop(again);
}

/// A pure client (no segment) against a master nobody serves: connect fails with
/// RPC_FAIL instead of succeeding lazily; a live master is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pure_client_connect_needs_a_live_master() {
    let node = |addr: String| mooncake_common::config::NodeConfig {
        master_server_address: addr,
        metadata_server: "P2PHANDSHAKE".into(),
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        ..Default::default()
    };
    let dead = format!("127.0.0.1:{}", mooncake_tests::free_port());
    let Err(e) = Client::connect(ClientConfig::new(node(dead))).await else {
        panic!("connect to a dead master succeeded");
    };
    assert_eq!(e.code, ErrorCode::RpcFail, "{e}");
    assert_eq!(e.code as i32, -900);

    let m = Master::start(&[]);
    let c = Client::connect(ClientConfig::new(node(m.addr())))
        .await
        .expect("a live master is accepted");
    assert_eq!(c.health().await, Health::Healthy);
    c.close().await.unwrap();
}

//! HA end to end with real etcd, two `mooncake_master --enable_ha`, a `mooncake_store`
//! and a client, both given `MOONCAKE_MASTER=etcd://...`: they find the leader; after
//! kill -9 of the leader they follow the standby that takes over (the store re-mounts
//! its segment there) and puts/gets work again, and what was written before the kill
//! still reads back (the standby followed the leader's replication log, docs/ha.md).

use mooncake_client::{Client, ClientConfig, ReplicateConfig};
use mooncake_tests::etcd::{etcd_available, wait_standby_in_sync, EtcdCluster};
use mooncake_tests::{free_port, http, value_for, Master, Store};
use std::time::{Duration, Instant};

fn health(m: &Master) -> Option<u16> {
    http("GET", m.metrics_port, "/health", b"")
        .ok()
        .map(|r| r.0)
}

/// Polls until exactly one of `ms` answers /health 200; returns its index.
fn wait_leader(ms: &[&Master], within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let ok: Vec<usize> = (0..ms.len())
            .filter(|&i| health(ms[i]) == Some(200))
            .collect();
        assert!(ok.len() <= 1, "two leaders at once");
        if let [i] = ok[..] {
            return i;
        }
        assert!(Instant::now() < end, "no leader within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn store_env(etcd: &str) -> Vec<(String, String)> {
    [
        ("MOONCAKE_MASTER", format!("etcd://{etcd}")),
        ("MOONCAKE_TE_META_DATA_SERVER", "P2PHANDSHAKE".to_string()),
        ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "16mb".to_string()),
        ("MOONCAKE_LOCAL_BUFFER_SIZE", "4194304".to_string()),
        ("MOONCAKE_PROTOCOL", "tcp".to_string()),
        ("MOONCAKE_DEVICE", String::new()),
        ("MOONCAKE_LOCAL_HOSTNAME", "127.0.0.1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn put_until_ok(c: &Client, key: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    let v = value_for(key, 10_000);
    loop {
        match c.put(key, &v, &ReplicateConfig::default()).await {
            Ok(()) => return t0.elapsed(),
            Err(e) => assert!(t0.elapsed() < within, "put {key} never succeeded: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_client_follow_the_leader_through_a_kill_9() {
    if !etcd_available() {
        return;
    }
    let etcd = EtcdCluster::start(1, "ha-store");
    let ep = etcd.endpoints();
    let flags = [
        "--enable_ha".to_string(),
        format!("--etcd_endpoints={ep}"),
        "--enable_metric_reporting=false".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut ms = vec![
        Master::start_on(free_port(), &flags),
        Master::start_on(free_port(), &flags),
    ];
    let l = wait_leader(&[&ms[0], &ms[1]], Duration::from_secs(20));
    // Until the standby holds the leader's snapshot, a put is acknowledged by the
    // leader alone and a kill may lose it (docs/ha.md).
    assert!(
        wait_standby_in_sync(&ms[l], Duration::from_secs(30)),
        "the standby never got in sync"
    );
    let _store = Store::start(&store_env(&ep));

    let node = mooncake_common::config::NodeConfig {
        master_server_address: format!("etcd://{ep},"),
        metadata_server: "P2PHANDSHAKE".into(),
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        protocol: mooncake_common::config::Protocol::Tcp,
        ..Default::default()
    };
    let c = Client::connect(ClientConfig::new(node))
        .await
        .expect("client connects through etcd");
    put_until_ok(&c, "before", Duration::from_secs(20)).await;
    assert_eq!(c.get("before").await.unwrap(), value_for("before", 10_000));

    ms[l].proc.kill9();
    let took = put_until_ok(&c, "after", Duration::from_secs(30)).await;
    eprintln!("kill -9 of the leader -> first successful client put: {took:?}");
    assert_eq!(c.get("after").await.unwrap(), value_for("after", 10_000));
    assert_eq!(c.get("before").await.unwrap(), value_for("before", 10_000));
    assert_eq!(health(&ms[1 - l]), Some(200));
    let _ = c.close().await;
    ms.clear();
    drop(etcd);
}

//! HA end to end with real etcd, two `mooncake_master --enable_ha`, a `mooncake_store`
//! and a client, both given `MOONCAKE_MASTER=etcd://...`: they find the leader; after
//! kill -9 of the leader they follow the standby that takes over (the store re-mounts
//! its segment there) and puts/gets work again. The new leader starts with an empty
//! index today (docs/ha.md), so only objects written after the failover are checked.

use mooncake_client::{Client, ClientConfig, ReplicateConfig};
use mooncake_tests::{free_port, http, value_for, wait_port, Master, Proc, Store};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

fn start_etcd(dir: &Path) -> (Proc, String) {
    let (p, q) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{p}");
    let peer = format!("http://127.0.0.1:{q}");
    let child = Command::new(ETCD)
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd");
    assert!(wait_port(p, Duration::from_secs(20)), "etcd never listened");
    let name = "etcd".to_string();
    (Proc { child, name }, format!("127.0.0.1:{p}"))
}

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
    if !Path::new(ETCD).exists() {
        eprintln!("SKIPPED: {ETCD} not found (apt-get install etcd-server)");
        return;
    }
    let dir = tempfile_dir();
    let (_etcd, ep) = start_etcd(&dir);
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
    assert_eq!(health(&ms[1 - l]), Some(200));
    let _ = c.close().await;
    ms.clear();
    drop(_etcd);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mc-ha-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

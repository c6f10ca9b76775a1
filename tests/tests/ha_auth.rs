//! HA with authentication: two `mooncake_master --enable_ha --auth_token_file` over a
//! real etcd. The standby proves the `cluster` token to its leader before following
//! (a leader serves its replication stream to proven peers only), so an object a
//! tenant wrote before a kill -9 of the leader is still there, the tenant's own, after
//! the standby takes over.

use mooncake_client::{Client, ClientConfig, ReplicateConfig};
use mooncake_common::auth::Credential;
use mooncake_tests::etcd::{etcd_available, ha_store_env, EtcdCluster};
use mooncake_tests::{free_port, value_for, Master, Store};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CLUSTER: &str = "tok-cluster-ha-0001";
const ALPHA: &str = "tok-alpha-ha-0002";

/// GET `path` on the admin port with the cluster token; the status and body.
fn admin_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLUSTER}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out))
}

fn wait_leader(ms: &[&Master], within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let ok: Vec<usize> = (0..ms.len())
            .filter(|&i| admin_get(ms[i].metrics_port, "/health").map(|r| r.0) == Some(200))
            .collect();
        if let [i] = ok[..] {
            return i;
        }
        assert!(Instant::now() < end, "no single leader within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn put_until_ok(c: &Client, key: &str, within: Duration) {
    let t0 = Instant::now();
    let v = value_for(key, 10_000);
    loop {
        match c.put(key, &v, &ReplicateConfig::default()).await {
            Ok(()) => return,
            Err(e) => assert!(t0.elapsed() < within, "put {key} never succeeded: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_proves_its_token_to_follow_and_keeps_a_tenants_objects() {
    if !etcd_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mc-ha-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("cluster:{CLUSTER}\nalpha:{ALPHA}\n")).unwrap();
    let etcd = EtcdCluster::start(1, "ha-auth");
    let ep = etcd.endpoints();
    let flags = [
        "--enable_ha".to_string(),
        format!("--etcd_endpoints={ep}"),
        "--enable_metric_reporting=false".to_string(),
        format!("--auth_token_file={}", tokens.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut ms = vec![
        Master::start_on(free_port(), &flags),
        Master::start_on(free_port(), &flags),
    ];
    let l = wait_leader(&[&ms[0], &ms[1]], Duration::from_secs(20));
    // The standby is in sync only if the leader accepted its proof.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = admin_get(ms[l].metrics_port, "/workers");
        if workers
            .as_ref()
            .is_some_and(|w| w.1.contains("standbys in sync: 1"))
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "the standby never got in sync: {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut env = ha_store_env(&ep, "16mb");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), CLUSTER.into()));
    let _store = Store::start(&env);

    let node = mooncake_common::config::NodeConfig {
        master_server_address: format!("etcd://{ep},"),
        metadata_server: "P2PHANDSHAKE".into(),
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        protocol: mooncake_common::config::Protocol::Tcp,
        ..Default::default()
    };
    let mut cfg = ClientConfig::new(node);
    cfg.tuning.credential = Some(Credential::from_token(ALPHA, "test").unwrap());
    let c = Client::connect(cfg)
        .await
        .expect("alpha connects through etcd");
    put_until_ok(&c, "before", Duration::from_secs(20)).await;

    ms[l].proc.kill9();
    put_until_ok(&c, "after", Duration::from_secs(30)).await;
    assert_eq!(c.get("before").await.unwrap(), value_for("before", 10_000));
    assert_eq!(c.get("after").await.unwrap(), value_for("after", 10_000));
    let _ = c.close().await;
    ms.clear();
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Tenant quotas under HA: two `mooncake_master --enable_ha` over a real etcd. A
//! quota set on the leader, and the removal of another, reach the standby through the
//! replication stream; after a kill -9 of the leader the new leader answers with the
//! same quotas, without anyone setting them again.

use mooncake_tests::etcd::{etcd_available, EtcdCluster};
use mooncake_tests::{free_port, Master};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CLUSTER: &str = "tok-cluster-haq-0001";
const MIB: u64 = 1 << 20;

/// `method path` on the admin port with the cluster token; the status and body.
fn admin(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLUSTER}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    Some((code, body))
}

fn wait_leader(ms: &[&Master], within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let ok: Vec<usize> = (0..ms.len())
            .filter(|&i| admin(ms[i].metrics_port, "GET", "/health", "").map(|r| r.0) == Some(200))
            .collect();
        if let [i] = ok[..] {
            return i;
        }
        assert!(Instant::now() < end, "no single leader within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn quota_of(port: u16, tenant: &str) -> serde_json::Value {
    let (status, body) = admin(
        port,
        "GET",
        &format!("/api/v1/tenant_quotas?tenant_id={tenant}"),
        "",
    )
    .expect("the admin port answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"].clone()
}

#[test]
fn quotas_set_on_the_leader_survive_a_failover() {
    if !etcd_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mc-ha-quotas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("cluster:{CLUSTER}\nbeta:tok-beta-haq-0002\n"),
    )
    .unwrap();
    let etcd = EtcdCluster::start(1, "ha-quotas");
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
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = admin(ms[l].metrics_port, "GET", "/workers", "");
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
    let leader = ms[l].metrics_port;
    let set = |tenant: &str, bytes: u64| {
        let (status, body) = admin(
            leader,
            "PUT",
            &format!("/api/v1/tenant_quotas?tenant_id={tenant}"),
            &format!(r#"{{"requested_quota_bytes": {bytes}}}"#),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    };
    set("beta", 3 * MIB);
    set("gamma", 5 * MIB);
    set("beta", 2 * MIB);
    let (status, body) = admin(
        leader,
        "DELETE",
        "/api/v1/tenant_quotas?tenant_id=gamma",
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    ms[l].proc.kill9();
    let n = 1 - l;
    let end = Instant::now() + Duration::from_secs(30);
    while admin(ms[n].metrics_port, "GET", "/health", "").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < end, "the standby never took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let beta = quota_of(ms[n].metrics_port, "beta");
    assert_eq!(beta["requested_quota_bytes"], 2 * MIB, "{beta}");
    assert_eq!(beta["has_explicit_policy"], true, "{beta}");
    let gamma = quota_of(ms[n].metrics_port, "gamma");
    assert_eq!(
        gamma["has_explicit_policy"], false,
        "lifted before the failover: {gamma}"
    );
    ms.clear();
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}

//! HA over TLS: two `mooncake_master --enable_ha --tls_cert_file ...` over a real
//! etcd. The standby reaches its leader's rpc port over TLS (trusting the group's
//! certificate) and gets in sync; before, it dialled plaintext and never followed.
//! The admin ports are HTTPS, read with `curl --cacert`.

use mooncake_tests::etcd::{etcd_available, EtcdCluster};
use mooncake_tests::{free_port, Master};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `curl --cacert cert https://127.0.0.1:port/path`: the status and body.
fn https_get(cert: &Path, port: u16, path: &str) -> Option<(u16, String)> {
    let o = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", "--cacert"])
        .arg(cert)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

#[test]
fn a_standby_follows_its_leader_over_tls() {
    if !etcd_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mc-ha-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let o = Command::new("openssl")
        .current_dir(&dir)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-keyout", "srv.key", "-out", "srv.pem", "-days", "2"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cert = dir.join("srv.pem");
    let key = dir.join("srv.key");

    let etcd = EtcdCluster::start(1, "ha-tls");
    let ep = etcd.endpoints();
    let flags = [
        "--enable_ha".to_string(),
        format!("--etcd_endpoints={ep}"),
        "--enable_metric_reporting=false".to_string(),
        format!("--tls_cert_file={}", cert.display()),
        format!("--tls_key_file={}", key.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ms = [
        Master::start_on(free_port(), &flags),
        Master::start_on(free_port(), &flags),
    ];
    let end = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let ok: Vec<usize> = (0..2)
            .filter(|&i| https_get(&cert, ms[i].metrics_port, "/health").map(|r| r.0) == Some(200))
            .collect();
        if let [i] = ok[..] {
            break i;
        }
        assert!(Instant::now() < end, "no single leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    // In sync only if the standby's TLS connection to the leader's rpc port works.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = https_get(&cert, ms[leader].metrics_port, "/workers");
        if workers
            .as_ref()
            .is_some_and(|w| w.1.contains("standbys in sync: 1"))
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "the standby never got in sync over TLS: {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(ms);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}

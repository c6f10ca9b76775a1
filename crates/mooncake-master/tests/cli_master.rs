//! The real `mooncake_master` binary as a process: the seed manifest's command line on
//! free loopback ports, the log line, signals, and flag errors.

mod http_support;

use http_support::{get, request};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mooncake_master");

/// A port that was free a moment ago.
fn free_port() -> u16 {
    mooncake_common::ports::free_loopback_port().expect("a free loopback port")
}

/// A running master whose stderr lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mooncake_master");
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`.
    fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {needle:?} within {within:?}; saw {:#?}",
            self.seen
        );
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the exit status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < end, "did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `rpc=127.0.0.1:N` style fields of the start-up line.
fn field(line: &str, name: &str) -> SocketAddr {
    let rest = &line[line.find(&format!("{name}=")).expect(name) + name.len() + 1..];
    let rest = rest.trim_start_matches("http://");
    let end = rest.find(['/', ' ', ',']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{name} in {line}: {e}"))
}

#[tokio::test]
async fn seed_manifest_flags_serve_every_port_and_log_the_summary() {
    let (rpc, meta, met) = (free_port(), free_port(), free_port());
    let (rpc_s, meta_s, met_s) = (rpc.to_string(), meta.to_string(), met.to_string());
    let mut p = Proc::start(&[
        "--rpc_address",
        "127.0.0.1",
        "--rpc_port",
        &rpc_s,
        "--http_metadata_server_host",
        "127.0.0.1",
        "--http_metadata_server_port",
        &meta_s,
        "--metrics_port",
        &met_s,
        "--metrics_host",
        "127.0.0.1",
        "--default_kv_lease_ttl=500ms",
    ]);
    p.wait_for("mooncake_master started", Duration::from_secs(20));
    let line = p.wait_for("Storage: ", Duration::from_secs(13));
    assert!(
        line.contains("Storage: 0.00 B / 0.00 B (0.00%) | Keys: 0 (soft-pinned: 0)"),
        "{line}"
    );

    // gRPC answers.
    let mut c =
        mooncake_proto::master_client::MasterClient::connect(format!("http://{}", addr(rpc)))
            .await
            .expect("gRPC port");
    let stats = c
        .get_stats(mooncake_proto::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.key_count, 0);

    // The metadata server runs although only its address was given.
    let u = "/metadata?key=mooncake/ram/x";
    assert_eq!(
        request(addr(meta), "PUT", u, br#"{"a":1}"#).await.status,
        200
    );
    assert_eq!(get(addr(meta), u).await.text(), r#"{"a":1}"#);
    assert_eq!(get(addr(meta), "/health").await.text(), "OK");

    // The admin port.
    let h = get(addr(met), "/health").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["leader"], format!("127.0.0.1:{rpc}"));
    assert!(get(addr(met), "/metrics")
        .await
        .text()
        .contains("\nmaster_key_count 0"));
    assert_eq!(get(addr(met), "/query_key?key=nope").await.status, 404);

    p.signal("-TERM");
    let status = p.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    p.wait_for("stopped", Duration::from_secs(2));
}

#[tokio::test]
async fn port_zero_and_sigint_and_disabled_extras() {
    let mut p = Proc::start(&[
        "--rpc_address=127.0.0.1",
        "--port=0",
        "--metrics_host=127.0.0.1",
        "--metrics_port=0",
        "--enable_metric_reporting=false",
    ]);
    let line = p.wait_for("mooncake_master started", Duration::from_secs(20));
    assert!(line.contains("metadata=disabled"), "{line}");
    let admin = field(&line, "admin");
    assert_eq!(get(admin, "/health").await.status, 200);
    p.signal("-INT");
    assert!(p.wait_exit(Duration::from_secs(10)).success());
    assert!(
        !p.seen.iter().any(|l| l.contains("Storage: ")),
        "reporting disabled"
    );
}

#[test]
fn bad_values_and_unknown_flags_exit_non_zero_naming_the_flag() {
    for (args, name) in [
        (&["--rpc_port=notanumber"][..], "rpc_port"),
        (&["--metrics_port", "99999"][..], "metrics_port"),
        (&["--enable_ha=perhaps"][..], "enable_ha"),
        (&["--default_kv_lease_ttl=soon"][..], "default_kv_lease_ttl"),
        (&["--no_such_flag=1"][..], "no_such_flag"),
        (
            &["--config_path=/nonexistent/master.yaml"][..],
            "config_path",
        ),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(name), "{args:?}: {err}");
    }
}

#[test]
fn help_lists_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for f in [
        "rpc_address",
        "rpc_port",
        "metrics_port",
        "metrics_host",
        "enable_metric_reporting",
        "enable_http_metadata_server",
        "http_metadata_server_host",
        "http_metadata_server_port",
        "default_kv_lease_ttl",
        "default_kv_soft_pin_ttl",
        "max_kv_soft_pin_ttl",
        "allow_evict_soft_pinned_objects",
        "eviction_high_watermark_ratio",
        "eviction_ratio",
        "client_ttl",
        "put_start_discard_timeout_sec",
        "put_start_release_timeout_sec",
        "allocation_strategy",
        "enable_ha",
        "etcd_endpoints",
        "cluster_id",
        "config_path",
    ] {
        assert!(
            text.contains(&format!("--{f}")),
            "--{f} missing from --help"
        );
    }
    assert!(text.contains("(default: \"50051\")"));
}

#[test]
fn a_taken_port_exits_1_naming_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN)
        .args([
            "--rpc_address=127.0.0.1",
            "--rpc_port",
            &port,
            "--metrics_port=0",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rpc_port") && err.contains(&port), "{err}");
}

#[tokio::test]
async fn config_file_sets_ports_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.yaml");
    std::fs::write(
        &path,
        "rpc_address: 127.0.0.1\nrpc_port: 0\nmetrics_host: 127.0.0.1\nmetrics_port: 0\n\
         enable_http_metadata_server: true\nhttp_metadata_server_host: 127.0.0.1\n\
         http_metadata_server_port: 0\nenable_metric_reporting: true\n",
    )
    .unwrap();
    let mut p = Proc::start(&[
        "--config_path",
        path.to_str().unwrap(),
        "--enable_metric_reporting=false",
    ]);
    let line = p.wait_for("mooncake_master started", Duration::from_secs(20));
    let meta = field(&line, "metadata");
    assert_eq!(get(meta, "/health").await.text(), "OK");
    p.signal("-TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).success());
    assert!(
        !p.seen.iter().any(|l| l.contains("Storage: ")),
        "the flag overrode the file"
    );
}

//! Real etcd and real `mooncake_master --enable_ha` processes on loopback ports for the
//! HA tests. Every wait polls with a generous deadline; nothing asserts on timing.

#![allow(dead_code)]

use mooncake_proto::master_client::MasterClient;
use mooncake_proto::status::from_status;
use mooncake_proto::{
    MountSegmentRequest, PutEndRequest, PutStartRequest, ReplicateConfig, SegmentDesc,
};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// Where the etcd-server package puts etcd, when `etcd` is not on PATH.
pub const ETCD: &str = "/usr/bin/etcd";
const BIN: &str = env!("CARGO_BIN_EXE_mooncake_master");

/// The etcd binary: `etcd` on PATH (what scripts/install-deps.sh checks for), else
/// [`ETCD`].
pub fn etcd_bin() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("etcd"))
        .chain([PathBuf::from(ETCD)])
        .find(|p| p.is_file())
}

/// Whether the HA tests can run. etcd belongs to the test environment (the CI script
/// installs it through scripts/install-deps.sh), so without it a test fails rather
/// than pass having tested nothing. Outside CI (`CI` unset),
/// `MOONCAKE_SKIP_ETCD_TESTS=1` skips them instead.
pub fn etcd_available() -> bool {
    if etcd_bin().is_some() {
        return true;
    }
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    if !in_ci && std::env::var("MOONCAKE_SKIP_ETCD_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: etcd not found (MOONCAKE_SKIP_ETCD_TESTS=1)");
        return false;
    }
    panic!(
        "etcd not found on PATH nor at {ETCD}: the HA tests need it (scripts/install-deps.sh installs etcd-server{})",
        if in_ci {
            ""
        } else {
            "; MOONCAKE_SKIP_ETCD_TESTS=1 skips these tests outside CI"
        }
    );
}

pub fn free_port() -> u16 {
    mooncake_common::ports::free_loopback_port().expect("a free loopback port")
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A child process killed on drop, its output in a file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(bin: &str, args: &[String], log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        Proc { child, log }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A single-member etcd on loopback ports with a temporary data dir.
pub struct Etcd {
    pub endpoint: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd on fresh loopback ports. A port from [`free_port`] can be taken by
    /// another process (a test running beside this one) before etcd binds it, so a
    /// start whose etcd exits or never answers is retried on new ports (three tries).
    pub async fn start() -> Etcd {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(etcd) => return etcd,
                Err(log) => last = log,
            }
        }
        panic!("etcd did not start: {last}");
    }

    async fn try_start() -> Result<Etcd, String> {
        let dir = tempfile::tempdir().unwrap();
        // Both listeners held at once: two different ports.
        let (p, q) = {
            let a = TcpListener::bind("127.0.0.1:0").unwrap();
            let b = TcpListener::bind("127.0.0.1:0").unwrap();
            (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            )
        };
        let client = format!("http://127.0.0.1:{p}");
        let peer = format!("http://127.0.0.1:{q}");
        let args: Vec<String> = [
            "--data-dir",
            &dir.path().join("data").to_string_lossy(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("default={peer}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let bin = etcd_bin().expect("etcd installed (etcd_available)");
        let mut proc = Proc::spawn(&bin.to_string_lossy(), &args, dir.path().join("etcd.log"));
        let endpoint = format!("127.0.0.1:{p}");
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = async {
                let mut c = etcd_client::Client::connect([endpoint.as_str()], None).await?;
                c.get("probe", None).await
            };
            if tokio::time::timeout(Duration::from_secs(2), ok)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                break;
            }
            let exited = proc.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() >= end {
                return Err(proc.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Etcd {
            endpoint,
            _proc: proc,
            _dir: dir,
        })
    }
}

/// One `mooncake_master --enable_ha` process.
pub struct HaMaster {
    pub rpc_port: u16,
    pub admin_port: u16,
    pub proc: Proc,
    endpoints: String,
    cluster: String,
    dir: PathBuf,
}

impl HaMaster {
    pub fn start(endpoints: &str, cluster: &str, dir: &Path) -> HaMaster {
        Self::start_on(endpoints, cluster, dir, free_port(), free_port())
    }

    fn start_on(endpoints: &str, cluster: &str, dir: &Path, rpc: u16, admin: u16) -> HaMaster {
        let args: Vec<String> = vec![
            "--enable_ha".into(),
            format!("--etcd_endpoints={endpoints}"),
            format!("--cluster_id={cluster}"),
            "--rpc_address=127.0.0.1".into(),
            format!("--rpc_port={rpc}"),
            "--metrics_host=127.0.0.1".into(),
            format!("--metrics_port={admin}"),
            "--enable_metric_reporting=false".into(),
        ];
        let log = dir.join(format!("master-{rpc}.log"));
        HaMaster {
            rpc_port: rpc,
            admin_port: admin,
            proc: Proc::spawn(BIN, &args, log),
            endpoints: endpoints.into(),
            cluster: cluster.into(),
            dir: dir.into(),
        }
    }

    /// Starts the same master again (same ports) after it was killed.
    pub fn restart(&mut self) {
        self.proc.kill9();
        *self = Self::start_on(
            &self.endpoints.clone(),
            &self.cluster.clone(),
            &self.dir.clone(),
            self.rpc_port,
            self.admin_port,
        );
    }

    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    /// `/health`: (status, body), or None when the admin port does not answer in 1 s.
    pub async fn health(&self) -> Option<(u16, serde_json::Value)> {
        let get = super::http_support::get(addr(self.admin_port), "/health");
        let fut = async {
            // Connection refused panics inside the helper; probe first.
            tokio::net::TcpStream::connect(addr(self.admin_port))
                .await
                .ok()?;
            Some(get.await)
        };
        let r = tokio::time::timeout(Duration::from_secs(1), fut)
            .await
            .ok()??;
        let body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        Some((r.status, body))
    }

    pub async fn rpc(&self) -> MasterClient<Channel> {
        let ch = Endpoint::from_shared(format!("http://{}", self.rpc_addr()))
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .connect_lazy();
        MasterClient::new(ch)
    }
}

/// Polls until exactly one master answers /health 200 and every other one 503 naming
/// a leader (a standby that has not read the leader key yet names none); returns the
/// leader's index.
pub async fn wait_for_one_leader(ms: &[&HaMaster], within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let mut leaders = Vec::new();
        let mut standbys = 0;
        for (i, m) in ms.iter().enumerate() {
            match m.health().await {
                Some((200, _)) => leaders.push(i),
                Some((503, b)) if b["leader"].as_str().is_some_and(|l| !l.is_empty()) => {
                    standbys += 1
                }
                _ => {}
            }
        }
        if leaders.len() == 1 && standbys == ms.len() - 1 {
            return leaders[0];
        }
        assert!(leaders.len() <= 1, "two masters answer /health 200 at once");
        assert!(Instant::now() < end, "no single leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn segment(name: &str, size: u64) -> SegmentDesc {
    SegmentDesc {
        name: name.into(),
        owner: name.into(),
        base: 0x7f00_0000_0000,
        size,
        protocol: "tcp".into(),
        transport_endpoint: "127.0.0.1:9".into(),
        ..Default::default()
    }
}

/// Mount + PutStart + PutEnd on `c`; the contract code of the first step that fails
/// (a gRPC-level refusal is mapped through `mc-error-code`).
pub async fn control_plane_put(c: &mut MasterClient<Channel>, key: &str) -> Result<(), i32> {
    let code = |s: tonic::Status| from_status(&s).code();
    let r = c
        .mount_segment(MountSegmentRequest {
            client_id: "ha-store".into(),
            segment: Some(segment("ha-store:1", 64 << 20)),
        })
        .await
        .map_err(code)?
        .into_inner();
    // A repeated mount answers SEGMENT_ALREADY_EXISTS: fine.
    if r.code != 0 && r.code != -102 {
        return Err(r.code);
    }
    put_only(c, key).await
}

/// PutStart + PutEnd, without mounting first.
pub async fn put_only(c: &mut MasterClient<Channel>, key: &str) -> Result<(), i32> {
    let code = |s: tonic::Status| from_status(&s).code();
    let s = c
        .put_start(PutStartRequest {
            client_id: "ha-writer".into(),
            key: key.into(),
            size: 4096,
            config: Some(ReplicateConfig {
                replica_num: 1,
                ..Default::default()
            }),
        })
        .await
        .map_err(code)?
        .into_inner();
    if s.code != 0 {
        return Err(s.code);
    }
    let e = c
        .put_end(PutEndRequest {
            client_id: "ha-writer".into(),
            key: key.into(),
            put_id: s.put_id,
        })
        .await
        .map_err(code)?
        .into_inner();
    if e.code != 0 {
        return Err(e.code);
    }
    Ok(())
}

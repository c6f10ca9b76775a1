//! An HA pair (admin ports open, or guarded by a token or HTTPS): one etcd member and
//! two `mooncake_master --enable_ha` given the same extra flags, the leader found and
//! its standby in sync before the test goes on. The tests of HA with authentication,
//! TLS and tenant quotas start from here.

use crate::etcd::{start_ha_master, wait_one_leader_by, EtcdCluster};
use crate::{free_port, http_bearer, Master};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// How a test reaches the masters' admin ports.
#[derive(Debug, Clone)]
pub enum Admin {
    /// Plain HTTP, no authentication.
    Open,
    /// Plain HTTP with `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTPS (`curl --cacert`) trusting this certificate.
    Tls(PathBuf),
}

impl Admin {
    /// `method path` with `body` on admin port `port`: the status and body, None when
    /// the port does not answer.
    pub fn request(
        &self,
        port: u16,
        method: &str,
        path: &str,
        body: &str,
    ) -> Option<(u16, String)> {
        match self {
            Admin::Open | Admin::Bearer(_) => {
                let token = match self {
                    Admin::Bearer(t) => Some(t.as_str()),
                    _ => None,
                };
                let (status, body) =
                    http_bearer(method, port, path, token, body.as_bytes()).ok()?;
                Some((status, String::from_utf8_lossy(&body).into_owned()))
            }
            Admin::Tls(cert) => {
                let mut cmd = Command::new("curl");
                cmd.args(["-s", "-m", "5", "-w", "\n%{http_code}", "--cacert"])
                    .arg(cert);
                if method != "GET" {
                    cmd.args(["-X", method]);
                }
                if !body.is_empty() {
                    cmd.args(["--data-binary", body]);
                }
                let o = cmd
                    .arg(format!("https://127.0.0.1:{port}{path}"))
                    .output()
                    .ok()?;
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                let (body, code) = out.rsplit_once('\n')?;
                Some((code.trim().parse().ok()?, body.to_string()))
            }
        }
    }

    pub fn get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        self.request(port, "GET", path, "")
    }
}

/// Two HA masters over one etcd member. Dropping it kills the masters, then etcd.
pub struct HaPair {
    pub masters: Vec<Master>,
    /// Index in `masters` of the leader found at start.
    pub leader: usize,
    /// `--etcd_endpoints` of the masters (for stores and clients: `etcd://` + this).
    pub endpoints: String,
    pub admin: Admin,
    pub etcd: EtcdCluster,
}

impl HaPair {
    /// Starts etcd and two HA masters with `extra` flags, then waits (30 s each) for
    /// exactly one leader and for the leader to report its standby in sync.
    pub fn start(tag: &str, extra: &[&str], admin: Admin) -> HaPair {
        let etcd = EtcdCluster::start(1, tag);
        let endpoints = etcd.endpoints();
        let masters = vec![
            start_ha_master(free_port(), &endpoints, extra),
            start_ha_master(free_port(), &endpoints, extra),
        ];
        let mut pair = HaPair {
            masters,
            leader: 0,
            endpoints,
            admin,
            etcd,
        };
        pair.leader = pair.wait_leader(Duration::from_secs(30));
        pair.wait_standby_in_sync(Duration::from_secs(30));
        pair
    }

    /// Master `i`'s `/health` status: 200 leader, 503 standby, None unreachable.
    pub fn health(&self, i: usize) -> Option<u16> {
        self.admin
            .get(self.masters[i].metrics_port, "/health")
            .map(|r| r.0)
    }

    /// Polls until exactly one master answers as the leader; its index.
    pub fn wait_leader(&self, within: Duration) -> usize {
        wait_one_leader_by(self.masters.len(), within, |i| self.health(i) == Some(200))
    }

    /// Polls the leader's `/workers` until it reports its standby in sync (the
    /// standby followed it, which a token or TLS it got wrong would prevent).
    pub fn wait_standby_in_sync(&self, within: Duration) {
        let port = self.masters[self.leader].metrics_port;
        let end = Instant::now() + within;
        loop {
            let workers = self.admin.get(port, "/workers");
            if workers
                .as_ref()
                .is_some_and(|w| w.1.contains("standbys in sync: 1"))
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "the standby never got in sync ({:?}): {workers:?}",
                self.admin
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

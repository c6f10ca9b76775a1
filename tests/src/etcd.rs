//! Real etcd (`/usr/bin/etcd`, the etcd-server package) and HA masters for the
//! integration tests: a cluster of 1..n members on free loopback ports whose members
//! can be killed and restarted one by one, `mooncake_master --enable_ha` processes
//! pointed at it, and the store/client settings that follow the leader through
//! `etcd://`. Every wait polls with a generous deadline.

use crate::{http, Master, Proc};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where the etcd-server package puts etcd, when `etcd` is not on PATH.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// The etcd binary: `etcd` on PATH (what scripts/install-deps.sh checks for), else
/// [`ETCD_BIN`].
pub fn etcd_bin() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("etcd"))
        .chain([PathBuf::from(ETCD_BIN)])
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
        "etcd not found on PATH nor at {ETCD_BIN}: the HA tests need it (scripts/install-deps.sh installs etcd-server{})",
        if in_ci {
            ""
        } else {
            "; MOONCAKE_SKIP_ETCD_TESTS=1 skips these tests outside CI"
        }
    );
}

/// One member: its ports and the command line to start it again.
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl EtcdMember {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }
}

/// An etcd cluster on loopback; its data lives in a directory removed on drop.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: PathBuf,
}

impl EtcdCluster {
    /// Starts `n` members (data under /dev/shm when it exists, so a loaded disk does
    /// not stall raft) and waits until every one reports healthy. A port handed out by
    /// [`crate::free_port`] can be taken by another process before etcd binds it, so a cluster
    /// that does not form is torn down and formed again on fresh ports (three tries);
    /// each member's log is kept beside its data and printed if every try fails.
    pub fn start(n: usize, tag: &str) -> EtcdCluster {
        let mut last = String::new();
        for attempt in 0..3 {
            match Self::try_start(n, tag) {
                Ok(c) => return c,
                Err(why) => {
                    eprintln!("etcd cluster {tag}, try {}: {why}", attempt + 1);
                    last = why;
                }
            }
        }
        panic!("etcd cluster {tag} never formed: {last}");
    }

    fn try_start(n: usize, tag: &str) -> Result<EtcdCluster, String> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // Unique per cluster: tests of one binary run in parallel and may share a tag.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("mc-etcd-{tag}-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("etcd data dir");
        let ports = distinct_ports(2 * n);
        let ports: Vec<(u16, u16)> = ports.chunks(2).map(|p| (p[0], p[1])).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, q))| format!("m{i}=http://127.0.0.1:{q}"))
            .collect();
        let initial = initial.join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(p, q))| {
                let name = format!("m{i}");
                let client = format!("http://127.0.0.1:{p}");
                let peer = format!("http://127.0.0.1:{q}");
                let args = vec![
                    "--name".into(),
                    name.clone(),
                    "--data-dir".into(),
                    dir.join(&name).to_string_lossy().into_owned(),
                    "--listen-client-urls".into(),
                    client.clone(),
                    "--advertise-client-urls".into(),
                    client,
                    "--listen-peer-urls".into(),
                    peer.clone(),
                    "--initial-advertise-peer-urls".into(),
                    peer,
                    "--initial-cluster".into(),
                    initial.clone(),
                    "--initial-cluster-token".into(),
                    format!("mc-{tag}-{}-{seq}", std::process::id()),
                    "--initial-cluster-state".into(),
                    "new".into(),
                ];
                EtcdMember {
                    name: format!("etcd-{tag}-{name}"),
                    client_port: p,
                    peer_port: q,
                    args,
                    proc: None,
                }
            })
            .collect();
        let mut c = EtcdCluster { members, dir };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            if !c.wait_healthy(i, Duration::from_secs(30)) {
                let why = format!(
                    "member {i} never became healthy (ports {}/{}); log tail:\n{}",
                    c.members[i].client_port,
                    c.members[i].peer_port,
                    c.log_tail(i, 15)
                );
                return Err(why); // dropping `c` kills the members and removes the data
            }
        }
        Ok(c)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.members[i].name))
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("etcd member log");
        let m = &mut self.members[i];
        let child = Command::new(etcd_bin().expect("etcd installed (etcd_available)"))
            .args(&m.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        m.proc = Some(Proc {
            child,
            name: m.name.clone(),
        });
    }

    /// `h1:p1;h2:p2;...`: every member, for `--etcd_endpoints` and `etcd://`.
    pub fn endpoints(&self) -> String {
        let eps: Vec<String> = self.members.iter().map(EtcdMember::endpoint).collect();
        eps.join(";")
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill9();
        }
    }

    /// Starts member `i` again on its ports and data (it rejoins the cluster).
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
    }

    /// Whether member `i` answers `/health` with `"health":"true"` (it needs a
    /// quorum for that).
    pub fn is_healthy(&self, i: usize) -> bool {
        match http("GET", self.members[i].client_port, "/health", b"") {
            Ok((200, body)) => String::from_utf8_lossy(&body).contains("true"),
            _ => false,
        }
    }

    pub fn wait_healthy(&self, i: usize, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.is_healthy(i) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The index of the member that is the raft leader, if one answers.
    pub fn raft_leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].is_running()
                && matches!(
                    http("POST", self.members[i].client_port, "/v3/maintenance/status", b"{}"),
                    Ok((200, ref body)) if is_leader_status(body)
                )
        })
    }
}

/// `/v3/maintenance/status` (grpc-gateway JSON): leader id == member id.
fn is_leader_status(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let field = |name: &str| -> Option<String> {
        let at = text.find(&format!("\"{name}\""))?;
        let rest = &text[at + name.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        let end = rest.find(|c: char| !c.is_ascii_digit())?;
        Some(rest[..end].to_string())
    };
    matches!((field("member_id"), field("leader")), (Some(m), Some(l)) if !m.is_empty() && m == l)
}

/// `n` distinct free loopback ports (one bind each, released together, so two members
/// are never handed the same port).
fn distinct_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Flags for `Master::start_on` that make it an HA master on `endpoints`.
pub fn ha_master_flags(endpoints: &str, extra: &[&str]) -> Vec<String> {
    let mut f = vec![
        "--enable_ha".to_string(),
        format!("--etcd_endpoints={endpoints}"),
        "--enable_metric_reporting=false".to_string(),
    ];
    f.extend(extra.iter().map(|s| s.to_string()));
    f
}

/// Starts an HA master (rpc port `rpc`, fresh admin/metadata ports).
pub fn start_ha_master(rpc: u16, endpoints: &str, extra: &[&str]) -> Master {
    let flags = ha_master_flags(endpoints, extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Master::start_on(rpc, &flags)
}

/// Starts an HA master on fixed rpc and admin ports (to restart it in place).
pub fn start_ha_master_on(rpc: u16, admin: u16, endpoints: &str, extra: &[&str]) -> Master {
    let flags = ha_master_flags(endpoints, extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Master::start_on_ports(rpc, admin, &flags)
}

/// The admin port's `/health` status: 200 leader, 503 standby, None unreachable.
pub fn master_health(m: &Master) -> Option<u16> {
    http("GET", m.metrics_port, "/health", b"")
        .ok()
        .map(|r| r.0)
}

/// Polls until `m` answers as the leader (the standby that takes over after a kill);
/// panics after `within`.
pub fn wait_leading(m: &Master, within: Duration) {
    let t0 = Instant::now();
    while master_health(m) != Some(200) {
        assert!(t0.elapsed() < within, "no new leader within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The masters that run (None = killed), as `wait_one_leader` takes them.
pub fn running(ms: &[Option<Master>]) -> Vec<Option<&Master>> {
    ms.iter().map(Option::as_ref).collect()
}

/// Polls until exactly one of `ms` (None = down) answers 200; its index. Panics if
/// two answer 200 at the same time or none does within `within`.
pub fn wait_one_leader(ms: &[Option<&Master>], within: Duration) -> usize {
    wait_one_leader_by(ms.len(), within, |i| {
        ms[i].is_some_and(|m| master_health(m) == Some(200))
    })
}

/// [`wait_one_leader`] over `n` masters, `leads(i)` telling whether master `i`
/// answers as the leader now (for admin ports that want a token or speak HTTPS).
pub fn wait_one_leader_by(n: usize, within: Duration, leads: impl Fn(usize) -> bool) -> usize {
    let end = Instant::now() + within;
    loop {
        let ok: Vec<usize> = (0..n).filter(|&i| leads(i)).collect();
        assert!(
            ok.len() <= 1,
            "two masters answer as leader at once: {ok:?}"
        );
        if let [i] = ok[..] {
            return i;
        }
        assert!(Instant::now() < end, "no leader within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls the leader's `/workers` until its replication worker reports a standby in
/// sync (it acknowledged the snapshot of the leader's state); false on timeout.
pub fn wait_standby_in_sync(leader: &Master, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let in_sync = http("GET", leader.metrics_port, "/workers", b"")
            .is_ok_and(|r| String::from_utf8_lossy(&r.1).contains("standbys in sync: 1"));
        if in_sync {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A store's `MOONCAKE_*` settings following the leader through etcd.
pub fn ha_store_env(endpoints: &str, segment: &str) -> Vec<(String, String)> {
    crate::store_env_with(
        format!("etcd://{endpoints}"),
        "P2PHANDSHAKE".to_string(),
        segment,
    )
}

/// A pure client's settings (no segment, TCP, peers met by handshake) for the master
/// at `master_server_address` (`etcd://...` or one address).
pub fn ha_node(master_server_address: &str) -> mooncake_common::config::NodeConfig {
    mooncake_common::config::NodeConfig {
        master_server_address: master_server_address.to_string(),
        metadata_server: "P2PHANDSHAKE".into(),
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        protocol: mooncake_common::config::Protocol::Tcp,
        ..Default::default()
    }
}

/// A pure client (no segment) following the leader through etcd.
pub async fn ha_client(endpoints: &str) -> mooncake_client::Client {
    let node = ha_node(&format!("etcd://{endpoints}"));
    mooncake_client::Client::connect(mooncake_client::ClientConfig::new(node))
        .await
        .expect("client connects through etcd")
}

/// Puts `key` (`value_for(key, len)`) until the master accepts it, `pause` apart (the
/// client may be between leaders for a moment); how long that took.
pub async fn put_until_ok(
    c: &mooncake_client::Client,
    key: &str,
    len: usize,
    within: Duration,
    pause: Duration,
) -> Duration {
    let t0 = Instant::now();
    let v = crate::value_for(key, len);
    loop {
        match c
            .put(key, &v, &mooncake_client::ReplicateConfig::default())
            .await
        {
            Ok(()) => return t0.elapsed(),
            Err(e) => assert!(t0.elapsed() < within, "put {key} never succeeded: {e}"),
        }
        tokio::time::sleep(pause).await;
    }
}

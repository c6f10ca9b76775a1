//! Helpers for the integration tests: start the real binaries (`mooncake_master`,
//! `mooncake_store`, `mooncake_cli`) from the build's `target/<profile>/` on free
//! loopback ports, wait for them, talk to their HTTP ports, and kill them on drop.
//!
//! Building the binaries is the test command's job (`scripts/test.sh` runs
//! `cargo build --release --workspace --bins` first); a missing binary fails the test
//! with a message saying so.

pub mod etcd;
pub mod ha;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/`, derived from the test executable (`target/<profile>/deps/x`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path of a workspace binary, panicking with a clear message when it is not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins, same profile as the tests)",
        p.display()
    );
    p
}

/// A loopback port nothing listened on a moment ago, below the ephemeral range (see
/// [`mooncake_common::ports`] for why not port 0).
pub fn free_port() -> u16 {
    mooncake_common::ports::free_loopback_port().expect("a free loopback port")
}

pub fn wait_port(port: u16, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A directory of one test's files under the temp dir (`mc-<tag>-<pid>`), emptied
/// when made and removed when dropped.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!("mc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("a test directory");
        TestDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` in the directory; its path.
    pub fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("a test file");
        p
    }

    /// A self-signed certificate for 127.0.0.1 (as `openssl req -x509` makes it: also
    /// a CA): `<name>.pem` and `<name>.key`, their paths in that order.
    pub fn self_signed(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        let o = Command::new("openssl")
            .current_dir(&self.0)
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", &key, "-out", &cert, "-days", "2"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .output()
            .expect("run openssl");
        assert!(
            o.status.success(),
            "openssl req -x509: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        (self.0.join(cert), self.0.join(key))
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // Safety: signalling our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; its code (None if it did not exit in time).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A process's log under `target/<profile>/test-logs`, appended to: a process
/// restarted on the same port (chaos, failover tests) adds to its predecessor's log
/// instead of erasing the history a failure is read from.
fn log_file(name: &str) -> Stdio {
    let dir = bin_dir().join("test-logs");
    let _ = std::fs::create_dir_all(&dir);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")));
    match file {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    }
}

/// A running master.
pub struct Master {
    pub proc: Proc,
    pub rpc_port: u16,
    pub metrics_port: u16,
    pub meta_port: u16,
}

impl Master {
    /// Starts `mooncake_master` on loopback with the embedded metadata server.
    /// Ports come from [`free_port`], which another test may take before the master
    /// binds them: a master that exits at once (a port in use) is started again on
    /// fresh ports, twice at most.
    pub fn start(extra: &[&str]) -> Master {
        for _ in 0..2 {
            let mut m = Self::spawn(free_port(), free_port(), extra);
            let end = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < end {
                if matches!(m.proc.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                if wait_port(m.rpc_port, Duration::from_millis(100))
                    && wait_port(m.metrics_port, Duration::from_secs(10))
                {
                    return m;
                }
            }
        }
        Self::start_on(free_port(), extra)
    }

    /// Starts a master whose RPC port is `rpc` (to restart one in place).
    pub fn start_on(rpc: u16, extra: &[&str]) -> Master {
        Self::start_on_ports(rpc, free_port(), extra)
    }

    /// Starts a master on RPC port `rpc` and admin (metrics) port `met`, so a
    /// restarted master keeps both.
    pub fn start_on_ports(rpc: u16, met: u16, extra: &[&str]) -> Master {
        let m = Self::spawn(rpc, met, extra);
        assert!(
            wait_port(rpc, Duration::from_secs(20)),
            "master rpc port never opened"
        );
        assert!(
            wait_port(met, Duration::from_secs(10)),
            "master metrics port never opened"
        );
        m
    }

    /// Spawns a master on these ports (and a free metadata port) without waiting.
    fn spawn(rpc: u16, met: u16, extra: &[&str]) -> Master {
        let meta = free_port();
        let name = format!("master-{rpc}");
        let child = Command::new(bin("mooncake_master"))
            .args(["--rpc_address", "127.0.0.1", "--rpc_port", &rpc.to_string()])
            .args([
                "--metrics_host",
                "127.0.0.1",
                "--metrics_port",
                &met.to_string(),
            ])
            .args(["--http_metadata_server_host", "127.0.0.1"])
            .args(["--http_metadata_server_port", &meta.to_string()])
            .args(extra)
            .stdout(log_file(&name))
            .stderr(log_file(&format!("{name}.err")))
            .spawn()
            .expect("spawn mooncake_master");
        Master {
            proc: Proc { child, name },
            rpc_port: rpc,
            metrics_port: met,
            meta_port: meta,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    pub fn metadata_url(&self) -> String {
        format!("http://127.0.0.1:{}/metadata", self.meta_port)
    }

    /// A sample of `/metrics` (first series with that name, labels ignored).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http("GET", self.metrics_port, "/metrics", b"").ok()?;
        let text = String::from_utf8_lossy(&body).into_owned();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
    }

    /// Polls `metric` until it equals `want`; returns the last value seen.
    pub fn wait_metric(&self, name: &str, want: f64, within: Duration) -> Option<f64> {
        let t0 = Instant::now();
        loop {
            let v = self.metric(name);
            if v == Some(want) || t0.elapsed() > within {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The seed's store environment for a master (sizes as strings, like the manifests).
pub fn store_env(m: &Master, segment: &str) -> Vec<(String, String)> {
    store_env_with(m.addr(), m.metadata_url(), segment)
}

/// A store's environment for master address `master` (an address or `etcd://...`)
/// and metadata server `metadata`.
pub(crate) fn store_env_with(
    master: String,
    metadata: String,
    segment: &str,
) -> Vec<(String, String)> {
    [
        ("MOONCAKE_MASTER", master),
        ("MOONCAKE_TE_META_DATA_SERVER", metadata),
        ("MOONCAKE_GLOBAL_SEGMENT_SIZE", segment.to_string()),
        ("MOONCAKE_LOCAL_BUFFER_SIZE", "4194304".to_string()),
        ("MOONCAKE_PROTOCOL", "tcp".to_string()),
        ("MOONCAKE_DEVICE", String::new()),
        ("MOONCAKE_LOCAL_HOSTNAME", "127.0.0.1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A running store daemon.
pub struct Store {
    pub proc: Proc,
    pub http_port: u16,
}

/// The segment directory [`Store::spawn`] gives a store that `env` gives none.
fn harness_shm_dir(port: u16) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("mc-test-{}-{port}", std::process::id()))
}

impl Drop for Store {
    fn drop(&mut self) {
        // A store keeps its segment file when it stops, for its next run; a test's
        // store has no next run, and files left in /dev/shm would hold memory until
        // the machine reboots. (Unlinking under a live process is fine: the memory
        // goes when its mapping does.) Only the directory this harness made is removed.
        let _ = std::fs::remove_dir_all(harness_shm_dir(self.http_port));
    }
}

impl Store {
    /// Spawns `mooncake_store --port P` with exactly `env` as its MOONCAKE_* settings
    /// (plus, when `env` has no `MOONCAKE_SHM_DIR`, a directory of its own for its
    /// segment file, removed when the `Store` is dropped).
    pub fn spawn(env: &[(String, String)]) -> Store {
        Store::spawn_on(free_port(), env)
    }

    /// [`Store::spawn`] on HTTP port `port` (to start a store again as "the same
    /// store", with the same port and `MOONCAKE_SHM_DIR`).
    pub fn spawn_on(port: u16, env: &[(String, String)]) -> Store {
        let name = format!("store-{port}");
        let shm_dir = (!env.iter().any(|(k, _)| k == "MOONCAKE_SHM_DIR")).then(|| {
            let d = harness_shm_dir(port);
            std::fs::create_dir_all(&d).expect("segment directory for a test store");
            d
        });
        let mut cmd = Command::new(bin("mooncake_store"));
        cmd.args(["--port", &port.to_string(), "--http_host", "127.0.0.1"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log_file(&name))
            .stderr(log_file(&format!("{name}.err")));
        if let Some(d) = &shm_dir {
            cmd.env("MOONCAKE_SHM_DIR", d);
        }
        let child = cmd.spawn().expect("spawn mooncake_store");
        Store {
            proc: Proc { child, name },
            http_port: port,
        }
    }

    /// Spawns and waits until `/health` answers 200 (segment mounted).
    pub fn start(env: &[(String, String)]) -> Store {
        Store::start_on(free_port(), env)
    }

    /// [`Store::start`] on HTTP port `port`.
    pub fn start_on(port: u16, env: &[(String, String)]) -> Store {
        let s = Store::spawn_on(port, env);
        assert!(
            s.wait_healthy(Duration::from_secs(20)),
            "store never became healthy"
        );
        s
    }

    pub fn wait_healthy(&self, within: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if matches!(http("GET", self.http_port, "/health", b""), Ok((200, _))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// The segment names the master's `/get_all_segments` lists.
pub fn segments(m: &Master) -> Vec<String> {
    let body = http("GET", m.metrics_port, "/get_all_segments", b"")
        .map(|r| r.1)
        .unwrap_or_default();
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; returns status and body.
pub fn http(method: &str, port: u16, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    http_with_headers(method, port, path, &[], body)
}

/// [`http`] with `Authorization: Bearer <token>` when a token is given.
pub fn http_bearer(
    method: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http_with_headers(method, port, path, &headers, body)
}

/// [`http_bearer`] with a text body and answer, panicking when the port does not
/// answer (for calls that must reach a running process).
pub fn http_text(
    method: &str,
    port: u16,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let (status, body) = http_bearer(method, port, path, token, body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// [`http`] with extra request headers (name, value).
pub fn http_with_headers(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let mut rest = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        rest = dechunk(&rest);
    }
    Ok((status, rest))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < p + 2 + n {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + n]);
        b = &b[(p + 4 + n).min(b.len())..];
    }
    out
}

/// A two-thread tokio runtime, for tests that drive async calls from plain `#[test]`s.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `mooncake_cli --master <addr> args...`.
pub fn cli(master: &str, args: &[&str]) -> Output {
    Command::new(bin("mooncake_cli"))
        .args(["--master", master])
        .args(args)
        .output()
        .expect("run mooncake_cli")
}

/// A pure client's settings (contributes no memory) for master `m`, through its
/// metadata server.
pub fn node_for(m: &Master) -> mooncake_common::config::NodeConfig {
    mooncake_common::config::NodeConfig {
        master_server_address: m.addr(),
        metadata_server: m.metadata_url(),
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        ..Default::default()
    }
}

/// A Rust client (pure: contributes no memory) connected to `m`.
pub async fn client(m: &Master) -> mooncake_client::Client {
    mooncake_client::Client::connect(mooncake_client::ClientConfig::new(node_for(m)))
        .await
        .expect("client connects")
}

/// Deterministic, key-specific bytes (so a wrong object is never mistaken for the
/// right one).
pub fn value_for(key: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        x = (x ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

//! TLS on the master's rpc, admin and metadata ports, with real processes: a store,
//! the CLI (framed and gRPC) and `openssl s_client` against a TLS master; mutual TLS
//! refusing a client certificate from another CA and accepting the right one; bad
//! TLS files stopping the master and the client with the file named. Then the other
//! HTTP ports: the store's REST port with `MOONCAKE_REST_TLS=1` and the standalone
//! metadata server with `--tls_*`, through `curl`, including a CA rotated under a
//! running server. Certificates are made with the `openssl` command in a temporary
//! directory.

use mooncake_tests::{bin, free_port, store_env, Master, Store, TestDir};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o.stderr));
}

/// A directory removed at drop, with the certificates a test makes in it.
struct Dir(TestDir);

impl Dir {
    fn new(tag: &str) -> Dir {
        Dir(TestDir::new(&format!("tls-{tag}")))
    }

    fn path(&self, name: &str) -> String {
        self.0.path().join(name).to_string_lossy().into_owned()
    }

    /// A self-signed certificate for 127.0.0.1 (as `openssl req -x509` makes it: also
    /// a CA): `<name>.pem`, `<name>.key`.
    fn self_signed(&self, name: &str) {
        self.0.self_signed(name);
    }

    /// A CA: `<name>.pem`, `<name>.key`.
    fn ca(&self, name: &str) {
        openssl(
            self.0.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
    }

    /// A leaf certificate signed by CA `ca`, for a server (127.0.0.1) or a client.
    fn leaf(&self, name: &str, ca: &str, server: bool) {
        let ext = if server {
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        } else {
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
        };
        std::fs::write(self.0.path().join(format!("{name}.ext")), ext).unwrap();
        openssl(
            self.0.path(),
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            self.0.path(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

/// `mooncake_cli --master <addr> args...` with exactly `env` as its TLS settings.
fn cli_env(master: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("mooncake_cli"));
    for k in [
        "MOONCAKE_TLS_CA_FILE",
        "MOONCAKE_TLS_CERT_FILE",
        "MOONCAKE_TLS_KEY_FILE",
        "MOONCAKE_MASTER_PROTOCOL",
        "MOONCAKE_TE_META_DATA_SERVER",
        "MOONCAKE_TRANSFER_TLS",
        "MOONCAKE_DISABLE_SHM",
    ] {
        cmd.env_remove(k);
    }
    let out = cmd
        .args(["--master", master])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run mooncake_cli");
    out
}

fn https_metadata(m: &Master) -> String {
    format!("https://127.0.0.1:{}/metadata", m.meta_port)
}

#[test]
fn tls_master_serves_store_cli_and_openssl() {
    let d = Dir::new("plain");
    d.self_signed("srv");
    let (cert, key) = (d.path("srv.pem"), d.path("srv.key"));
    let m = Master::start(&[
        "--tls_cert_file",
        &cert,
        "--tls_key_file",
        &key,
        "--enable_http_metadata_server",
    ]);
    let a = m.addr();

    // openssl verifies the rpc port's certificate against the same file.
    let mut s = Command::new("openssl")
        .args(["s_client", "-connect", &a, "-CAfile", &cert])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(s.stdin.take());
    let o = s.wait_with_output().unwrap();
    assert!(
        text(&o.stdout).contains("Verify return code: 0"),
        "{}",
        text(&o.stdout)
    );

    // A store that reaches the master and the metadata server over TLS.
    let mut env = store_env(&m, "16mb");
    env.retain(|(k, _)| k != "MOONCAKE_TE_META_DATA_SERVER");
    env.push(("MOONCAKE_TE_META_DATA_SERVER".into(), https_metadata(&m)));
    env.push(("MOONCAKE_TLS_CA_FILE".into(), cert.clone()));
    let _store = Store::start(&env);

    let tls = |proto: &str| {
        vec![
            ("MOONCAKE_TLS_CA_FILE", cert.clone()),
            ("MOONCAKE_MASTER_PROTOCOL", proto.to_string()),
            ("MOONCAKE_TE_META_DATA_SERVER", https_metadata(&m)),
        ]
    };
    for proto in ["framed", "grpc"] {
        let key_name = format!("k-{proto}");
        let value = text(&mooncake_tests::value_for(&key_name, 3000)).replace('\0', "x");
        let o = cli_env(&a, &tls(proto), &["put", &key_name, "--value", &value]);
        assert!(o.status.success(), "{proto}: {}", text(&o.stderr));
        let o = cli_env(&a, &tls(proto), &["get", &key_name]);
        assert!(o.status.success(), "{proto}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), value, "{proto}");
        let o = cli_env(&a, &tls(proto), &["stats"]);
        assert!(o.status.success(), "{proto}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("segments:"), "{}", text(&o.stdout));
    }

    // Without the CA: refused at once, in words that name TLS.
    for proto in ["framed", "grpc"] {
        let t = std::time::Instant::now();
        let o = cli_env(
            &a,
            &[("MOONCAKE_MASTER_PROTOCOL", proto.to_string())],
            &["stats"],
        );
        assert!(!o.status.success(), "{proto}");
        assert!(t.elapsed() < Duration::from_secs(20), "{proto}: no hang");
        if proto == "framed" {
            assert!(text(&o.stderr).contains("TLS"), "{}", text(&o.stderr));
        }
    }

    // The admin and metadata ports speak HTTPS only.
    let o = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", m.metrics_port),
            "-CAfile",
            &cert,
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|mut c| {
            let mut i = c.stdin.take().unwrap();
            let _ = i.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            std::thread::sleep(Duration::from_millis(500));
            drop(i);
            c.wait_with_output().unwrap()
        })
        .unwrap();
    assert!(text(&o.stdout).contains("200 OK"), "{}", text(&o.stdout));
    // Plain HTTP gets no answer from it.
    let plain = mooncake_tests::http("GET", m.metrics_port, "/health", b"");
    assert!(!matches!(plain, Ok((200, _))), "{plain:?}");
}

#[test]
fn mutual_tls_accepts_only_certificates_of_its_ca() {
    let d = Dir::new("mtls");
    d.ca("ca");
    d.ca("other");
    d.leaf("srv", "ca", true);
    d.leaf("good", "ca", false);
    d.leaf("stranger", "other", false);
    let m = Master::start(&[
        "--tls_cert_file",
        &d.path("srv.pem"),
        "--tls_key_file",
        &d.path("srv.key"),
        "--tls_ca_file",
        &d.path("ca.pem"),
    ]);
    let a = m.addr();
    let with = |who: Option<&str>| {
        let mut env = vec![("MOONCAKE_TLS_CA_FILE", d.path("ca.pem"))];
        if let Some(w) = who {
            env.push(("MOONCAKE_TLS_CERT_FILE", d.path(&format!("{w}.pem"))));
            env.push(("MOONCAKE_TLS_KEY_FILE", d.path(&format!("{w}.key"))));
        }
        env
    };
    for proto in ["framed", "grpc"] {
        for who in [None, Some("stranger")] {
            let mut env = with(who);
            env.push(("MOONCAKE_MASTER_PROTOCOL", proto.to_string()));
            let o = cli_env(&a, &env, &["stats"]);
            assert!(!o.status.success(), "{proto} {who:?} was let in");
        }
        let mut env = with(Some("good"));
        env.push(("MOONCAKE_MASTER_PROTOCOL", proto.to_string()));
        let o = cli_env(&a, &env, &["stats"]);
        assert!(o.status.success(), "{proto}: {}", text(&o.stderr));
    }
    // A store with the right certificate mounts and serves.
    let mut env = store_env(&m, "16mb");
    env.retain(|(k, _)| k != "MOONCAKE_TE_META_DATA_SERVER");
    env.push(("MOONCAKE_TE_META_DATA_SERVER".into(), "P2PHANDSHAKE".into()));
    for (k, v) in with(Some("good")) {
        env.push((k.into(), v));
    }
    let _store = Store::start(&env);
    let good = with(Some("good"));
    let o = cli_env(&a, &good, &["put", "mk", "--value", "mutual"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = cli_env(&a, &good, &["get", "mk"]);
    assert_eq!(text(&o.stdout), "mutual", "{}", text(&o.stderr));
}

/// Runs the master with `args` and expects it to exit non-zero at once, saying `want`.
fn master_refuses(args: &[&str], want: &str) {
    let rpc = free_port().to_string();
    let mut c = Command::new(bin("mooncake_master"))
        .args([
            "--rpc_address",
            "127.0.0.1",
            "--rpc_port",
            &rpc,
            "--metrics_port",
            "0",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            let o = c.wait_with_output().unwrap();
            let all = text(&o.stderr) + &text(&o.stdout);
            assert!(!st.success(), "{args:?}: {all}");
            assert!(all.contains(want), "{args:?}: wanted {want:?} in {all}");
            assert!(!all.contains("panicked"), "{all}");
            return;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = c.kill();
            panic!("master kept running with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_tls_files_stop_the_master_and_the_client_naming_the_file() {
    let d = Dir::new("bad");
    d.self_signed("a");
    d.self_signed("b");
    std::fs::write(d.0.path().join("empty.pem"), "no certificates here\n").unwrap();
    let (a_pem, a_key, b_key) = (d.path("a.pem"), d.path("a.key"), d.path("b.key"));
    let missing = d.path("missing.pem");
    let empty = d.path("empty.pem");
    master_refuses(
        &["--tls_cert_file", &missing, "--tls_key_file", &a_key],
        &missing,
    );
    master_refuses(
        &["--tls_cert_file", &a_pem, "--tls_key_file", &missing],
        &missing,
    );
    master_refuses(
        &["--tls_cert_file", &a_pem, "--tls_key_file", &b_key],
        "does not match",
    );
    master_refuses(
        &["--tls_cert_file", &a_pem, "--tls_key_file", &a_pem],
        &a_pem,
    );
    master_refuses(
        &[
            "--tls_cert_file",
            &a_pem,
            "--tls_key_file",
            &a_key,
            "--tls_ca_file",
            &empty,
        ],
        &empty,
    );
    master_refuses(&["--tls_cert_file", &a_pem], "--tls_key_file");

    // The client side: the same files through MOONCAKE_TLS_*.
    let m = Master::start(&["--tls_cert_file", &a_pem, "--tls_key_file", &a_key]);
    for (env, want) in [
        (
            vec![("MOONCAKE_TLS_CA_FILE", missing.clone())],
            missing.as_str(),
        ),
        (
            vec![("MOONCAKE_TLS_CA_FILE", empty.clone())],
            empty.as_str(),
        ),
        (
            vec![
                ("MOONCAKE_TLS_CA_FILE", a_pem.clone()),
                ("MOONCAKE_TLS_CERT_FILE", a_pem.clone()),
                ("MOONCAKE_TLS_KEY_FILE", b_key.clone()),
            ],
            "does not match",
        ),
        (
            vec![("MOONCAKE_TLS_CERT_FILE", a_pem.clone())],
            "MOONCAKE_TLS_CA_FILE",
        ),
    ] {
        let o = cli_env(&m.addr(), &env, &["stats"]);
        assert!(!o.status.success(), "{env:?}");
        let err = text(&o.stderr);
        assert!(err.contains(want), "{env:?}: wanted {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn data_port_tls_carries_puts_and_gets_and_refuses_plaintext_by_name() {
    let d = Dir::new("data");
    d.self_signed("srv");
    let (cert, key) = (d.path("srv.pem"), d.path("srv.key"));
    let m = Master::start(&[
        "--tls_cert_file",
        &cert,
        "--tls_key_file",
        &key,
        "--enable_http_metadata_server",
    ]);
    let a = m.addr();
    // One certificate for the whole cluster, pinned by every process.
    let files = || {
        vec![
            ("MOONCAKE_TLS_CA_FILE", cert.clone()),
            ("MOONCAKE_TLS_CERT_FILE", cert.clone()),
            ("MOONCAKE_TLS_KEY_FILE", key.clone()),
            ("MOONCAKE_TE_META_DATA_SERVER", https_metadata(&m)),
        ]
    };
    let mut env = store_env(&m, "16mb");
    env.retain(|(k, _)| k != "MOONCAKE_TE_META_DATA_SERVER");
    env.extend(files().into_iter().map(|(k, v)| (k.to_string(), v)));
    env.push(("MOONCAKE_TRANSFER_TLS".into(), "1".into()));
    let _store = Store::start(&env);

    // Through the data port (no same-host mapping), both ends with TLS.
    let mut tls = files();
    tls.push(("MOONCAKE_TRANSFER_TLS", "1".into()));
    tls.push(("MOONCAKE_DISABLE_SHM", "1".into()));
    let value: String = (0..100_000u32)
        .map(|i| (b'a' + (i * 7 % 26) as u8) as char)
        .collect();
    let o = cli_env(&a, &tls, &["put", "k-data", "--value", &value]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = cli_env(&a, &tls, &["get", "k-data"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout) == value, "the value read back over TLS");

    // A client whose data port is plaintext: refused at once, naming TLS.
    let mut plain = files();
    plain.push(("MOONCAKE_DISABLE_SHM", "1".into()));
    let t = std::time::Instant::now();
    let o = cli_env(&a, &plain, &["get", "k-data"]);
    assert!(!o.status.success());
    assert!(t.elapsed() < Duration::from_secs(20), "no hang");
    let err = text(&o.stderr);
    assert!(err.contains("MOONCAKE_TRANSFER_TLS"), "{err}");

    // MOONCAKE_TRANSFER_TLS=1 without this process's certificate: a clear error.
    let mut half = vec![
        ("MOONCAKE_TLS_CA_FILE", cert.clone()),
        ("MOONCAKE_TE_META_DATA_SERVER", https_metadata(&m)),
    ];
    half.push(("MOONCAKE_TRANSFER_TLS", "1".into()));
    let o = cli_env(&a, &half, &["get", "k-data"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("MOONCAKE_TLS_CERT_FILE"), "{err}");
}

/// `curl -sS` with `args` (a URL among them): the HTTP status (0 when none came) and
/// the body, or curl's error.
fn curl(args: &[&str]) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let out = text(&o.stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    let code = code.trim().parse().unwrap_or(0);
    if o.status.success() {
        (code, body.to_string())
    } else {
        (code, format!("curl failed: {}", text(&o.stderr)))
    }
}

/// Runs `what` until it is true, for up to 20 s.
fn eventually(mut what: impl FnMut() -> bool) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn store_rest_port_serves_https_with_its_certificate_and_still_checks_tokens() {
    let d = Dir::new("rest");
    d.ca("ca");
    d.leaf("srv", "ca", true);
    let (ca, cert, key) = (d.path("ca.pem"), d.path("srv.pem"), d.path("srv.key"));
    let tokens = d.0.file("tokens", "cluster:tok-rest-tls-1111\n");
    let m = Master::start(&[
        "--tls_cert_file",
        &cert,
        "--tls_key_file",
        &key,
        "--enable_http_metadata_server",
        &format!("--auth_token_file={}", tokens.display()),
    ]);
    let mut env = store_env(&m, "16mb");
    env.retain(|(k, _)| k != "MOONCAKE_TE_META_DATA_SERVER");
    for (k, v) in [
        ("MOONCAKE_TE_META_DATA_SERVER", https_metadata(&m)),
        ("MOONCAKE_TLS_CA_FILE", ca.clone()),
        ("MOONCAKE_TLS_CERT_FILE", cert.clone()),
        ("MOONCAKE_TLS_KEY_FILE", key.clone()),
        ("MOONCAKE_AUTH_TOKEN", "tok-rest-tls-1111".into()),
        ("MOONCAKE_REST_TLS", "1".into()),
    ] {
        env.push((k.into(), v));
    }
    let store = Store::spawn(&env);
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", store.http_port);
    let bearer = "Authorization: Bearer tok-rest-tls-1111";
    assert!(
        eventually(|| curl(&["--cacert", &ca, &url("/health")]).0 == 200),
        "the store's /health over HTTPS"
    );

    // An operator's curl: the CA and the token, no client certificate.
    let put = curl(&[
        "--cacert",
        &ca,
        "-H",
        bearer,
        "-X",
        "PUT",
        "--data",
        r#"{"key":"rk","value":"over https"}"#,
        &url("/api/put"),
    ]);
    assert_eq!(put.0, 200, "{put:?}");
    let got = curl(&["--cacert", &ca, "-H", bearer, &url("/api/get/rk")]);
    assert_eq!(got, (200, "over https".to_string()));
    // The token is still the gate.
    let none = curl(&["--cacert", &ca, &url("/api/get/rk")]);
    assert_eq!(none.0, 401, "{none:?}");
    // A client that does not trust the store's CA is stopped by its own check.
    let untrusted = curl(&["-H", bearer, &url("/api/get/rk")]);
    assert_eq!(untrusted.0, 0, "{untrusted:?}");
    // Plain HTTP on the HTTPS port: told so, in plain HTTP.
    let plain = mooncake_tests::http("GET", store.http_port, "/health", b"");
    let (status, body) = plain.expect("an answer in plain HTTP");
    assert_eq!(status, 400);
    assert!(text(&body).contains("https://"), "{}", text(&body));
}

/// A running `mooncake_http_metadata_server` on a free loopback port.
struct MetadataServer {
    child: std::process::Child,
    port: u16,
}

impl MetadataServer {
    fn start(args: &[&str]) -> MetadataServer {
        let port = free_port();
        let child = Command::new(bin("mooncake_http_metadata_server"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            mooncake_tests::wait_port(port, Duration::from_secs(20)),
            "metadata server listening"
        );
        MetadataServer { child, port }
    }

    fn url(&self, key: &str) -> String {
        format!("https://127.0.0.1:{}/metadata?key={key}", self.port)
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn standalone_metadata_server_serves_https_and_requires_certificates_of_its_ca() {
    let d = Dir::new("meta");
    d.ca("ca");
    d.ca("other");
    d.leaf("srv", "ca", true);
    d.leaf("good", "ca", false);
    d.leaf("stranger", "other", false);
    let ca = d.path("ca.pem");

    // Server TLS only: any client that trusts the CA.
    let open = MetadataServer::start(&[
        "--tls_cert_file",
        &d.path("srv.pem"),
        "--tls_key_file",
        &d.path("srv.key"),
    ]);
    let put = curl(&["--cacert", &ca, "-X", "PUT", "--data", "v1", &open.url("k")]);
    assert_eq!(put.0, 200, "{put:?}");
    assert_eq!(
        curl(&["--cacert", &ca, &open.url("k")]),
        (200, "v1".to_string())
    );
    let plain = mooncake_tests::http("GET", open.port, "/metadata?key=k", b"");
    assert!(matches!(&plain, Ok((400, _))), "{plain:?}");

    // Mutual TLS: a client certificate of the CA, and no other.
    let mutual = MetadataServer::start(&[
        "--tls_cert_file",
        &d.path("srv.pem"),
        "--tls_key_file",
        &d.path("srv.key"),
        "--tls_ca_file",
        &ca,
    ]);
    let as_who = |who: &str| {
        vec![
            "--cacert".to_string(),
            ca.clone(),
            "--cert".into(),
            d.path(&format!("{who}.pem")),
            "--key".into(),
            d.path(&format!("{who}.key")),
        ]
    };
    let with = |who: Option<&str>, extra: &[&str]| {
        let mut a = who
            .map(as_who)
            .unwrap_or_else(|| vec!["--cacert".into(), ca.clone()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        curl(&refs)
    };
    let put = with(
        Some("good"),
        &["-X", "PUT", "--data", "v2", &mutual.url("m")],
    );
    assert_eq!(put.0, 200, "{put:?}");
    assert_eq!(
        with(Some("good"), &[&mutual.url("m")]),
        (200, "v2".to_string())
    );
    for who in [None, Some("stranger")] {
        let r = with(who, &[&mutual.url("m")]);
        assert_eq!(r.0, 0, "{who:?} was let in: {r:?}");
    }
}

#[test]
fn a_rotated_ca_and_certificate_serve_new_connections_without_a_restart() {
    let d = Dir::new("rotate");
    for ca in ["ca1", "ca2"] {
        d.ca(ca);
        d.leaf(&format!("{ca}-srv"), ca, true);
        d.leaf(&format!("{ca}-cli"), ca, false);
    }
    let put = |from: &str, to: &str| {
        std::fs::copy(d.path(from), d.path(to)).unwrap();
    };
    put("ca1-srv.key", "live.key");
    put("ca1-srv.pem", "live.pem");
    put("ca1.pem", "clients.pem");
    let mut srv = MetadataServer::start(&[
        "--tls_cert_file",
        &d.path("live.pem"),
        "--tls_key_file",
        &d.path("live.key"),
        "--tls_ca_file",
        &d.path("clients.pem"),
    ]);
    let as_ca = |ca: &str, cli: &str, extra: &[&str]| {
        let mut a = vec![
            "--cacert".to_string(),
            d.path(&format!("{ca}.pem")),
            "--cert".into(),
            d.path(&format!("{cli}.pem")),
            "--key".into(),
            d.path(&format!("{cli}.key")),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        curl(&refs)
    };
    let r = as_ca(
        "ca1",
        "ca1-cli",
        &["-X", "PUT", "--data", "kept", &srv.url("r")],
    );
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(as_ca("ca2", "ca2-cli", &[&srv.url("r")]).0, 0, "not yet");

    // The CA file and the server's pair move to the new CA (the key first).
    put("ca2.pem", "clients.pem");
    put("ca2-srv.key", "live.key");
    put("ca2-srv.pem", "live.pem");
    assert!(
        eventually(|| as_ca("ca2", "ca2-cli", &[&srv.url("r")]) == (200, "kept".into())),
        "a client of the new CA, same server process"
    );
    assert!(srv.running());
    let old = as_ca("ca2", "ca1-cli", &[&srv.url("r")]);
    assert_eq!(old.0, 0, "a client certificate of the old CA: {old:?}");

    // A CA file that does not parse keeps the one before.
    std::fs::write(d.path("clients.pem"), "not a certificate\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let r = as_ca("ca2", "ca2-cli", &[&srv.url("r")]);
    assert_eq!(r, (200, "kept".into()));
}

/// Runs `cmd` and expects exit code 1 at once, saying `want`, without a panic.
fn exits_1_saying(cmd: &mut Command, want: &str) {
    let o = cmd.stdin(Stdio::null()).output().expect("run the program");
    let all = text(&o.stderr) + &text(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "wanted exit 1 saying {want:?}: {all}"
    );
    assert!(all.contains(want), "wanted {want:?} in {all}");
    assert!(!all.contains("panicked"), "{all}");
}

#[test]
fn bad_tls_files_stop_the_store_and_the_metadata_server_naming_them() {
    let d = Dir::new("bad-http");
    d.self_signed("a");
    d.self_signed("b");
    let (a_pem, a_key, b_key) = (d.path("a.pem"), d.path("a.key"), d.path("b.key"));
    let missing = d.path("missing.pem");
    let store = |env: &[(&str, &str)]| {
        let mut c = Command::new(bin("mooncake_store"));
        c.args(["--port", "0", "--http_host", "127.0.0.1"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs([
                ("MOONCAKE_MASTER", "127.0.0.1:1"),
                ("MOONCAKE_TE_META_DATA_SERVER", "P2PHANDSHAKE"),
                ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "16mb"),
                ("MOONCAKE_LOCAL_BUFFER_SIZE", "4194304"),
                ("MOONCAKE_PROTOCOL", "tcp"),
                ("MOONCAKE_LOCAL_HOSTNAME", "127.0.0.1"),
                ("MOONCAKE_REST_TLS", "1"),
            ])
            .envs(env.iter().copied());
        c
    };
    let both = |cert: &str, key: &str| {
        vec![
            ("MOONCAKE_TLS_CA_FILE", a_pem.clone()),
            ("MOONCAKE_TLS_CERT_FILE", cert.to_string()),
            ("MOONCAKE_TLS_KEY_FILE", key.to_string()),
        ]
    };
    for (env, want) in [
        (both(&missing, &a_key), missing.as_str()),
        (both(&a_pem, &missing), missing.as_str()),
        (both(&a_pem, &b_key), "does not match"),
        (vec![], "MOONCAKE_TLS_CERT_FILE"),
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        exits_1_saying(&mut store(&env), want);
    }
    exits_1_saying(
        &mut store(&[("MOONCAKE_REST_TLS", "maybe")]),
        "MOONCAKE_REST_TLS",
    );

    let meta = |args: &[&str]| {
        let mut c = Command::new(bin("mooncake_http_metadata_server"));
        c.args(["--host", "127.0.0.1", "--port", "0"]).args(args);
        c
    };
    exits_1_saying(
        &mut meta(&["--tls_cert_file", &missing, "--tls_key_file", &a_key]),
        &missing,
    );
    exits_1_saying(
        &mut meta(&["--tls_cert_file", &a_pem, "--tls_key_file", &b_key]),
        "does not match",
    );
    exits_1_saying(
        &mut meta(&[
            "--tls_cert_file",
            &a_pem,
            "--tls_key_file",
            &a_key,
            "--tls_ca_file",
            &missing,
        ]),
        &missing,
    );
    exits_1_saying(&mut meta(&["--tls_cert_file", &a_pem]), "--tls_key_file");
}

//! TLS on the master's rpc, admin and metadata ports, with real processes: a store,
//! the CLI (framed and gRPC) and `openssl s_client` against a TLS master; mutual TLS
//! refusing a client certificate from another CA and accepting the right one; bad
//! TLS files stopping the master and the client with the file named. Certificates are
//! made with the `openssl` command in a temporary directory.

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

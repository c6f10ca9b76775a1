//! Certificate rotation without a restart: a TLS server built once from a certificate
//! and key serves a renewed pair, written over the same files, on its next
//! connection; a pair that does not load keeps the one before. Certificates are made
//! with the `openssl` command.

use mooncake_tls::load::certificates;
use mooncake_tls::reload::POLL;
use mooncake_tls::{client_config, server_config, Acceptor};
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

fn make(dir: &Path, name: &str) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(format!("{name}.key"))
        .arg("-out")
        .arg(format!("{name}.pem"))
        .args(["-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The certificate the server at `addr` presents to a new connection.
async fn presented(addr: std::net::SocketAddr, ca: &Path) -> CertificateDer<'static> {
    let cfg = client_config(ca, None).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let s = TlsConnector::from(cfg).connect(name, tcp).await.unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn copy_pair(dir: &Path, from: &str) {
    // The key first, then the certificate: in between the pair does not match.
    std::fs::copy(dir.join(format!("{from}.key")), dir.join("live.key")).unwrap();
    std::fs::copy(dir.join(format!("{from}.pem")), dir.join("live.pem")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_to_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make(d, "old");
    make(d, "new");
    // The client trusts both (pinned), so it sees whichever the server presents.
    let both = [
        std::fs::read(d.join("old.pem")).unwrap(),
        std::fs::read(d.join("new.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(d.join("both.pem"), both).unwrap();
    let ca = d.join("both.pem");
    let old = certificates("certificate", &d.join("old.pem")).unwrap()[0].clone();
    let new = certificates("certificate", &d.join("new.pem")).unwrap()[0].clone();

    copy_pair(d, "old");
    let acceptor =
        Acceptor::new(server_config(&d.join("live.pem"), &d.join("live.key"), None).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Arc::new(acceptor);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let a = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = a.accept(tcp).await {
                    let mut b = [0u8; 1];
                    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut b).await;
                }
            });
        }
    });

    assert!(
        presented(addr, &ca).await == old,
        "the certificate at start"
    );
    copy_pair(d, "new");
    tokio::time::sleep(POLL + std::time::Duration::from_millis(200)).await;
    assert!(
        presented(addr, &ca).await == new,
        "the renewed certificate, no restart"
    );

    // A key that does not load: the renewed pair stays in force.
    std::fs::write(d.join("live.key"), b"not a key").unwrap();
    tokio::time::sleep(POLL + std::time::Duration::from_millis(200)).await;
    assert!(
        presented(addr, &ca).await == new,
        "the last good certificate"
    );
}

/// `openssl` in `dir` with `args`.
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A CA (`<name>.pem`, `<name>.key`) and two leaves it signs: `<name>-srv` for
/// 127.0.0.1 and `<name>-cli` for a client.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
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
    for (leaf, ext) in [
        (
            "srv",
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "cli",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let leaf = format!("{name}-{leaf}");
        std::fs::write(dir.join(format!("{leaf}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{leaf}.key"),
                "-out",
                &format!("{leaf}.csr"),
                "-subj",
                &format!("/CN={leaf}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{leaf}.csr"),
                "-CA",
                &format!("{name}.pem"),
                "-CAkey",
                &format!("{name}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{leaf}.pem"),
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &format!("{leaf}.ext"),
            ],
        );
    }
}

/// Whether a client made from `cfg` gets the server's greeting: the server checks a
/// client certificate after the client's side of the handshake is done, so only
/// the first read tells a refused certificate.
async fn greeted(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> bool {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let Ok(mut s) = TlsConnector::from(cfg).connect(name, tcp).await else {
        return false;
    };
    let mut b = [0u8; 2];
    let read = tokio::io::AsyncReadExt::read_exact(&mut s, &mut b).await;
    read.is_ok() && &b == b"ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_ca_is_trusted_by_the_next_connection_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca1");
    make_ca(d, "ca2");
    let put = |from: &str, to: &str| std::fs::copy(d.join(from), d.join(to)).unwrap();
    // The server's files: its certificate and the CA its clients' must chain to.
    put("ca1-srv.key", "srv.key");
    put("ca1-srv.pem", "srv.pem");
    put("ca1.pem", "clients-ca.pem");
    // One client, configured once: the CA it trusts and its own certificate.
    put("ca1.pem", "trust.pem");
    put("ca1-cli.key", "me.key");
    put("ca1-cli.pem", "me.pem");

    let server = server_config(
        &d.join("srv.pem"),
        &d.join("srv.key"),
        Some(&d.join("clients-ca.pem")),
    )
    .unwrap();
    let acceptor = Arc::new(Acceptor::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let a = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = a.accept(tcp).await {
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut s, b"ok").await;
                    let _ = tokio::io::AsyncWriteExt::flush(&mut s).await;
                    let mut b = [0u8; 1];
                    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut b).await;
                }
            });
        }
    });
    let client = client_config(
        &d.join("trust.pem"),
        Some((&d.join("me.pem"), &d.join("me.key"))),
    )
    .unwrap();
    let old_client = |ca: &str, who: &str| {
        client_config(
            &d.join(format!("{ca}.pem")),
            Some((&d.join(format!("{who}.pem")), &d.join(format!("{who}.key")))),
        )
        .unwrap()
    };
    assert!(greeted(addr, client.clone()).await, "before the rotation");
    assert!(
        !greeted(addr, old_client("ca1", "ca2-cli")).await,
        "a client certificate of the next CA before the rotation"
    );

    // Everything moves to the new CA; neither side restarts.
    put("ca2.pem", "clients-ca.pem");
    put("ca2-srv.key", "srv.key");
    put("ca2-srv.pem", "srv.pem");
    put("ca2.pem", "trust.pem");
    put("ca2-cli.key", "me.key");
    put("ca2-cli.pem", "me.pem");
    tokio::time::sleep(POLL + std::time::Duration::from_millis(200)).await;
    assert!(
        greeted(addr, client.clone()).await,
        "the same client and server after the rotation"
    );
    assert!(
        !greeted(addr, old_client("ca2", "ca1-cli")).await,
        "a client certificate of the old CA after the rotation"
    );
    assert!(
        !greeted(addr, old_client("ca1", "ca1-cli")).await,
        "a client still trusting only the old CA"
    );

    // A CA file that does not parse: the CA before stays in force on both sides.
    std::fs::write(d.join("clients-ca.pem"), b"not a certificate").unwrap();
    std::fs::write(d.join("trust.pem"), b"not a certificate").unwrap();
    tokio::time::sleep(POLL + std::time::Duration::from_millis(200)).await;
    assert!(
        greeted(addr, client).await,
        "the last good CA files after a broken write"
    );
}

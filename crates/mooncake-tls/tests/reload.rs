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

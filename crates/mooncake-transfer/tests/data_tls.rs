//! TLS on the data port between real engines on loopback: TLS engines move bytes both
//! ways (with and without a token, with the CRC on), a peer whose certificate the CA
//! file does not hold is refused, and a plaintext engine against a TLS one (or the
//! reverse) fails at once with an error naming TLS. Certificates are made with the
//! `openssl` command in a temporary directory.

mod common;

use common::{engine_with, pattern, req};
use mooncake_common::auth::{Credential, TokenSet};
use mooncake_transfer::tcp::auth::{DataAuth, LocalVerifier};
use mooncake_transfer::tcp::tls::DataTls;
use mooncake_transfer::{Opcode, TransferConfig, TransferEngine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A directory removed at drop, holding self-signed certificates for 127.0.0.1.
struct Certs(PathBuf);

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Certs {
    fn new(tag: &str) -> Certs {
        let d = std::env::temp_dir().join(format!("mc-data-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Certs(d)
    }

    /// `<name>.pem` and `<name>.key`, as `openssl req -x509` makes them.
    fn make(&self, name: &str) {
        let o = Command::new("openssl")
            .current_dir(&self.0)
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(format!("{name}.key"))
            .arg("-out")
            .arg(format!("{name}.pem"))
            .args(["-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .output()
            .expect("run openssl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The engine TLS of certificate `name`, trusting the certificates in `ca`.
    fn tls(&self, name: &str, ca: &Path) -> DataTls {
        DataTls::new(
            &self.path(&format!("{name}.pem")),
            &self.path(&format!("{name}.key")),
            ca,
        )
        .expect("TLS files load")
    }
}

async fn engine(tls: Option<DataTls>, auth: Option<DataAuth>) -> Arc<TransferEngine> {
    engine_with(move |c: &mut TransferConfig| {
        c.tls = tls;
        if let Some(a) = auth {
            c.auth = a;
        }
        c.tcp.connect_timeout = Duration::from_secs(5);
        c.tcp.max_retries = 0;
    })
    .await
}

/// Registers a zeroed 4 MiB region on `e`; returns it (kept alive) and its address.
fn region(e: &TransferEngine) -> (Vec<u8>, u64) {
    let mut r = vec![0u8; 4 << 20];
    let base = r.as_mut_ptr() as u64;
    unsafe { e.register_memory(base as usize, r.len()) }.unwrap();
    (r, base)
}

/// Writes 3 MiB + 5 bytes (several slices) and a 4 KiB object from `from` into
/// `to`'s region and reads both back.
async fn round_trip(from: &TransferEngine, to: &TransferEngine, base: u64, seed: u64) {
    for (len, at) in [((3 << 20) + 5, 0u64), (4096, 3 << 20 | 4096)] {
        let data = pattern(len, seed);
        let r = unsafe {
            from.transfer(&[req(Opcode::Write, &data, to, base + at)])
                .await
        };
        assert!(r[0].is_ok(), "write {len}: {:?}", r[0]);
        let back = vec![0u8; len];
        let r = unsafe {
            from.transfer(&[req(Opcode::Read, &back, to, base + at)])
                .await
        };
        assert!(r[0].is_ok(), "read {len}: {:?}", r[0]);
        assert!(back == data, "read {len} bytes back as written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_engines_move_bytes_with_and_without_a_token() {
    let c = Certs::new("moves");
    c.make("a");
    let ca = c.path("a.pem");
    let target = engine(Some(c.tls("a", &ca)), None).await;
    let (_mem, base) = region(&target);
    let peer = engine(Some(c.tls("a", &ca)), None).await;
    round_trip(&peer, &target, base, 1).await;

    // With a token on both sides: the proof runs inside the TLS stream.
    let tokens = TokenSet::parse("cluster:tok-root\n", "test").unwrap();
    let cred = || Credential::from_token("tok-root", "test token").unwrap();
    let auth = DataAuth::new(cred(), Arc::new(LocalVerifier(tokens)));
    let target = engine(Some(c.tls("a", &ca)), Some(auth)).await;
    let (_mem2, base2) = region(&target);
    let peer = engine(
        Some(c.tls("a", &ca)),
        Some(DataAuth {
            credential: Some(cred()),
            verifier: None,
        }),
    )
    .await;
    round_trip(&peer, &target, base2, 2).await;

    // With the CRC on the initiator (staged and checked on the listener).
    let crc_peer = engine_with(|cfg: &mut TransferConfig| {
        cfg.tls = Some(c.tls("a", &ca));
        cfg.tcp.crc = true;
        cfg.auth.credential = Some(cred());
    })
    .await;
    round_trip(&crc_peer, &target, base2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_ca_file_does_not_hold_is_refused() {
    let c = Certs::new("foreign");
    c.make("a");
    c.make("b");
    let target = engine(Some(c.tls("a", &c.path("a.pem"))), None).await;
    let (mem, base) = region(&target);
    // `b` trusts `a` (so it would accept the listener) but presents its own
    // certificate, which the listener's CA file does not hold.
    let peer = engine(Some(c.tls("b", &c.path("a.pem"))), None).await;
    let data = pattern(4096, 9);
    let r = unsafe {
        peer.transfer(&[req(Opcode::Write, &data, &target, base)])
            .await
    };
    let e = r[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("TLS") || e.contains("certificate"), "{e}");
    assert!(mem[..4096].iter().all(|&b| b == 0), "nothing written");
}

/// A transfer from `from` to `to` fails within the connect timeout, naming TLS.
async fn refused_naming_tls(from: &TransferEngine, to: &TransferEngine, base: u64, mem: &[u8]) {
    let data = pattern(4096, 7);
    let t = Instant::now();
    let r = unsafe { from.transfer(&[req(Opcode::Write, &data, to, base)]).await };
    let e = r[0].as_ref().expect_err("a mismatched transfer fails");
    let msg = e.to_string();
    assert!(msg.contains("TLS"), "{msg}");
    assert!(msg.contains("MOONCAKE_TRANSFER_TLS"), "{msg}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        t.elapsed()
    );
    assert!(mem[..4096].iter().all(|&b| b == 0), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_peers_refuse_each_other_by_name() {
    let c = Certs::new("mismatch");
    c.make("a");
    let ca = c.path("a.pem");

    // A plaintext initiator against a TLS data port.
    let tls_target = engine(Some(c.tls("a", &ca)), None).await;
    let (mem, base) = region(&tls_target);
    let plain = engine(None, None).await;
    refused_naming_tls(&plain, &tls_target, base, &mem).await;

    // A TLS initiator against a plaintext data port, without and with a token there.
    let plain_target = engine(None, None).await;
    let (mem, base) = region(&plain_target);
    let tls_peer = engine(Some(c.tls("a", &ca)), None).await;
    refused_naming_tls(&tls_peer, &plain_target, base, &mem).await;

    let tokens = TokenSet::parse("cluster:tok-root\n", "test").unwrap();
    let cred = Credential::from_token("tok-root", "test token").unwrap();
    let auth = DataAuth::new(cred, Arc::new(LocalVerifier(tokens)));
    let plain_target = engine(None, Some(auth)).await;
    let (mem, base) = region(&plain_target);
    refused_naming_tls(&tls_peer, &plain_target, base, &mem).await;
}

#[test]
fn bad_files_are_named() {
    let c = Certs::new("bad");
    c.make("a");
    let missing = c.path("nope.pem");
    let e = DataTls::new(&missing, &c.path("a.key"), &c.path("a.pem")).unwrap_err();
    assert!(e.to_string().contains("nope.pem"), "{e}");
    let e = DataTls::new(&c.path("a.pem"), &c.path("a.pem"), &c.path("a.pem")).unwrap_err();
    assert!(e.to_string().contains("a.pem"), "{e}");
}

//! Authentication on the data port between real engines on loopback: a listener with a
//! verifier serves only peers that proved a token (transfers, descriptors and the RDMA
//! transport's control exchange alike), and a raw socket gets no byte of memory.

mod common;

use common::{engine_with, pattern, req};
use mooncake_common::auth::{Credential, TokenSet};
use mooncake_common::ErrorCode;
use mooncake_transfer::tcp::auth::{DataAuth, LocalVerifier};
use mooncake_transfer::tcp::describe::{control, describe};
use mooncake_transfer::tcp::frame::{status, Header, Op, HEADER_LEN};
use mooncake_transfer::{Opcode, TransferConfig, TransferEngine, TransferError};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

fn tokens() -> TokenSet {
    TokenSet::parse("alpha:tok-alpha\ncluster:tok-root\n", "test").unwrap()
}

fn cred(t: &str) -> Credential {
    Credential::from_token(t, "test token").unwrap()
}

/// A serving engine that checks peers against `tokens()` and proves `tok-root`.
async fn guarded() -> Arc<TransferEngine> {
    engine_with(|c: &mut TransferConfig| {
        c.auth = DataAuth::new(cred("tok-root"), Arc::new(LocalVerifier(tokens())));
        c.tcp.auth_timeout = Duration::from_millis(500);
    })
    .await
}

async fn peer(token: Option<&str>) -> Arc<TransferEngine> {
    let credential = token.map(cred);
    engine_with(move |c: &mut TransferConfig| c.auth.credential = credential).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proved_peer_moves_bytes_and_others_are_refused_by_name() {
    let target = guarded().await;
    let mut region = vec![0u8; 1 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { target.register_memory(base as usize, region.len()) }.unwrap();

    // The cluster tenant: served anywhere (a tenant's peer needs grants, see
    // `data_grants.rs`).
    let good = peer(Some("tok-root")).await;
    let data = pattern(300_000, 3);
    let r = unsafe {
        good.transfer(&[req(Opcode::Write, &data, &target, base)])
            .await
    };
    assert!(r[0].is_ok(), "{:?}", r[0]);
    let mut back = vec![0u8; data.len()];
    let r = unsafe {
        good.transfer(&[req(Opcode::Read, &back, &target, base)])
            .await
    };
    assert!(r[0].is_ok(), "{:?}", r[0]);
    back.truncate(data.len());
    assert_eq!(back, data);
    assert_eq!(&region[..data.len()], &data[..]);

    for (token, says) in [(None, "no token"), (Some("tok-wrong"), "refused the token")] {
        let stranger = peer(token).await;
        let mut got = vec![0u8; 4096];
        let r = unsafe {
            stranger
                .transfer(&[req(Opcode::Read, &got, &target, base)])
                .await
        };
        let e = r[0].clone().unwrap_err();
        assert!(matches!(e, TransferError::Unauthenticated(_)), "{e}");
        assert_eq!(e.code(), ErrorCode::Unauthenticated);
        assert!(e.to_string().contains(says), "{e}");
        assert!(got.iter().all(|&b| b == 0), "bytes reached a stranger");
        let junk = vec![0xeeu8; 4096];
        let r = unsafe {
            stranger
                .transfer(&[req(Opcode::Write, &junk, &target, base)])
                .await
        };
        assert!(r[0].is_err());
        got.clear();
    }
    assert_eq!(
        &region[..data.len()],
        &data[..],
        "a stranger changed memory"
    );

    // Descriptors and the RDMA transport's control exchange need the proof too.
    let ep = target.endpoint();
    let e = describe(&ep, Duration::from_secs(2), None)
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::Unauthenticated(_)), "{e}");
    let d = describe(&ep, Duration::from_secs(2), Some(&cred("tok-alpha")))
        .await
        .unwrap();
    assert_eq!(d.buffers.len(), 1);
    target.set_control_handler(Arc::new(|req: &[u8]| Ok(req.to_vec())));
    let e = control(&ep, b"{\"qps\":[]}", Duration::from_secs(2), None)
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::Unauthenticated(_)), "{e}");
    let e = control(&ep, b"{}", Duration::from_secs(2), Some(&cred("tok-wrong")))
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::Unauthenticated(_)), "{e}");
    let echoed = control(&ep, b"{}", Duration::from_secs(2), Some(&cred("tok-alpha")))
        .await
        .unwrap();
    assert_eq!(echoed, b"{}");
    drop(region);
}

fn read_frame(s: &mut std::net::TcpStream) -> Option<(Header, Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).ok()?;
    let h = Header::decode(&h).ok()?;
    let mut body = vec![0u8; h.payload_len() as usize];
    s.read_exact(&mut body).ok()?;
    Some((h, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_socket_gets_a_challenge_and_nothing_else() {
    let target = guarded().await;
    let mut region = pattern(1 << 16, 9);
    let base = region.as_mut_ptr() as u64;
    unsafe { target.register_memory(base as usize, region.len()) }.unwrap();
    let ep = target.endpoint();
    let secret = region.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // A Read with no proof: a challenge, then a refusal, then the end.
        let mut s = std::net::TcpStream::connect(&ep).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&Header::new(Op::Read, 1, base, 4096).encode())
            .unwrap();
        let (c, _) = read_frame(&mut s).expect("a challenge");
        assert_eq!(c.op, Op::Challenge);
        let (r, body) = read_frame(&mut s).expect("a refusal");
        assert_eq!((r.op, r.status), (Op::ReadData, status::UNAUTHENTICATED));
        assert!(body.is_empty());
        assert!(read_frame(&mut s).is_none(), "still open after a refusal");

        // A Write with no proof changes nothing.
        let mut s = std::net::TcpStream::connect(&ep).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let junk = vec![0u8; 4096];
        let _ = s.write_all(&Header::new(Op::Write, 1, base, 4096).encode());
        let _ = s.write_all(&junk);
        let (c, _) = read_frame(&mut s).expect("a challenge");
        assert_eq!(c.op, Op::Challenge);
        let (r, _) = read_frame(&mut s).expect("a refusal");
        assert_eq!((r.op, r.status), (Op::WriteAck, status::UNAUTHENTICATED));

        // A forged proof (right length, wrong bytes): refused.
        let mut s = std::net::TcpStream::connect(&ep).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&Header::new(Op::Hello, 1, 0, 0).encode())
            .unwrap();
        let (c, _) = read_frame(&mut s).expect("a challenge");
        assert_eq!(c.op, Op::Challenge);
        let mut f = Header::new(Op::Proof, 0, 0, 48).encode().to_vec();
        f.extend_from_slice(&[7u8; 48]);
        s.write_all(&f).unwrap();
        let (r, _) = read_frame(&mut s).expect("a refusal");
        assert_eq!((r.op, r.status), (Op::HelloAck, status::UNAUTHENTICATED));
        assert!(read_frame(&mut s).is_none());

        // Silence: closed after the authentication timeout.
        let mut s = std::net::TcpStream::connect(&ep).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (c, _) = read_frame(&mut s).expect("a challenge");
        assert_eq!(c.op, Op::Challenge);
        let t = std::time::Instant::now();
        assert!(read_frame(&mut s).is_none());
        t.elapsed()
    })
    .await
    .unwrap();
    assert!(outcome < Duration::from_secs(5), "never closed");
    assert_eq!(region, secret, "a stranger's write landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_verifier_nothing_changes_even_for_a_peer_with_a_token() {
    let open = engine_with(|_| {}).await;
    let mut region = vec![0u8; 1 << 16];
    let base = region.as_mut_ptr() as u64;
    unsafe { open.register_memory(base as usize, region.len()) }.unwrap();
    for token in [None, Some("tok-alpha")] {
        let p = peer(token).await;
        let data = pattern(10_000, 1);
        let r = unsafe { p.transfer(&[req(Opcode::Write, &data, &open, base)]).await };
        assert!(r[0].is_ok(), "{:?}", r[0]);
        assert_eq!(&region[..data.len()], &data[..]);
    }
    // A raw socket is answered at once, with no challenge first.
    let ep = open.endpoint();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&ep).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&Header::new(Op::Hello, 1, 0, 0).encode())
            .unwrap();
        let (h, _) = read_frame(&mut s).unwrap();
        assert_eq!((h.op, h.status), (Op::HelloAck, status::OK));
    })
    .await
    .unwrap();
    region[0] = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_its_crc_never_lands() {
    let open = engine_with(|_| {}).await;
    let mut region = pattern(1 << 16, 4);
    let base = region.as_mut_ptr() as u64;
    unsafe { open.register_memory(base as usize, region.len()) }.unwrap();
    let before = region.clone();
    let ep = open.endpoint();
    let good = pattern(8192, 5);
    let good2 = good.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&ep).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let bad = vec![0x5au8; 8192];
        let h = Header::new(Op::Write, 1, base, 8192).with_crc(crc32c::crc32c(&good2));
        s.write_all(&h.encode()).unwrap();
        s.write_all(&bad).unwrap();
        let (a, _) = read_frame(&mut s).unwrap();
        assert_eq!((a.op, a.status), (Op::WriteAck, status::CHECKSUM));
        // The same connection still works, and a payload whose CRC holds lands.
        let h = Header::new(Op::Write, 2, base, 8192).with_crc(crc32c::crc32c(&good2));
        s.write_all(&h.encode()).unwrap();
        s.write_all(&good2).unwrap();
        let (a, _) = read_frame(&mut s).unwrap();
        assert_eq!((a.op, a.status), (Op::WriteAck, status::OK));
    })
    .await
    .unwrap();
    assert_eq!(&region[..8192], &good[..]);
    assert_eq!(&region[8192..], &before[8192..]);
    region[0] ^= 0;
}

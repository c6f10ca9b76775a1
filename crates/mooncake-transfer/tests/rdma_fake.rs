//! The RDMA transport's logic against the in-memory fake verbs: queue pairs set up
//! through a handshake over a real engine's TCP control connection, a large request
//! sliced across every NIC pair, failed work requests retried on another pair.
#![cfg(feature = "rdma")]

mod common;

use common::{engine, pattern};
use mooncake_transfer::rdma::fake::{FakeFabric, FakeVerbs};
use mooncake_transfer::rdma::qp::QpState;
use mooncake_transfer::rdma::transport::{ConnectRequest, ConnectResponse, RdmaTransport};
use mooncake_transfer::tcp::describe::control;
use mooncake_transfer::{Opcode, TransferError};
use std::sync::Arc;
use std::time::Duration;

fn nics(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("fake{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_over_tcp_then_striped_rdma_with_retry() {
    let fabric = FakeFabric::default();
    let names = ["fake0", "fake1"];
    let va = Arc::new(FakeVerbs::new(&fabric, &names));
    let vb = Arc::new(FakeVerbs::new(&fabric, &names));
    let ta = RdmaTransport::new(va.clone(), &nics(2), 64 << 10).unwrap();
    let tb = Arc::new(RdmaTransport::new(vb.clone(), &nics(2), 64 << 10).unwrap());

    // B's memory is registered on both of its NICs; its engine answers the handshake.
    let mut remote = vec![0u8; 8 << 20];
    let rbase = remote.as_mut_ptr() as u64;
    tb.register(rbase, remote.len() as u64).unwrap();
    let eb = engine().await;
    let tbh = tb.clone();
    eb.set_control_handler(Arc::new(move |req: &[u8]| {
        let req: ConnectRequest = serde_json::from_slice(req).map_err(|e| e.to_string())?;
        let resp = tbh.accept(&req).map_err(|e| e.to_string())?;
        serde_json::to_vec(&resp).map_err(|e| e.to_string())
    }));

    let data = pattern(5 << 20 | 77, 1);
    let mut back = vec![0u8; data.len()];
    ta.register(data.as_ptr() as u64, data.len() as u64)
        .unwrap();
    ta.register(back.as_mut_ptr() as u64, back.len() as u64)
        .unwrap();

    let ep = eb.endpoint();
    let peer = ta
        .connect(eb.segment_name(), 2, |req| async move {
            let body = serde_json::to_vec(&req).unwrap();
            let resp = control(&ep, &body, Duration::from_secs(5), None).await?;
            serde_json::from_slice::<ConnectResponse>(&resp)
                .map_err(|e| TransferError::Rdma(e.to_string()))
        })
        .await
        .unwrap();
    let states = RdmaTransport::<FakeVerbs>::pair_states(&peer);
    assert_eq!(states.len(), 2);
    assert!(states.values().all(|s| *s == QpState::Rts));

    ta.transfer(
        &peer,
        Opcode::Write,
        data.as_ptr() as u64,
        rbase + 1000,
        data.len() as u64,
    )
    .await
    .unwrap();
    assert_eq!(
        crc32c::crc32c(&remote[1000..1000 + data.len()]),
        crc32c::crc32c(&data)
    );

    // Two work requests on NIC 0 fail; they are retried on the other pair.
    va.fail_next(0, 2);
    ta.transfer(
        &peer,
        Opcode::Read,
        back.as_mut_ptr() as u64,
        rbase + 1000,
        back.len() as u64,
    )
    .await
    .unwrap();
    back = std::hint::black_box(back);
    assert_eq!(crc32c::crc32c(&back), crc32c::crc32c(&data));
    let states = RdmaTransport::<FakeVerbs>::pair_states(&peer);
    assert_eq!(states.values().filter(|s| **s == QpState::Error).count(), 1);

    // Out-of-region access is refused before anything is posted.
    let e = ta
        .transfer(
            &peer,
            Opcode::Write,
            data.as_ptr() as u64,
            rbase + (8 << 20) - 10,
            100,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::OutOfRegion { .. }), "{e}");
    let e = ta
        .transfer(&peer, Opcode::Write, 0x1000, rbase, 100)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("registered local memory"), "{e}");
    remote[0] ^= 0;
}

#[test]
fn no_device_is_a_clear_error() {
    let e = mooncake_transfer::rdma::probe("").unwrap_err();
    assert!(e.to_string().contains("no RDMA device"), "{e}");
    let fabric = FakeFabric::default();
    let v = Arc::new(FakeVerbs::new(&fabric, &["fake0"]));
    assert!(RdmaTransport::new(v.clone(), &[], 65536).is_err());
    let e = RdmaTransport::new(v, &["mlx5_0".to_string()], 65536)
        .err()
        .unwrap();
    assert!(e.to_string().contains("mlx5_0"), "{e}");
}

#[tokio::test]
async fn engine_with_protocol_rdma_fails_clearly_or_falls_back() {
    let mut cfg = mooncake_transfer::TransferConfig::new("127.0.0.1");
    cfg.protocol = mooncake_common::config::Protocol::Rdma;
    let e = mooncake_transfer::TransferEngine::start(cfg.clone())
        .await
        .err()
        .expect("no RDMA here");
    assert!(e.to_string().contains("RDMA"), "{e}");
    cfg.rdma_fallback_to_tcp = true;
    let eng = mooncake_transfer::TransferEngine::start(cfg).await.unwrap();
    assert_eq!(eng.descriptor().protocol, "tcp");
}

/// Through the engine API: both engines speak RDMA (fake NICs), so registered local
/// memory moves by RDMA work requests (the TCP listener sees no payload); unregistered
/// local memory falls back to TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_routes_registered_memory_over_rdma_and_the_rest_over_tcp() {
    use mooncake_transfer::rdma::RdmaEngine;
    use mooncake_transfer::{TransferConfig, TransferEngine, TransferRequest};
    let fabric = FakeFabric::default();
    let start = |names: &'static [&'static str]| {
        let v = Arc::new(FakeVerbs::new(&fabric, names));
        let t = RdmaTransport::new(v, &nics(names.len()), 64 << 10).unwrap();
        TransferEngine::start_with_rdma(
            TransferConfig::new("127.0.0.1"),
            Arc::new(RdmaEngine::new(t)),
        )
    };
    let a = start(&["fake0", "fake1"]).await.unwrap();
    let b = start(&["fake0"]).await.unwrap();
    let mut region = vec![0u8; 8 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    assert_eq!(a.descriptor().protocol, "rdma");
    assert_eq!(a.descriptor().buffers[0].rkeys.len(), 2, "one rkey per NIC");

    let data = pattern(3 << 20 | 5, 7);
    unsafe { b.register_memory(data.as_ptr() as usize, data.len()) }.unwrap();
    let r = |op, local: &[u8], remote| TransferRequest {
        opcode: op,
        local_addr: local.as_ptr() as usize,
        length: local.len(),
        target: a.segment_name().into(),
        target_endpoint: None,
        remote_addr: remote,
        grant: None,
    };
    let res = unsafe { b.transfer(&[r(Opcode::Write, &data, base + 4096)]).await };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert_eq!(
        crc32c::crc32c(&region[4096..4096 + data.len()]),
        crc32c::crc32c(&data)
    );
    assert_eq!(
        a.metrics().bytes_served_in,
        0,
        "payload went over RDMA, not TCP"
    );

    // An unregistered local buffer goes over TCP instead.
    let other = pattern(1 << 20, 9);
    let res = unsafe { b.transfer(&[r(Opcode::Write, &other, base)]).await };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert_eq!(a.metrics().bytes_served_in, other.len() as u64);
    assert_eq!(&region[..other.len()], &other[..]);
}

/// With authentication on, the queue-pair exchange (which hands out the keys to the
/// registered memory) happens only after the peer proved a token: a peer without one
/// never gets a queue pair, so no RDMA work request of its can reach the memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_pair_exchange_needs_a_proof_of_a_token() {
    use mooncake_common::auth::{Credential, TokenSet};
    use mooncake_transfer::rdma::RdmaEngine;
    use mooncake_transfer::tcp::auth::LocalVerifier;
    use mooncake_transfer::{TransferConfig, TransferEngine, TransferRequest};
    let fabric = FakeFabric::default();
    let cred = |t: &str| Credential::from_token(t, "test").unwrap();
    let start = |token: Option<&'static str>, verify: bool| {
        let v = Arc::new(FakeVerbs::new(&fabric, &["fake0"]));
        let t = RdmaTransport::new(v, &nics(1), 64 << 10).unwrap();
        let mut cfg = TransferConfig::new("127.0.0.1");
        cfg.auth.credential = token.map(cred);
        if verify {
            let tokens = TokenSet::parse("tok-rdma\n", "test").unwrap();
            cfg.auth.verifier = Some(Arc::new(LocalVerifier(tokens)));
        }
        TransferEngine::start_with_rdma(cfg, Arc::new(RdmaEngine::new(t)))
    };
    let a = start(Some("tok-rdma"), true).await.unwrap();
    let mut region = vec![0u8; 4 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    let data = pattern(1 << 20, 3);
    for (token, ok) in [
        (None, false),
        (Some("tok-wrong"), false),
        (Some("tok-rdma"), true),
    ] {
        let b = start(token, false).await.unwrap();
        unsafe { b.register_memory(data.as_ptr() as usize, data.len()) }.unwrap();
        let req = TransferRequest {
            opcode: Opcode::Write,
            local_addr: data.as_ptr() as usize,
            length: data.len(),
            target: a.segment_name().into(),
            target_endpoint: Some(a.endpoint()),
            remote_addr: base,
            grant: None,
        };
        let res = unsafe { b.transfer(&[req]).await };
        assert_eq!(res[0].is_ok(), ok, "{token:?}: {:?}", res[0]);
        if !ok {
            assert!(
                region.iter().all(|&x| x == 0),
                "{token:?} reached the memory"
            );
        }
    }
    assert_eq!(&region[..data.len()], &data[..]);
    assert_eq!(a.metrics().bytes_served_in, 0, "went over RDMA");
}

//! Lanes between real engines on loopback: small transfers the calling thread drives
//! on a blocking socket of its own, with the pooled path's bytes, checks and answers.

mod common;

use common::{engine, engine_with, pattern, req};
use mooncake_common::auth::{Credential, TokenSet};
use mooncake_common::grant::{new_secret, now_ms, Grant};
use mooncake_transfer::tcp::auth::{DataAuth, LocalVerifier};
use mooncake_transfer::tcp::lane::CallerMayBlock;
use mooncake_transfer::{Opcode, TransferConfig, TransferEngine, TransferError};
use std::sync::Arc;
use std::time::Duration;

/// A target engine with `len` bytes of registered memory; returns its base address.
fn region(target: &TransferEngine, len: usize) -> (Vec<u8>, u64) {
    let mut mem = vec![0u8; len];
    let base = mem.as_mut_ptr() as u64;
    unsafe { target.register_memory(base as usize, len) }.unwrap();
    (mem, base)
}

fn idle_lanes(initiator: &TransferEngine, target: &TransferEngine) -> usize {
    initiator
        .debug_peer(target.segment_name())
        .map_or(0, |p| p.lanes.idle())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_writes_and_reads_the_bytes_and_is_kept_for_the_next_call() {
    let target = engine().await;
    let (mem, base) = region(&target, 1 << 20);
    let me = engine().await;
    let _mark = CallerMayBlock::enter();

    let data = pattern(4096, 1);
    let w = req(Opcode::Write, &data, &target, base + 8192);
    let op = unsafe { me.lane_start(&w) }
        .await
        .expect("a write this small takes a lane");
    unsafe { op.finish() }.expect("the write lands");
    assert_eq!(&mem[8192..8192 + 4096], &data[..]);
    assert_eq!(idle_lanes(&me, &target), 1);

    // The same lane serves the read (no second lane is opened).
    let back = vec![0u8; 4096];
    let r = req(Opcode::Read, &back, &target, base + 8192);
    let op = unsafe { me.lane_start(&r) }
        .await
        .expect("a read this small takes a lane");
    assert_eq!(idle_lanes(&me, &target), 0, "the lane is out while in use");
    unsafe { op.finish() }.expect("the read comes back");
    assert_eq!(back, data);
    assert_eq!(idle_lanes(&me, &target), 1);

    // The largest lane transfer (one slice), both ways.
    let max = TransferConfig::new("127.0.0.1").tcp.slice_size;
    let big = pattern(max, 2);
    let op = unsafe { me.lane_start(&req(Opcode::Write, &big, &target, base)) }
        .await
        .unwrap();
    unsafe { op.finish() }.unwrap();
    let back = vec![0u8; max];
    let op = unsafe { me.lane_start(&req(Opcode::Read, &back, &target, base)) }
        .await
        .unwrap();
    unsafe { op.finish() }.unwrap();
    assert_eq!(back, big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_small_transfers_from_a_marked_thread_to_another_engine_take_lanes() {
    let target = engine().await;
    let (_mem, base) = region(&target, 1 << 20);
    let me = engine().await;
    let small = vec![0u8; 4096];
    // No mark: the pooled path.
    assert!(
        unsafe { me.lane_start(&req(Opcode::Read, &small, &target, base)) }
            .await
            .is_none()
    );
    let _mark = CallerMayBlock::enter();
    let large = vec![0u8; TransferConfig::new("127.0.0.1").tcp.slice_size + 1];
    assert!(
        unsafe { me.lane_start(&req(Opcode::Read, &large, &target, base)) }
            .await
            .is_none(),
        "more than one slice goes on the pooled path"
    );
    // Its own segment: copied locally, never over a socket.
    let (_own, own_base) = region(&me, 1 << 16);
    assert!(
        unsafe { me.lane_start(&req(Opcode::Read, &small, &me, own_base)) }
            .await
            .is_none()
    );
    // An invalid request (zero length) is left to the pooled path's error.
    let mut zero = req(Opcode::Read, &small, &target, base);
    zero.length = 0;
    assert!(unsafe { me.lane_start(&zero) }.await.is_none());
    // A peer that cannot be resolved: no lane (the pooled path reports why).
    let mut nowhere = req(Opcode::Read, &small, &target, base);
    nowhere.target = "127.0.0.1:1".into();
    assert!(unsafe { me.lane_start(&nowhere) }.await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_lane_transfer_is_the_configured_slice() {
    let target = engine().await;
    let (mem, base) = region(&target, 1 << 20);
    let slice = 256 << 10;
    let me = engine_with(|c| c.tcp.slice_size = slice).await;
    let _mark = CallerMayBlock::enter();
    let one = pattern(slice, 3);
    let op = unsafe { me.lane_start(&req(Opcode::Write, &one, &target, base)) }
        .await
        .expect("one slice takes a lane");
    unsafe { op.finish() }.unwrap();
    assert_eq!(&mem[..slice], &one[..]);
    // One byte more is two slices: the pooled path stripes them.
    let two = pattern(slice + 1, 4);
    assert!(
        unsafe { me.lane_start(&req(Opcode::Write, &two, &target, base)) }
            .await
            .is_none()
    );
    let r = unsafe { me.transfer(&[req(Opcode::Write, &two, &target, base)]) }.await;
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
    assert_eq!(&mem[..slice + 1], &two[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_back_as_the_pooled_path_gets_them_and_the_lane_stays_usable() {
    let target = engine().await;
    let (_mem, base) = region(&target, 1 << 20);
    let me = engine().await;
    let _mark = CallerMayBlock::enter();
    // Outside the registered memory.
    let buf = vec![0u8; 4096];
    let op = unsafe { me.lane_start(&req(Opcode::Read, &buf, &target, base + (2 << 20))) }
        .await
        .unwrap();
    let e = unsafe { op.finish() }.unwrap_err();
    assert!(matches!(e, TransferError::OutOfRegion { .. }), "{e}");
    let pooled = unsafe {
        me.transfer(&[req(Opcode::Read, &buf, &target, base + (2 << 20))])
            .await
    };
    assert!(matches!(pooled[0], Err(TransferError::OutOfRegion { .. })));
    // The refused request was answered in full: the lane is back and works.
    assert_eq!(idle_lanes(&me, &target), 1);
    let op = unsafe { me.lane_start(&req(Opcode::Read, &buf, &target, base)) }
        .await
        .unwrap();
    unsafe { op.finish() }.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_the_peer_closed_while_idle_is_replaced() {
    let target = engine_with(|c: &mut TransferConfig| {
        c.tcp.idle_timeout = Duration::from_millis(200);
    })
    .await;
    let (_mem, base) = region(&target, 1 << 20);
    let me = engine().await;
    let _mark = CallerMayBlock::enter();
    let data = pattern(4096, 5);
    let op = unsafe { me.lane_start(&req(Opcode::Write, &data, &target, base)) }
        .await
        .unwrap();
    unsafe { op.finish() }.unwrap();
    assert_eq!(idle_lanes(&me, &target), 1);
    // The listener closes the idle connection; the next call notices before sending.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let back = vec![0u8; 4096];
    let op = unsafe { me.lane_start(&req(Opcode::Read, &back, &target, base)) }
        .await
        .expect("a fresh lane");
    unsafe { op.finish() }.expect("read on the fresh lane");
    assert_eq!(back, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_lane_carries_its_grant_and_is_refused_without_one() {
    let tokens = TokenSet::parse("alpha:tok-alpha\ncluster:tok-root\n", "test").unwrap();
    let cred = |t: &str| Credential::from_token(t, "test token").unwrap();
    let root = cred("tok-root");
    let target = engine_with(move |c: &mut TransferConfig| {
        c.auth = DataAuth::new(root, Arc::new(LocalVerifier(tokens)));
    })
    .await;
    let (_mem, base) = region(&target, 1 << 20);
    let secret = new_secret();
    target.grant_keys().set(target.segment_name(), Some(secret));
    let alpha_cred = Some(cred("tok-alpha"));
    let alpha = engine_with(move |c: &mut TransferConfig| c.auth.credential = alpha_cred).await;
    let _mark = CallerMayBlock::enter();

    let data = pattern(4096, 9);
    // No grant: refused, as on a pooled connection.
    let op = unsafe { alpha.lane_start(&req(Opcode::Write, &data, &target, base)) }
        .await
        .expect("the lane opens (the token is valid)");
    let e = unsafe { op.finish() }.unwrap_err();
    assert!(matches!(e, TransferError::Forbidden(_)), "{e}");

    let grant: Arc<Vec<u8>> = Grant {
        segment: target.segment_name().to_string(),
        addr: base,
        len: 8192,
        generation: 1,
        expires_ms: now_ms() + 60_000,
    }
    .sign(&secret, "alpha")
    .unwrap()
    .into();
    let mut w = req(Opcode::Write, &data, &target, base);
    w.grant = Some(grant.clone());
    let op = unsafe { alpha.lane_start(&w) }.await.unwrap();
    unsafe { op.finish() }.expect("granted write");
    let back = vec![0u8; 4096];
    let mut r = req(Opcode::Read, &back, &target, base);
    r.grant = Some(grant.clone());
    let op = unsafe { alpha.lane_start(&r) }.await.unwrap();
    unsafe { op.finish() }.expect("granted read");
    assert_eq!(back, data);
    // Past the grant: refused even on a lane that carried it.
    let mut r = req(Opcode::Read, &back, &target, base + 8192);
    r.grant = Some(grant);
    let op = unsafe { alpha.lane_start(&r) }.await.unwrap();
    let e = unsafe { op.finish() }.unwrap_err();
    assert!(matches!(e, TransferError::Forbidden(_)), "{e}");
}

//! Tenant scoping on the data port between real engines on loopback: a peer proved
//! by a tenant other than `cluster` reads and writes only inside allocations it holds
//! a grant for, signed with the segment's current secret for that tenant; the
//! `cluster` tenant is served anywhere.

mod common;

use common::{engine_with, pattern, req};
use mooncake_common::auth::{Credential, TokenSet};
use mooncake_common::grant::{new_secret, now_ms, Grant, SECRET_LEN};
use mooncake_common::ErrorCode;
use mooncake_transfer::tcp::auth::{DataAuth, LocalVerifier};
use mooncake_transfer::{Opcode, TransferConfig, TransferEngine, TransferError, TransferRequest};
use std::sync::Arc;

fn tokens() -> TokenSet {
    TokenSet::parse("alpha:tok-alpha\nbeta:tok-beta\ncluster:tok-root\n", "test").unwrap()
}

fn cred(t: &str) -> Credential {
    Credential::from_token(t, "test token").unwrap()
}

async fn guarded() -> Arc<TransferEngine> {
    engine_with(|c: &mut TransferConfig| {
        c.auth = DataAuth::new(cred("tok-root"), Arc::new(LocalVerifier(tokens())));
        // Small slices: one grant covers many requests on a connection.
        c.tcp.slice_size = 16 << 10;
    })
    .await
}

async fn peer(token: &str) -> Arc<TransferEngine> {
    let credential = Some(cred(token));
    engine_with(move |c: &mut TransferConfig| c.auth.credential = credential).await
}

fn grant(
    target: &TransferEngine,
    secret: &[u8; SECRET_LEN],
    tenant: &str,
    addr: u64,
    len: u64,
) -> Arc<Vec<u8>> {
    Grant {
        segment: target.segment_name().to_string(),
        addr,
        len,
        generation: 1,
        expires_ms: now_ms() + 60_000,
    }
    .sign(secret, tenant)
    .unwrap()
    .into()
}

fn with(mut r: TransferRequest, g: &Arc<Vec<u8>>) -> TransferRequest {
    r.grant = Some(g.clone());
    r
}

fn forbidden(r: &Result<(), TransferError>) {
    let e = r.clone().unwrap_err();
    assert!(matches!(e, TransferError::Forbidden(_)), "{e}");
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reaches_only_what_it_was_granted() {
    let target = guarded().await;
    let mut region = vec![0u8; 1 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { target.register_memory(base as usize, region.len()) }.unwrap();
    let secret = new_secret();
    target.grant_keys().set(target.segment_name(), Some(secret));
    // Alpha's allocation: the first 256 KiB. The rest belongs to others.
    let alloc = 256 << 10;
    let g_alpha = grant(&target, &secret, "alpha", base, alloc);

    let alpha = peer("tok-alpha").await;
    let data = pattern(200_000, 3);
    let r = unsafe {
        alpha
            .transfer(&[with(req(Opcode::Write, &data, &target, base), &g_alpha)])
            .await
    };
    assert!(r[0].is_ok(), "{:?}", r[0]);
    let back = vec![0u8; data.len()];
    let r = unsafe {
        alpha
            .transfer(&[with(req(Opcode::Read, &back, &target, base), &g_alpha)])
            .await
    };
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(back, data);

    // Someone else's bytes beyond the allocation.
    let theirs = pattern(4096, 8);
    region[alloc as usize..alloc as usize + 4096].copy_from_slice(&theirs);
    let before = region.clone();

    // Past the end of the grant, no grant at all, a forged one, another tenant's.
    let got = vec![0u8; 4096];
    let r = unsafe {
        alpha
            .transfer(&[with(
                req(Opcode::Read, &got, &target, base + alloc),
                &g_alpha,
            )])
            .await
    };
    forbidden(&r[0]);
    let straddle = vec![0u8; 8192];
    let r = unsafe {
        alpha
            .transfer(&[with(
                req(Opcode::Read, &straddle, &target, base + alloc - 4096),
                &g_alpha,
            )])
            .await
    };
    forbidden(&r[0]);
    // A connection keeps the grants it presented (until they expire), so a
    // request without one is refused on a connection that never presented one.
    let bare = peer("tok-alpha").await;
    let r = unsafe {
        bare.transfer(&[req(Opcode::Read, &got, &target, base)])
            .await
    };
    forbidden(&r[0]);
    let mut forged = g_alpha.to_vec();
    forged[17..25].copy_from_slice(&(1u64 << 20).to_le_bytes()); // widen the range
    let forged = Arc::new(forged);
    let r = unsafe {
        alpha
            .transfer(&[with(
                req(Opcode::Read, &got, &target, base + alloc),
                &forged,
            )])
            .await
    };
    forbidden(&r[0]);
    let junk = vec![0xeeu8; 4096];
    let r = unsafe {
        alpha
            .transfer(&[with(
                req(Opcode::Write, &junk, &target, base + alloc),
                &forged,
            )])
            .await
    };
    forbidden(&r[0]);

    let beta = peer("tok-beta").await;
    let r = unsafe {
        beta.transfer(&[with(req(Opcode::Read, &got, &target, base), &g_alpha)])
            .await
    };
    forbidden(&r[0]);
    let r = unsafe {
        beta.transfer(&[with(req(Opcode::Write, &junk, &target, base), &g_alpha)])
            .await
    };
    forbidden(&r[0]);
    assert!(
        got.iter().all(|&b| b == 0),
        "bytes reached a tenant without a grant"
    );
    assert_eq!(region, before, "memory changed by refused writes");
    assert!(target.metrics().requests_forbidden >= 6);

    // A new secret (the segment mounted again): the old grant is worth nothing.
    target
        .grant_keys()
        .set(target.segment_name(), Some(new_secret()));
    let fresh = peer("tok-alpha").await;
    let r = unsafe {
        fresh
            .transfer(&[with(req(Opcode::Read, &back, &target, base), &g_alpha)])
            .await
    };
    forbidden(&r[0]);

    // The cluster tenant is served anywhere, without grants.
    let root = peer("tok-root").await;
    let mut all = vec![0u8; region.len()];
    let r = unsafe {
        root.transfer(&[req(Opcode::Read, &all, &target, base)])
            .await
    };
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(all, region);
    all[0] ^= 1;
    drop(region);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_verifier_grants_change_nothing() {
    let open = engine_with(|_| {}).await;
    let mut region = vec![0u8; 1 << 16];
    let base = region.as_mut_ptr() as u64;
    unsafe { open.register_memory(base as usize, region.len()) }.unwrap();
    let p = peer("tok-alpha").await;
    let data = pattern(10_000, 1);
    // No grant, and a grant nobody can check: both served as before.
    let r = unsafe { p.transfer(&[req(Opcode::Write, &data, &open, base)]).await };
    assert!(r[0].is_ok(), "{:?}", r[0]);
    let g = grant(&open, &new_secret(), "alpha", base, 16);
    let r = unsafe {
        p.transfer(&[with(req(Opcode::Write, &data, &open, base), &g)])
            .await
    };
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(&region[..data.len()], &data[..]);
    region[0] ^= 0;
}

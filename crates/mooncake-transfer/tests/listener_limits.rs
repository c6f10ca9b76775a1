//! The data listener against strangers, over real loopback sockets: a flood of
//! sockets that connect and send nothing (or half a frame) neither locks a real peer
//! out nor stays open past the timeouts, and a length announced in a header is never
//! allocated before its bytes arrive.

mod common;

use common::{engine, engine_with, pattern, req};
use mooncake_transfer::tcp::frame::{Header, Op, MAX_CONTROL_LEN, MAX_DATA_LEN};
use mooncake_transfer::tcp::server::MAX_HELLO_LEN;
use mooncake_transfer::{Opcode, TransferEngine};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server has closed `s` (EOF or reset) within `wait`. Whatever the
/// server sent before closing is read and discarded.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = vec![0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// How many of `socks` the server closes within `wait` (checked concurrently).
async fn count_closed(socks: Vec<TcpStream>, wait: Duration) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for mut s in socks {
        set.spawn(async move {
            let closed = closed_within(&mut s, wait).await;
            // keep the still-open ones open until every check is done
            (closed, s)
        });
    }
    let mut held = Vec::new();
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let (closed, s) = r.unwrap();
        n += closed as usize;
        held.push(s);
    }
    n
}

/// A write of a patterned block from `b` into `a` at `base`, read back and compared.
async fn round_trip(a: &TransferEngine, b: &TransferEngine, base: u64, seed: u64) {
    let data = pattern(256 << 10, seed);
    let res = tokio::time::timeout(Duration::from_secs(60), unsafe {
        b.transfer(&[req(Opcode::Write, &data, a, base)])
    })
    .await
    .expect("write did not finish");
    assert!(res.iter().all(|r| r.is_ok()), "write: {res:?}");
    let back = vec![0u8; data.len()];
    let res = tokio::time::timeout(Duration::from_secs(60), unsafe {
        b.transfer(&[req(Opcode::Read, &back, a, base)])
    })
    .await
    .expect("read did not finish");
    assert!(res.iter().all(|r| r.is_ok()), "read: {res:?}");
    let back = std::hint::black_box(back);
    assert!(back == data, "read back other bytes than written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_the_cap_does_not_lock_out_a_peer() {
    const CAP: usize = 32;
    const FLOOD: usize = 300;
    // Timeouts far beyond the test: only the cap's eviction can make room.
    let a = engine_with(|c| {
        c.tcp.max_connections = CAP;
        c.tcp.idle_timeout = Duration::from_secs(600);
        c.tcp.stall_timeout = Duration::from_secs(600);
    })
    .await;
    let b = engine().await;
    let mut region = vec![0u8; 1 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();

    let half_header = Header::new(Op::Write, 1, base, 4096).encode();
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let mut s = TcpStream::connect(a.endpoint()).await.unwrap();
        if i % 2 == 1 {
            s.write_all(&half_header[..20]).await.unwrap();
        }
        flood.push(s);
    }
    // The flood is held open; the peer still gets through.
    round_trip(&a, &b, base, 1).await;

    let m = a.metrics();
    assert!(
        m.connections_evicted as usize >= FLOOD - CAP,
        "evicted {} of a {FLOOD}-socket flood over a cap of {CAP}",
        m.connections_evicted
    );
    // The strangers gave way, the peer's connections did not (they carry frames) and
    // the cap held: every stranger beyond it was closed, and some are still open.
    let closed = count_closed(flood, Duration::from_secs(2)).await;
    assert!(
        (FLOOD - CAP..FLOOD).contains(&closed),
        "{closed} of {FLOOD} flood sockets closed with a cap of {CAP}"
    );
    round_trip(&a, &b, base, 2).await;
    drop(region);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_connections_are_closed_after_the_timeouts() {
    let timeout = Duration::from_millis(300);
    let a = engine_with(|c| {
        c.tcp.idle_timeout = timeout;
        c.tcp.stall_timeout = timeout;
    })
    .await;
    let b = engine().await;
    let mut region = vec![0u8; MAX_DATA_LEN as usize];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    let ep = a.endpoint();
    let connect = || TcpStream::connect(ep.clone());

    let mut stalled = Vec::new();
    // silent
    for _ in 0..100 {
        stalled.push(connect().await.unwrap());
    }
    // half a header
    let write = Header::new(Op::Write, 1, base, 1 << 20).encode();
    for _ in 0..100 {
        let mut s = connect().await.unwrap();
        s.write_all(&write[..20]).await.unwrap();
        stalled.push(s);
    }
    // a whole header, then a payload that stops
    for _ in 0..20 {
        let mut s = connect().await.unwrap();
        s.write_all(&write).await.unwrap();
        s.write_all(&[7u8; 100]).await.unwrap();
        stalled.push(s);
    }
    // control payloads that stop
    for (op, len) in [(Op::Hello, 100), (Op::Control, MAX_CONTROL_LEN)] {
        for _ in 0..20 {
            let mut s = connect().await.unwrap();
            s.write_all(&Header::new(op, 1, 0, len).encode())
                .await
                .unwrap();
            s.write_all(b"ten bytes!").await.unwrap();
            stalled.push(s);
        }
    }
    let n = stalled.len();
    // A reader that does not read its 64 MiB answer (more than socket buffers hold).
    let mut sluggard = connect().await.unwrap();
    sluggard
        .write_all(&Header::new(Op::Read, 1, base, MAX_DATA_LEN).encode())
        .await
        .unwrap();

    // A real peer is served while all of that is held open...
    round_trip(&a, &b, base, 3).await;
    // ...and every stalled socket is closed by the server.
    let closed = count_closed(stalled, Duration::from_secs(30)).await;
    assert_eq!(closed, n, "stalled sockets left open past the timeouts");
    let timed_out = a.metrics().connections_timed_out;
    assert!(
        timed_out as usize >= n,
        "{timed_out} connections counted as timed out; {n} stalled"
    );
    // The server gave up writing to the reader that stopped reading: what it gets
    // once it reads again ends before the whole answer.
    tokio::time::sleep(timeout * 5).await;
    let mut received = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match sluggard.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => received += k as u64,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the answer to a stalled reader never ended");
    assert!(
        received < 40 + MAX_DATA_LEN,
        "a reader that stopped reading still got the whole {received}-byte answer"
    );

    // The peer's pooled connections idled past the timeout too and were closed; it
    // reopens them on the next request without failing it.
    tokio::time::sleep(timeout * 3).await;
    round_trip(&a, &b, base, 4).await;
    drop(region);
}

fn vm_size_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_lengths_are_not_allocated() {
    let a: Arc<TransferEngine> = engine().await;
    let ep = a.endpoint();

    // A Hello longer than any segment name is refused without an answer.
    let mut s = TcpStream::connect(&ep).await.unwrap();
    s.write_all(&Header::new(Op::Hello, 1, 0, MAX_HELLO_LEN + 1).encode())
        .await
        .unwrap();
    let mut ack = [0u8; 40];
    let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut ack))
        .await
        .expect("an oversized Hello was neither answered nor refused");
    assert!(
        matches!(got, Ok(0) | Err(_)),
        "an oversized Hello was answered"
    );

    // 100 connections each announcing the largest control payload and sending ten
    // bytes: reserving what they announce would take 1.6 GiB of address space. The
    // bound is coarse (thread stacks and allocator arenas move VmSize too) but far
    // below that.
    let before = vm_size_kib();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(&ep).await.unwrap();
        s.write_all(&Header::new(Op::Control, 1, 0, MAX_CONTROL_LEN).encode())
            .await
            .unwrap();
        s.write_all(b"ten bytes!").await.unwrap();
        held.push(s);
    }
    // let the listener take them all in and start reading
    let probe = {
        let mut p = TcpStream::connect(&ep).await.unwrap();
        p.write_all(&Header::new(Op::Describe, 9, 0, 0).encode())
            .await
            .unwrap();
        let mut h = [0u8; 40];
        p.read_exact(&mut h).await.unwrap();
        Header::decode(&h).unwrap()
    };
    assert_eq!(probe.op, Op::DescribeData, "listener stopped serving");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grown_mib = vm_size_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 512,
        "address space grew by {grown_mib} MiB for 100 announced, unsent control payloads"
    );
    drop(held);
}

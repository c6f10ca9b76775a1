//! Paths that die, futures that are dropped, peers that restart, and many concurrent
//! callers: every completed transfer must carry the right bytes.

mod common;

use common::{engine, engine_with, pattern, req};
use mooncake_transfer::{Opcode, RequestStatus, TransferConfig, TransferEngine};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_whose_path_dies_is_retried_on_another_path() {
    let a = engine().await;
    let b = engine_with(|c| {
        c.tcp.conns_per_path = 4;
        c.tcp.slice_size = 64 << 10;
    })
    .await;
    let mut region = vec![0u8; 32 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    // Open every connection first.
    let warm = pattern(1 << 20, 1);
    assert!(unsafe { b.transfer(&[req(Opcode::Write, &warm, &a, base)]).await }[0].is_ok());
    let peer = b.debug_peer(a.segment_name()).expect("peer cached");
    assert_eq!(peer.slot_count(), 4);

    let data = pattern(32 << 20, 2);
    let mut rounds = 0;
    while b.metrics().slices_retried == 0 && rounds < 50 {
        // One path dies while the transfer is in flight.
        let batch = unsafe { b.submit(vec![req(Opcode::Write, &data, &a, base)]) };
        tokio::time::sleep(Duration::from_micros(500 + 100 * rounds as u64)).await;
        peer.kill_slot(rounds % 4);
        let res = batch.wait().await;
        assert!(res[0].is_ok(), "{:?}", res[0]);
        assert_eq!(crc32c::crc32c(&region), crc32c::crc32c(&data));
        rounds += 1;
    }
    assert!(b.metrics().slices_retried > 0, "no slice was ever retried");
    // And reads through the same (repeatedly broken) pool come back intact.
    let mut back = vec![0u8; data.len()];
    let res = unsafe { b.transfer(&[req(Opcode::Read, &back, &a, base)]).await };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    back = std::hint::black_box(back);
    assert_eq!(crc32c::crc32c(&back), crc32c::crc32c(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_from_many_tasks_carry_the_right_bytes() {
    let a = engine().await;
    let b = engine().await;
    const TASKS: usize = 16;
    const PER_TASK: usize = 2 << 20;
    let mut region = vec![0u8; TASKS * PER_TASK];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (a, b) = (a.clone(), b.clone());
        handles.push(tokio::spawn(async move {
            let my = base + (t * PER_TASK) as u64;
            for round in 0..5u64 {
                // A batch of pieces of varied sizes covering this task's window.
                let sizes = [
                    4096usize,
                    100_000,
                    1 << 20,
                    PER_TASK - 4096 - 100_000 - (1 << 20),
                ];
                let bufs: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| pattern(n, t as u64 * 100 + round * 10 + i as u64))
                    .collect();
                let mut off = 0u64;
                let mut reqs = Vec::new();
                for buf in &bufs {
                    reqs.push(req(Opcode::Write, buf, &a, my + off));
                    off += buf.len() as u64;
                }
                let res = if t % 2 == 0 {
                    unsafe { b.transfer(&reqs).await }
                } else {
                    let batch = unsafe { b.submit(reqs) };
                    batch.wait().await
                };
                assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
                let mut back: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0u8; n]).collect();
                let mut off = 0u64;
                let reqs: Vec<_> = back
                    .iter()
                    .map(|buf| {
                        let r = req(Opcode::Read, buf, &a, my + off);
                        off += buf.len() as u64;
                        r
                    })
                    .collect();
                let res = unsafe { b.transfer(&reqs).await };
                assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
                back = std::hint::black_box(back);
                for (x, y) in back.iter().zip(&bufs) {
                    assert_eq!(
                        crc32c::crc32c(x),
                        crc32c::crc32c(y),
                        "task {t} round {round}"
                    );
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    region[0] ^= 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_transfer_or_batch_leaves_connections_usable() {
    let a = engine().await;
    let b = engine().await;
    let mut region = vec![0u8; 64 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    for i in 0..5 {
        // Drop a large read mid-flight, then free its buffer.
        let buf = vec![0u8; 64 << 20];
        let r = req(Opcode::Read, &buf, &a, base);
        let fut = unsafe { b.transfer(std::slice::from_ref(&r)) };
        let _ = tokio::time::timeout(Duration::from_micros(200 * i + 50), fut).await;
        drop(buf);
        // A batch dropped right after submit.
        let buf = pattern(16 << 20, i);
        let batch = unsafe { b.submit(vec![req(Opcode::Write, &buf, &a, base)]) };
        tokio::time::sleep(Duration::from_micros(100)).await;
        drop(batch);
        drop(buf);
        // The pool still works and carries the right bytes.
        let data = pattern(3 << 20, 100 + i);
        let res = unsafe {
            b.transfer(&[req(Opcode::Write, &data, &a, base + (32 << 20))])
                .await
        };
        assert!(res[0].is_ok(), "{:?}", res[0]);
        let mut back = vec![0u8; data.len()];
        let res = unsafe {
            b.transfer(&[req(Opcode::Read, &back, &a, base + (32 << 20))])
                .await
        };
        assert!(res[0].is_ok(), "{:?}", res[0]);
        back = std::hint::black_box(back);
        assert_eq!(back, data);
    }
    region[0] ^= 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_status_can_be_polled() {
    let a = engine().await;
    let b = engine().await;
    let mut region = vec![0u8; 8 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    let data = pattern(4 << 20, 3);
    let batch = unsafe {
        b.submit(vec![
            req(Opcode::Write, &data, &a, base),
            req(Opcode::Write, &data, &a, base + (6 << 20)), // out of region
        ])
    };
    assert_eq!(batch.len(), 2);
    while !batch.is_done() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(batch.status(0), Some(RequestStatus::Done));
    assert!(matches!(batch.status(1), Some(RequestStatus::Failed(_))));
    assert_eq!(batch.status(2), None);
    let res = batch.wait().await;
    assert!(res[0].is_ok() && res[1].is_err());
    assert_eq!(&region[..data.len()], &data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_never_reached_through_a_stale_descriptor() {
    let a = engine().await;
    let port: u16 = a.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let b = engine().await;
    let mut r1 = vec![0u8; 1 << 20];
    unsafe { a.register_memory(r1.as_mut_ptr() as usize, r1.len()) }.unwrap();
    let data = pattern(1 << 20, 4);
    let res = unsafe {
        b.transfer(&[req(Opcode::Write, &data, &a, r1.as_ptr() as u64)])
            .await
    };
    assert!(res[0].is_ok());
    let old_gen = a.generation();
    let name = a.segment_name().to_string();
    a.shutdown().await;
    drop(a);

    // Same name, same port, new generation and a different region.
    let mut cfg = TransferConfig::new("127.0.0.1");
    cfg.port = port;
    let a2 = TransferEngine::start(cfg).await.unwrap();
    assert_eq!(a2.segment_name(), name);
    assert_ne!(a2.generation(), old_gen);
    let mut r2 = vec![0u8; 1 << 20];
    unsafe { a2.register_memory(r2.as_mut_ptr() as usize, r2.len()) }.unwrap();
    let res = unsafe {
        b.transfer(&[req(Opcode::Write, &data, &a2, r2.as_ptr() as u64)])
            .await
    };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert_eq!(r2, data);
    let peer = b.debug_peer(&name).unwrap();
    assert_eq!(
        peer.desc.generation,
        a2.generation(),
        "descriptor was re-resolved"
    );
    r1[0] ^= 0;
}

/// On a single-threaded runtime a drop must not wait on a task that cannot run.
#[tokio::test(flavor = "current_thread")]
async fn dropping_mid_flight_on_a_current_thread_runtime_does_not_hang() {
    let a = engine().await;
    let b = engine().await;
    let mut region = vec![0u8; 32 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    for i in 0..10u64 {
        let buf = vec![0u8; 32 << 20];
        let r = req(Opcode::Read, &buf, &a, base);
        let fut = unsafe { b.transfer(std::slice::from_ref(&r)) };
        let _ = tokio::time::timeout(Duration::from_micros(100 + 300 * i), fut).await;
        drop(buf);
    }
    // The owner can unregister while peers are mid-transfer, and nothing hangs.
    let data = pattern(1 << 20, 1);
    let res = unsafe { b.transfer(&[req(Opcode::Write, &data, &a, base)]).await };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    a.unregister_memory(base as usize).unwrap();
    let res = unsafe { b.transfer(&[req(Opcode::Write, &data, &a, base)]).await };
    assert!(res[0].is_err());
    region[0] ^= 0;
}

/// A peer that restarts on another port is found again once its old address fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_moved_is_resolved_again() {
    let a = engine().await;
    let b = engine().await;
    let mut r1 = vec![0u8; 1 << 20];
    unsafe { a.register_memory(r1.as_mut_ptr() as usize, r1.len()) }.unwrap();
    let data = pattern(1 << 20, 6);
    let mut rq = req(Opcode::Write, &data, &a, r1.as_ptr() as u64);
    rq.target = "store-1".into();
    rq.target_endpoint = Some(a.endpoint());
    assert!(unsafe { b.transfer(std::slice::from_ref(&rq)).await }[0].is_ok());
    a.shutdown().await;
    drop(a);
    let a2 = engine_with(|c| c.local_hostname = "127.0.0.1".into()).await;
    let mut r2 = vec![0u8; 1 << 20];
    unsafe { a2.register_memory(r2.as_mut_ptr() as usize, r2.len()) }.unwrap();
    // The master now hands out the new endpoint; the cached peer still points at the old.
    rq.target_endpoint = Some(a2.endpoint());
    rq.remote_addr = r2.as_ptr() as u64;
    let first = unsafe { b.transfer(std::slice::from_ref(&rq)).await };
    let res = if first[0].is_ok() {
        first
    } else {
        unsafe { b.transfer(std::slice::from_ref(&rq)).await }
    };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert_eq!(r2, data);
    r1[0] ^= 0;
}

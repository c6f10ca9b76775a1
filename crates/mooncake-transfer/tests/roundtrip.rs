//! Two engines over real loopback sockets: A registers memory, B writes into it and
//! reads it back.

mod common;

use common::{engine, pattern, req};
use mooncake_common::ErrorCode;
use mooncake_transfer::{Opcode, TransferError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_read_back_is_byte_exact() {
    let a = engine().await;
    let b = engine().await;
    let mut region = vec![0u8; 16 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(region.as_mut_ptr() as usize, region.len()) }.unwrap();

    // One large (sliced, striped) write, one small one, one odd-sized one.
    let big = pattern(5 << 20 | 123, 1);
    let small = pattern(4096, 2);
    let odd = pattern(777, 3);
    let reqs = vec![
        req(Opcode::Write, &big, &a, base),
        req(Opcode::Write, &small, &a, base + (8 << 20)),
        req(Opcode::Write, &odd, &a, base + (16 << 20) - 777),
    ];
    let res = unsafe { b.transfer(&reqs).await };
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    assert_eq!(crc32c::crc32c(&region[..big.len()]), crc32c::crc32c(&big));

    let mut big_back = vec![0u8; big.len()];
    let mut small_back = vec![0u8; small.len()];
    let mut odd_back = vec![0u8; odd.len()];
    let reqs = vec![
        req(Opcode::Read, &big_back, &a, base),
        req(Opcode::Read, &small_back, &a, base + (8 << 20)),
        req(Opcode::Read, &odd_back, &a, base + (16 << 20) - 777),
    ];
    let res = unsafe { b.transfer(&reqs).await };
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    // the local buffers were written through raw pointers; read them through the Vecs
    big_back = std::hint::black_box(big_back);
    small_back = std::hint::black_box(small_back);
    odd_back = std::hint::black_box(odd_back);
    assert_eq!(crc32c::crc32c(&big_back), crc32c::crc32c(&big));
    assert_eq!(small_back, small);
    assert_eq!(odd_back, odd);
    assert!(b.metrics().bytes_written >= big.len() as u64);
    // The server counts a read after its last byte left, which may be just after the
    // reader already returned: give it a moment rather than race it.
    for _ in 0..250 {
        if a.metrics().bytes_served_out >= big.len() as u64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(a.metrics().bytes_served_out >= big.len() as u64);
    drop(region);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_region_is_refused_with_a_clear_error() {
    let a = engine().await;
    let b = engine().await;
    let mut region = vec![0u8; 1 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    let data = pattern(4096, 9);
    let reqs = vec![
        req(Opcode::Write, &data, &a, base + (1 << 20) - 100), // runs past the end
        req(Opcode::Read, &data, &a, base - 4096),             // before the start
        req(Opcode::Write, &data, &a, base),                   // fine
    ];
    let res = unsafe { b.transfer(&reqs).await };
    for r in &res[..2] {
        let e = r.as_ref().unwrap_err();
        assert!(matches!(e, TransferError::OutOfRegion { .. }), "{e}");
        assert_eq!(e.code(), ErrorCode::InvalidParams);
        assert!(
            e.to_string().contains("not inside a registered region"),
            "{e}"
        );
    }
    assert!(res[2].is_ok(), "{:?}", res[2]);
    assert_eq!(&region[..4096], &data[..]);
    assert_eq!(a.metrics().out_of_region, 2);

    // Unregistered memory is refused too.
    a.unregister_memory(base as usize).unwrap();
    let res = unsafe { b.transfer(&[req(Opcode::Write, &data, &a, base)]).await };
    assert!(matches!(res[0], Err(TransferError::OutOfRegion { .. })));

    // Bad requests never reach the wire.
    let mut r = req(Opcode::Write, &data, &a, base);
    r.length = 0;
    let res = unsafe { b.transfer(&[r]).await };
    assert_eq!(
        res[0].as_ref().unwrap_err().code(),
        ErrorCode::InvalidParams
    );
    region[0] = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_segment_fails_with_segment_not_found() {
    let b = engine().await;
    let data = pattern(16, 1);
    let mut r = req(Opcode::Write, &data, &b, 4096);
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    r.target = l.local_addr().unwrap().to_string();
    drop(l);
    let res = unsafe { b.transfer(&[r]).await };
    let e = res[0].as_ref().unwrap_err();
    assert_eq!(e.code(), ErrorCode::SegmentNotFound, "{e}");
}

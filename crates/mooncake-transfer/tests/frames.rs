//! Frame parsing: every valid header round-trips; arbitrary, corrupted or truncated
//! bytes are rejected with an error (never a panic), both by the decoder and by a live
//! listener, which keeps serving other connections.

mod common;

use common::{engine, pattern, req};
use mooncake_transfer::tcp::frame::{Header, Op, HEADER_LEN, MAX_CONTROL_LEN, MAX_DATA_LEN};
use mooncake_transfer::Opcode;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Write),
        Just(Op::Read),
        Just(Op::WriteAck),
        Just(Op::ReadData),
        Just(Op::Hello),
        Just(Op::HelloAck),
        Just(Op::Describe),
        Just(Op::DescribeData),
    ]
}

proptest! {
    #[test]
    fn valid_headers_round_trip(op in op(), crc in any::<Option<u32>>(), status in any::<i32>(),
                                id in any::<u64>(), addr in 0u64..(1 << 62), len in 0u64..=MAX_CONTROL_LEN) {
        let len = if matches!(op, Op::Write | Op::Read | Op::WriteAck | Op::ReadData) { len.min(MAX_DATA_LEN) } else { len };
        let mut h = Header::new(op, id, addr, len).with_status(status);
        if let Some(c) = crc { h = h.with_crc(c); }
        let bytes = h.encode();
        prop_assert_eq!(Header::decode(&bytes).unwrap(), h);
        // every strict prefix is rejected as truncated
        for cut in 0..HEADER_LEN {
            prop_assert!(Header::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = Header::decode(&bytes);
    }

    #[test]
    fn corrupting_a_header_byte_is_caught_or_harmless(pos in 0usize..HEADER_LEN, val in any::<u8>()) {
        let h = Header::new(Op::Write, 1, 4096, 4096);
        let mut b = h.encode();
        b[pos] = val;
        match Header::decode(&b) {
            // a change in id/addr/len/status/crc can still be a valid header; it must then
            // decode to exactly what the bytes say and stay within the limits
            Ok(d) => {
                prop_assert!(d.len <= MAX_DATA_LEN);
                prop_assert!(d.addr.checked_add(d.len).is_some() || !matches!(d.op, Op::Write | Op::Read));
                prop_assert_eq!(d.encode(), b);
            }
            Err(e) => prop_assert!(e.to_string().contains("malformed frame")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_drops_garbage_connections_and_keeps_serving() {
    let a = engine().await;
    let b = engine().await;
    let mut region = vec![0u8; 1 << 16];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();

    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        Header::new(Op::Write, 1, base, 100).encode()[..20].to_vec(), // truncated header
        {
            let mut h = Header::new(Op::Read, 1, base, 16).encode().to_vec();
            h[3] = 200; // unknown opcode
            h
        },
        Header::new(Op::Write, 1, base, MAX_DATA_LEN + 1)
            .encode()
            .to_vec(), // oversized
        Header::new(Op::WriteAck, 1, 0, 0).encode().to_vec(), // a response sent as a request
        {
            let mut h = Header::new(Op::Write, 1, base, 4096).encode().to_vec();
            h.extend_from_slice(&[1u8; 100]); // payload cut short, then EOF
            h
        },
    ];
    for g in garbage {
        let mut s = tokio::net::TcpStream::connect(a.endpoint()).await.unwrap();
        s.write_all(&g).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        // the listener closes the connection (possibly after nothing at all)
        let r =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(r.is_ok(), "listener kept a garbage connection open");
    }
    let data = pattern(4096, 5);
    let res = unsafe { b.transfer(&[req(Opcode::Write, &data, &a, base)]).await };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert_eq!(&region[..4096], &data[..]);
}

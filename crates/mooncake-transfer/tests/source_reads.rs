//! Reads of a `ReadSource` (an SSD tier) through the data listener: they start as their
//! requests arrive and overlap, yet the answers leave in request order, a read that
//! fails refuses its own frame only, frames of other kinds wait for the reads before
//! them, and reads asked for before the peer closed its side are still answered.

mod common;

use common::{engine, pattern};
use mooncake_transfer::tcp::frame::{status, Header, Op, HEADER_LEN};
use mooncake_transfer::ReadSource;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BASE: u64 = 1 << 56;
const LEN: usize = 4096;

/// Frame `i` of the source lives at `BASE + i * LEN`. Earlier frames take longer, so
/// reads that overlap finish in reverse order; frame 2 is torn, frame 4's read panics.
/// Counts the reads running at once, and the most seen.
#[derive(Default)]
struct Source {
    running: AtomicUsize,
    most: AtomicUsize,
}

impl ReadSource for Source {
    fn covers(&self, addr: u64, len: u64) -> bool {
        addr >= BASE && addr + len <= BASE + (16 * LEN) as u64
    }
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let i = (addr - BASE) / LEN as u64;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(Duration::from_millis(60u64.saturating_sub(10 * i)));
        self.running.fetch_sub(1, SeqCst);
        match i {
            2 => Err("torn record".into()),
            4 => panic!("source failed"),
            _ => {
                buf.copy_from_slice(&pattern(LEN, i));
                Ok(())
            }
        }
    }
}

async fn answer(s: &mut tokio::net::TcpStream) -> (Header, Vec<u8>) {
    let mut b = [0u8; HEADER_LEN];
    s.read_exact(&mut b).await.unwrap();
    let h = Header::decode(&b).unwrap();
    let mut payload = vec![0u8; h.payload_len() as usize];
    s.read_exact(&mut payload).await.unwrap();
    (h, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_reads_overlap_but_answer_in_order_and_fail_alone() {
    let a = engine().await;
    let src = Arc::new(Source::default());
    a.set_read_source(Some(src.clone()));
    let mem = pattern(LEN, 99);
    unsafe { a.register_memory(mem.as_ptr() as usize, mem.len()) }.unwrap();

    // Six source reads, a Hello, a memory read, a source read; then EOF.
    let mut reqs = Vec::new();
    for i in 0..6u64 {
        reqs.push(Header::new(
            Op::Read,
            1 + i,
            BASE + i * LEN as u64,
            LEN as u64,
        ));
    }
    reqs.push(Header::new(Op::Hello, 7, 0, 0));
    reqs.push(Header::new(Op::Read, 8, mem.as_ptr() as u64, LEN as u64));
    reqs.push(Header::new(Op::Read, 9, BASE + 6 * LEN as u64, LEN as u64));
    let bytes: Vec<u8> = reqs.iter().flat_map(|h| h.encode()).collect();

    let mut s = tokio::net::TcpStream::connect(a.endpoint()).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..reqs.len() {
        got.push(
            tokio::time::timeout(Duration::from_secs(10), answer(&mut s))
                .await
                .expect("every request is answered"),
        );
    }
    let ids: Vec<u64> = got.iter().map(|(h, _)| h.id).collect();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>(), "answers in request order");
    for (h, payload) in &got {
        match h.id {
            3 | 5 => {
                assert_eq!((h.op, h.status), (Op::ReadData, status::OUT_OF_REGION));
                assert!(payload.is_empty());
            }
            7 => assert_eq!((h.op, h.status), (Op::HelloAck, status::OK)),
            8 => assert_eq!(payload, &mem),
            id => {
                assert_eq!((h.op, h.status), (Op::ReadData, status::OK), "id {id}");
                let i = (h.addr - BASE) / LEN as u64;
                assert_eq!(payload, &pattern(LEN, i), "id {id}");
            }
        }
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // The requests arrived together: later reads started while the first was running
    // (answered one after another, the source would never see two at once).
    assert!(src.most.load(SeqCst) >= 2, "source reads never overlapped");
}

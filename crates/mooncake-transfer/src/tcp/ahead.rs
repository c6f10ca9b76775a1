//! Reads of a [`ReadSource`] (an SSD tier) started as soon as their requests are
//! parsed, and answered in request order.
//!
//! A connection serving its frames one after another leaves the device idle while it
//! writes each answer to the socket, and the socket idle while it waits for the next
//! read: on the tier, 40-65% of what `dd` reads from the same file. The peer
//! pipelines its requests, so the next ones are usually already in the connection's
//! read buffer; starting their reads on blocking threads while the current answer is
//! being sent keeps the device busy the whole time (several reads in flight per
//! connection, as a streaming `dd` keeps it). Answers leave in request order, so the queue is a plain
//! FIFO whose front is the only read awaited (the peer matches answers by id: the
//! order is a choice made here, not a rule of the protocol).
//!
//! Each read stands alone: a read that fails (a torn record, an I/O error, a panicking
//! source) becomes a refusal of its own frame and nothing else.

use std::collections::VecDeque;
use std::sync::Arc;
use tokio::task::JoinHandle;

use super::frame::Header;
use crate::local::{ReadSource, SourceBytes};

/// Reads in flight or waiting to be sent, per connection. Two, four and eight measured
/// alike on the development machine (two connections per peer already make that four
/// to sixteen reads at the device); four leaves room for a faster device, and more
/// would only hold more buffers.
pub const MAX_AHEAD: usize = 4;
/// Bytes in flight or waiting per connection: a frame may be up to 64 MiB, and a few
/// of those must not pin a few hundred MiB per connection. One frame is always
/// started, whatever its size.
pub const MAX_AHEAD_BYTES: u64 = 16 << 20;

/// The result of one source read: the bytes, or why they were refused.
pub type Got = Result<SourceBytes, String>;

enum State {
    Ready(Got),
    Running(JoinHandle<Got>),
}

struct Entry {
    header: Header,
    state: State,
}

/// The started reads of one connection, oldest first.
#[derive(Default)]
pub struct ReadAhead {
    queue: VecDeque<Entry>,
    bytes: u64,
}

impl ReadAhead {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// No further read should start before the front one is answered.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= MAX_AHEAD || self.bytes >= MAX_AHEAD_BYTES
    }

    /// Starts the read `header` asks for: bytes the source has at hand are read now,
    /// the rest on a blocking thread.
    pub fn start(&mut self, header: Header, src: Arc<dyn ReadSource>) {
        let (addr, len) = (header.addr, header.len as usize);
        let state = match src.read_at_hand(addr, len) {
            Some(got) => State::Ready(got),
            None => State::Running(tokio::task::spawn_blocking(move || {
                src.read_bytes(addr, len)
            })),
        };
        self.bytes += header.len;
        self.queue.push_back(Entry { header, state });
    }

    /// Waits until the oldest read is done (nothing when the queue is empty).
    /// Cancel-safe: dropped before it returns, the read stays queued.
    pub async fn front_done(&mut self) {
        let Some(e) = self.queue.front_mut() else {
            return;
        };
        if let State::Running(h) = &mut e.state {
            let got = h
                .await
                .unwrap_or_else(|e| Err(format!("read task failed: {e}")));
            e.state = State::Ready(got);
        }
    }

    /// The oldest read's request and result, once done; `None` when the queue is empty.
    pub async fn next(&mut self) -> Option<(Header, Got)> {
        self.front_done().await;
        let e = self.queue.pop_front()?;
        self.bytes -= e.header.len;
        match e.state {
            State::Ready(got) => Some((e.header, got)),
            State::Running(_) => unreachable!("front_done leaves the front ready"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::frame::Op;
    use std::time::Duration;

    /// Reads that take longer the earlier they were asked for, and fail or panic at
    /// chosen addresses.
    struct Slow;

    impl ReadSource for Slow {
        fn covers(&self, _addr: u64, _len: u64) -> bool {
            true
        }
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
            std::thread::sleep(Duration::from_millis(40 - 10 * (addr % 4)));
            match addr {
                2 => Err("torn record".into()),
                5 => panic!("source failed"),
                _ => {
                    buf.fill(addr as u8);
                    Ok(())
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_keep_request_order_and_failures_stay_their_own() {
        let src: Arc<dyn ReadSource> = Arc::new(Slow);
        let mut ahead = ReadAhead::default();
        let mut answers = Vec::new();
        for addr in 0..8u64 {
            if ahead.is_full() {
                answers.push(ahead.next().await.unwrap());
            }
            ahead.start(Header::new(Op::Read, 100 + addr, addr, 16), src.clone());
        }
        while let Some(a) = ahead.next().await {
            answers.push(a);
        }
        assert!(ahead.is_empty());
        let ids: Vec<u64> = answers.iter().map(|(h, _)| h.id).collect();
        assert_eq!(ids, (100..108).collect::<Vec<_>>());
        for (h, got) in &answers {
            match h.addr {
                2 => assert_eq!(got.as_ref().err().unwrap(), "torn record"),
                5 => assert!(got.as_ref().err().unwrap().contains("read task failed")),
                a => {
                    let b: &[u8] = (**got.as_ref().unwrap()).as_ref();
                    assert_eq!(b, &[a as u8; 16][..]);
                }
            }
        }
    }

    #[tokio::test]
    async fn a_large_frame_starts_alone_and_fills_the_queue() {
        let src: Arc<dyn ReadSource> = Arc::new(Slow);
        let mut ahead = ReadAhead::default();
        assert!(!ahead.is_full());
        ahead.start(Header::new(Op::Read, 1, 0, MAX_AHEAD_BYTES), src);
        assert!(ahead.is_full());
        let (h, got) = ahead.next().await.unwrap();
        assert_eq!(
            (h.id, got.unwrap().as_ref().as_ref().len()),
            (1, MAX_AHEAD_BYTES as usize)
        );
        assert!(!ahead.is_full() && ahead.is_empty());
    }
}

//! Lanes: data connections the calling thread drives itself.
//!
//! Through a pooled connection (`tcp::conn`), a small transfer wakes a runtime worker
//! to send the request and another thread to hand the answer back to the caller. For
//! a 4 KiB get on a busy host those thread switches cost more than the round trip. A
//! caller that is allowed to block (a thread that entered [`CallerMayBlock`], as the
//! Python binding's calls do: they wait for their answer anyway) can instead send a
//! single-slice request on a plain blocking socket and read the answer into its
//! memory itself, with no other thread involved.
//!
//! A lane speaks the same protocol as a pooled connection (the same handshake,
//! authentication, grants, frames and status codes), so a listener cannot tell them
//! apart. One caller uses a lane at a time; idle lanes are kept per peer (at most
//! [`IDLE_PER_PEER`]) and checked for a close by the peer before reuse. Anything
//! unusual (no lane can be opened, the socket fails, TLS or RDMA is in use, the
//! transfer is more than one slice) leaves the transfer to the pooled connections: lanes only
//! shorten the common path, they never decide an outcome the pooled path would
//! decide differently.
//!
//! Why up to one slice (`tcp.slice_size`, 1 MiB by default): the pooled path sends a
//! slice on one connection too, so a lane stripes nothing less, and the hand-offs it
//! saves cost a large transfer as much as a small one. Measured on loopback, single
//! 1 MiB puts and gets from Python gained ~20% over a 64 KiB limit, 256 KiB puts
//! doubled (docs/benchmarks/cross-host.md, "Lanes up to one slice"). Larger transfers
//! keep the pooled path, which spreads their slices over connections and NICs.

use std::cell::Cell;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::frame::{crc, Header, Op, FLAG_CRC, HEADER_LEN};
use super::grant::SentGrants;
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::metrics::Metrics;
use crate::Opcode;

/// Idle lanes kept per peer (one per thread that reads or writes it concurrently).
pub const IDLE_PER_PEER: usize = 8;
/// How long a lane waits for its answer before it gives the transfer up (the pooled
/// path then runs it, under its own deadline).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static MAY_BLOCK: Cell<u32> = const { Cell::new(0) };
}

/// Marks the current thread as one whose caller waits for the result anyway (it is
/// not a runtime worker), so small transfers started on it may use lanes. Nested
/// guards are fine; the mark lasts until the outermost guard drops.
pub struct CallerMayBlock {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl CallerMayBlock {
    pub fn enter() -> Self {
        MAY_BLOCK.with(|c| c.set(c.get() + 1));
        Self {
            _not_send: std::marker::PhantomData,
        }
    }

    /// Whether the current thread entered a guard.
    pub fn here() -> bool {
        MAY_BLOCK.with(|c| c.get() > 0)
    }
}

impl Drop for CallerMayBlock {
    fn drop(&mut self) {
        MAY_BLOCK.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// One blocking data connection, greeted and (when the peer requires it) proved.
pub struct Lane {
    stream: TcpStream,
    /// The grants this connection carried, as many as the listener keeps.
    sent: SentGrants,
    next_id: u64,
}

impl Lane {
    pub(super) fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Self {
            stream,
            sent: SentGrants::default(),
            next_id: 1,
        })
    }

    /// Nothing to read and not closed by the peer (one non-blocking peek).
    fn idle_and_open(&self) -> bool {
        let mut b = 0u8;
        // SAFETY: a one-byte buffer we own; MSG_PEEK consumes nothing.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&mut b as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

/// The idle lanes of one peer.
#[derive(Default)]
pub struct LanePool {
    idle: Mutex<Vec<Lane>>,
}

impl LanePool {
    /// An idle lane the peer has not closed, if any.
    pub(crate) fn take(&self) -> Option<Lane> {
        let mut idle = self.idle.lock();
        while let Some(l) = idle.pop() {
            if l.idle_and_open() {
                return Some(l);
            }
        }
        None
    }

    fn give_back(&self, lane: Lane) {
        let mut idle = self.idle.lock();
        if idle.len() < IDLE_PER_PEER {
            idle.push(lane);
        }
    }

    /// Idle lanes now (tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }
}

/// A transfer whose request is on a lane; [`LaneOp::finish`] reads its answer.
/// Dropping it unfinished closes the lane (the answer is never read into the
/// caller's memory).
pub struct LaneOp {
    lane: Option<Lane>,
    pool: Arc<LanePool>,
    seg: Arc<LocalSegment>,
    segment: String,
    op: Opcode,
    id: u64,
    local: usize,
    len: usize,
    addr: u64,
}

impl LaneOp {
    /// Sends the request (a grant first when this lane has not carried it).
    ///
    /// # Safety
    /// For a Write, `[local, local+len)` is readable for the duration of this call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn send(
        mut lane: Lane,
        pool: Arc<LanePool>,
        seg: Arc<LocalSegment>,
        segment: &str,
        op: Opcode,
        local: usize,
        len: usize,
        addr: u64,
        grant: Option<&Arc<Vec<u8>>>,
        crc_on: bool,
    ) -> io::Result<LaneOp> {
        let id = lane.next_id;
        lane.next_id += 1;
        let grant = grant.filter(|g| !lane.sent.carried(g)).cloned();
        let mut head = Vec::with_capacity(2 * HEADER_LEN + grant.as_ref().map_or(0, |g| g.len()));
        if let Some(g) = &grant {
            head.extend_from_slice(&Header::new(Op::Grant, 0, 0, g.len() as u64).encode());
            head.extend_from_slice(g);
        }
        match op {
            Opcode::Write => {
                // SAFETY: the caller keeps the range readable for this call.
                let payload = unsafe { std::slice::from_raw_parts(local as *const u8, len) };
                let mut h = Header::new(Op::Write, id, addr, len as u64);
                if crc_on {
                    h = h.with_crc(crc(payload));
                }
                head.extend_from_slice(&h.encode());
                write_all_vectored(&mut lane.stream, &head, payload)?;
            }
            Opcode::Read => {
                let mut h = Header::new(Op::Read, id, addr, len as u64);
                if crc_on {
                    h.flags |= FLAG_CRC;
                }
                head.extend_from_slice(&h.encode());
                lane.stream.write_all(&head)?;
            }
        }
        if let Some(g) = grant {
            lane.sent.sent(g);
        }
        Ok(LaneOp {
            lane: Some(lane),
            pool,
            seg,
            segment: segment.to_string(),
            op,
            id,
            local,
            len,
            addr,
        })
    }

    /// Reads the answer (for a Read, its bytes straight into the caller's memory). On
    /// any error the caller runs the transfer again on the pooled path, which retries
    /// and reports as it always does (reads and writes of the same bytes to the same
    /// range are idempotent); a lane never decides an outcome itself.
    ///
    /// # Safety
    /// For a Read, `[local, local+len)` is writable and not aliased for the duration
    /// of this call.
    pub unsafe fn finish(mut self) -> Result<(), TransferError> {
        let Some(mut lane) = self.lane.take() else {
            return Err(TransferError::Io("lane already used".into()));
        };
        let lost = |what: &str, e: io::Error| {
            TransferError::io(&format!("{what} on a lane to {}", self.segment), e)
        };
        let mut b = [0u8; HEADER_LEN];
        lane.stream
            .read_exact(&mut b)
            .map_err(|e| lost("reading an answer", e))?;
        let h = Header::decode(&b)?;
        if h.id != self.id {
            return Err(TransferError::Frame(format!(
                "answer for request {} on a lane waiting for {}",
                h.id, self.id
            )));
        }
        let outcome = match (h.op, self.op) {
            (Op::WriteAck, Opcode::Write) => {
                let r = super::conn_tasks::status_result(&self.segment, &h, self.len);
                if r.is_ok() {
                    Metrics::add(&self.seg.metrics.bytes_written, self.len as u64);
                }
                r
            }
            (Op::ReadData, Opcode::Read) if h.status != super::frame::status::OK => {
                super::conn_tasks::status_result(&self.segment, &h, self.len)
            }
            (Op::ReadData, Opcode::Read) => {
                if h.len != self.len as u64 {
                    return Err(TransferError::Frame(format!(
                        "read returned {} bytes, asked {}",
                        h.len, self.len
                    )));
                }
                // SAFETY: the caller keeps the range writable and unaliased for this call.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(self.local as *mut u8, self.len) };
                lane.stream
                    .read_exact(dst)
                    .map_err(|e| lost("reading read data", e))?;
                if h.has_crc() && crc(dst) != h.crc {
                    Err(TransferError::Checksum(format!(
                        "read of {} bytes at {:#x} from {}",
                        self.len, self.addr, self.segment
                    )))
                } else {
                    Metrics::add(&self.seg.metrics.bytes_read, self.len as u64);
                    Ok(())
                }
            }
            (got, want) => {
                return Err(TransferError::Frame(format!(
                    "unexpected {got:?} for a {want:?} request on a lane"
                )))
            }
        };
        // The whole answer was read: the lane is in step and can serve again.
        self.pool.give_back(lane);
        outcome
    }
}

/// Writes `head` then `payload` with as few syscalls as possible.
fn write_all_vectored(s: &mut TcpStream, head: &[u8], payload: &[u8]) -> io::Result<()> {
    let total = head.len() + payload.len();
    let mut done = 0usize;
    while done < total {
        let n = if done < head.len() {
            s.write_vectored(&[IoSlice::new(&head[done..]), IoSlice::new(payload)])?
        } else {
            s.write(&payload[done - head.len()..])?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_per_thread_and_nests() {
        assert!(!CallerMayBlock::here());
        {
            let _a = CallerMayBlock::enter();
            let _b = CallerMayBlock::enter();
            assert!(CallerMayBlock::here());
            drop(_b);
            assert!(CallerMayBlock::here());
            std::thread::spawn(|| assert!(!CallerMayBlock::here()))
                .join()
                .unwrap();
        }
        assert!(!CallerMayBlock::here());
    }
}

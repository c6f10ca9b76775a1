//! Copies between a socket and memory whose access can be revoked at any moment (a
//! caller that drops its transfer, an owner that unregisters a region).
//!
//! The memory is touched only inside synchronous, non-blocking `try_read`/`try_write`
//! calls, each wrapped in [`MemAccess::with`]; nothing holds access across an
//! `.await`. So revoking (which waits for an access in progress) waits at most one
//! syscall and can never deadlock, even on a single-threaded runtime. Copies per byte
//! stay at one: the kernel copies straight between the socket and the memory.

use std::io::{self, IoSlice};
use std::time::Duration;
use tokio::io::{AsyncBufRead, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::frame::Header;
use super::io::within;
use super::slice::SliceCtl;
use crate::memory::MemoryRegistry;

/// Memory that may be revoked between syscalls.
pub trait MemAccess {
    /// Runs `f` with the base pointer if access is still allowed, else `None`.
    fn with<R>(&self, f: impl FnOnce(*mut u8) -> R) -> Option<R>;
}

/// A caller's buffer, guarded by its slice's cancellation state.
pub struct CallerMem<'a> {
    pub ctl: &'a SliceCtl,
    pub ptr: usize,
}

impl MemAccess for CallerMem<'_> {
    fn with<R>(&self, f: impl FnOnce(*mut u8) -> R) -> Option<R> {
        if !self.ctl.begin() {
            return None;
        }
        let r = f(self.ptr as *mut u8);
        self.ctl.end();
        Some(r)
    }
}

/// A range of registered memory, looked up (and pinned) per syscall.
pub struct RegionMem<'a> {
    pub memory: &'a MemoryRegistry,
    pub addr: u64,
    pub len: u64,
}

impl MemAccess for RegionMem<'_> {
    fn with<R>(&self, f: impl FnOnce(*mut u8) -> R) -> Option<R> {
        let region = self.memory.lookup(self.addr, self.len)?;
        let r = f(self.addr as usize as *mut u8);
        drop(region);
        Some(r)
    }
}

/// Reads `len` payload bytes into `mem`. `Ok(true)`: delivered; `Ok(false)`: access was
/// revoked and the rest was drained (the stream stays in sync). With `stall`, a payload
/// that makes no progress for that long is an error (`TimedOut`).
pub async fn read_into<M: MemAccess>(
    rd: &mut BufReader<OwnedReadHalf>,
    len: usize,
    mem: &M,
    stall: Option<Duration>,
) -> io::Result<bool> {
    let mut got = 0usize;
    let mut revoked = false;
    let buffered = rd.buffer().len().min(len);
    if buffered > 0 {
        let src = rd.buffer()[..buffered].as_ptr();
        // SAFETY: `with` grants access to `len` bytes at the pointer; `buffered <= len`.
        revoked = mem
            .with(|p| unsafe { std::ptr::copy_nonoverlapping(src, p, buffered) })
            .is_none();
        std::pin::Pin::new(&mut *rd).consume(buffered);
        got = buffered;
    }
    let inner = rd.get_mut();
    let mut scratch = [0u8; 8192];
    while got < len {
        within(stall, "reading a payload", inner.readable()).await?;
        let r = if revoked {
            let n = (len - got).min(scratch.len());
            inner.try_read(&mut scratch[..n])
        } else {
            // SAFETY: access granted for [ptr, ptr+len); we write within [got, len).
            match mem.with(|p| {
                inner.try_read(unsafe { std::slice::from_raw_parts_mut(p.add(got), len - got) })
            }) {
                Some(r) => r,
                None => {
                    revoked = true;
                    continue;
                }
            }
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(!revoked)
}

/// Writes `prefix` (whole frames that go first, such as a Grant; usually empty),
/// `header`, then `len` bytes from `mem`, all in the same `writev` when the socket
/// takes them. Revocation mid-frame is an error (the peer expects the full payload, so
/// the connection must close). With `stall`, a peer that reads nothing for that long
/// is an error (`TimedOut`).
pub async fn write_from<M: MemAccess>(
    wr: &mut OwnedWriteHalf,
    prefix: &[u8],
    header: &Header,
    len: usize,
    mem: &M,
    stall: Option<Duration>,
) -> io::Result<()> {
    let encoded = header.encode();
    let joined;
    let hdr: &[u8] = if prefix.is_empty() {
        &encoded
    } else {
        joined = [prefix, &encoded[..]].concat();
        &joined
    };
    let head_len = hdr.len();
    let total = head_len + len;
    let mut done = 0usize;
    while done < total {
        within(stall, "writing a payload", wr.writable()).await?;
        let r = mem.with(|p| {
            // SAFETY: access granted for [p, p+len); we read within it.
            let payload = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
            if done < head_len {
                wr.try_write_vectored(&[IoSlice::new(&hdr[done..]), IoSlice::new(payload)])
            } else {
                wr.try_write(&payload[done - head_len..])
            }
        });
        match r {
            None => return Err(io::Error::other("memory access revoked mid-frame")),
            Some(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Some(Ok(n)) => done += n,
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(())
}

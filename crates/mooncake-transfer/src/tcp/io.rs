//! Socket helpers shared by both ends of a data connection.

use std::future::Future;
use std::io::IoSlice;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{Header, HEADER_LEN};
use crate::errors::TransferError;

/// Read-side buffer. Payloads larger than this bypass it and go straight from the
/// kernel into the destination (tokio's `BufReader` skips its buffer for big reads).
pub const READ_BUF: usize = 8 << 10;

/// TCP_NODELAY (small requests must not wait for Nagle) and optional buffer sizes.
pub fn tune(stream: &TcpStream, buf: usize) {
    let _ = stream.set_nodelay(true);
    if buf > 0 {
        let s = socket2::SockRef::from(stream);
        let _ = s.set_send_buffer_size(buf);
        let _ = s.set_recv_buffer_size(buf);
    }
}

/// Writes header and payload with as few syscalls as possible (writev).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    header: &Header,
    payload: &[u8],
) -> std::io::Result<()> {
    let hdr = header.encode();
    let total = HEADER_LEN + payload.len();
    let mut done = 0usize;
    while done < total {
        let n = if done < HEADER_LEN {
            let bufs = [IoSlice::new(&hdr[done..]), IoSlice::new(payload)];
            w.write_vectored(&bufs).await?
        } else {
            w.write(&payload[done - HEADER_LEN..]).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// Reads one header; `Ok(None)` on a clean EOF before the first byte.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Header>, TransferError> {
    let mut b = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r
            .read(&mut b[got..])
            .await
            .map_err(|e| TransferError::io("reading frame header", e))?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(TransferError::Frame(format!(
                "connection closed inside a header ({got} of {HEADER_LEN} bytes)"
            )));
        }
        got += n;
    }
    Header::decode(&b).map(Some)
}

/// Awaits one socket operation; with `stall`, an operation that makes no progress for
/// that long fails with `TimedOut` naming `what`.
pub async fn within<T>(
    stall: Option<Duration>,
    what: &str,
    op: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match stall {
        None => op.await,
        Some(d) => match tokio::time::timeout(d, op).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{what}: no progress for {d:?}"),
            )),
        },
    }
}

/// Reads and discards `n` bytes (a payload we refused), keeping the stream in sync.
/// `stall` bounds the wait for each read (see [`within`]).
pub async fn drain<R: AsyncRead + Unpin>(
    r: &mut R,
    mut n: u64,
    stall: Option<Duration>,
) -> std::io::Result<()> {
    let mut scratch = [0u8; 8192];
    while n > 0 {
        let want = n.min(scratch.len() as u64) as usize;
        let got = within(stall, "draining a payload", r.read(&mut scratch[..want])).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        n -= got as u64;
    }
    Ok(())
}

/// Control payloads are read in steps of at most this many bytes, so the buffer grows
/// with the bytes that actually arrive rather than with the length a peer announces.
const CONTROL_STEP: u64 = 64 << 10;

/// Reads a control payload of `n` bytes into a new buffer. A length above `limit` is
/// refused before anything is allocated; below it, the buffer never holds more than
/// one step beyond what arrived, so a peer announcing a large payload and sending
/// nothing costs nothing. `stall` bounds the wait for each read (see [`within`]).
pub async fn read_control<R: AsyncRead + Unpin>(
    r: &mut R,
    n: u64,
    limit: u64,
    stall: Option<Duration>,
) -> std::io::Result<Vec<u8>> {
    if n > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("control payload of {n} bytes exceeds the {limit}-byte limit"),
        ));
    }
    let mut v = Vec::with_capacity(n.min(CONTROL_STEP) as usize);
    while (v.len() as u64) < n {
        let start = v.len();
        let step = (n - start as u64).min(CONTROL_STEP) as usize;
        v.resize(start + step, 0);
        let got = within(stall, "reading a control payload", r.read(&mut v[start..])).await?;
        v.truncate(start + got);
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed after {start} of {n} control payload bytes"),
            ));
        }
    }
    Ok(v)
}

/// Flushes (a no-op for TcpStream halves, kept for generic writers).
pub async fn flush<W: AsyncWrite + Unpin>(w: &mut W) -> std::io::Result<()> {
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    /// Hands out `data` a few bytes at a time, then never again (a stalled peer), and
    /// records the largest buffer it was offered.
    struct Trickle {
        data: Vec<u8>,
        largest_offer: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.largest_offer = self.largest_offer.max(buf.remaining());
            if self.data.is_empty() {
                return Poll::Pending;
            }
            let n = self.data.len().min(3).min(buf.remaining());
            buf.put_slice(&self.data[..n]);
            self.data.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn announced_length_is_never_allocated_up_front() {
        let mut r = Trickle {
            data: b"ten bytes!".to_vec(),
            largest_offer: 0,
        };
        let announced = 16 << 20;
        let e = read_control(
            &mut r,
            announced,
            announced,
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("control payload"), "{e}");
        assert!(
            r.largest_offer as u64 <= CONTROL_STEP,
            "offered a {}-byte buffer for a payload that had sent 10 bytes",
            r.largest_offer
        );
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_and_a_full_payload_arrives_whole() {
        let mut r = Trickle {
            data: Vec::new(),
            largest_offer: 0,
        };
        let e = read_control(&mut r, 4097, 4096, None).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("4096"), "{e}");
        assert_eq!(r.largest_offer, 0, "read before checking the length");

        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut src = &payload[..];
        let got = read_control(&mut src, payload.len() as u64, 1 << 20, None)
            .await
            .unwrap();
        assert_eq!(got, payload);
        let mut short = &payload[..100];
        let e = read_control(&mut short, 200, 1 << 20, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}

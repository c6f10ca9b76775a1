//! Socket helpers shared by both ends of a data connection.

use std::io::IoSlice;
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

/// Reads and discards `n` bytes (a payload we refused), keeping the stream in sync.
pub async fn drain<R: AsyncRead + Unpin>(r: &mut R, mut n: u64) -> std::io::Result<()> {
    let mut scratch = [0u8; 8192];
    while n > 0 {
        let want = n.min(scratch.len() as u64) as usize;
        r.read_exact(&mut scratch[..want]).await?;
        n -= want as u64;
    }
    Ok(())
}

/// Reads a small control payload into a new buffer.
pub async fn read_control<R: AsyncRead + Unpin>(r: &mut R, n: u64) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v).await?;
    Ok(v)
}

/// Flushes (a no-op for TcpStream halves, kept for generic writers).
pub async fn flush<W: AsyncWrite + Unpin>(w: &mut W) -> std::io::Result<()> {
    w.flush().await
}

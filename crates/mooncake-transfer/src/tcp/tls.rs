//! TLS on the data port (`MOONCAKE_TRANSFER_TLS=1`, read in `crate::config`).
//!
//! Off by default: the data plane carries object bytes at memory speed and the token
//! handshake (`tcp::auth`) already keeps strangers out. On, every data connection is
//! mutual TLS before anything else: the listener presents this engine's certificate
//! and requires the peer's, both checked against the same CA file (a certificate that
//! is itself listed there is trusted as pinned, see `mooncake_tls`). The token
//! handshake then runs inside the encrypted stream as before.
//!
//! The two ends of a connection must agree; a mismatch is named on the side that
//! sees it (a plaintext peer reading a TLS alert, a TLS peer whose handshake meets
//! frames), never a hang: both handshakes are bounded by the connection timeouts.
//!
//! The payload copies (`WireRead`/`WireWrite`) are generic: a plaintext connection
//! keeps its zero-copy path (`tcp::guarded`: the kernel copies straight between the
//! socket and registered memory), a TLS one copies through a bounded buffer, since the
//! memory may be touched only between awaits and decryption needs a buffer anyway.

use mooncake_tls::{Acceptor, Connector, Stream};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
    ReadHalf, WriteHalf,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::frame::{Header, HEADER_LEN};
use super::guarded::MemAccess;
use super::io::within;
use crate::errors::TransferError;

/// What a process sets to turn data-port TLS on, for error messages.
const HINT: &str = "MOONCAKE_TRANSFER_TLS=1 (with MOONCAKE_TLS_CERT_FILE, MOONCAKE_TLS_KEY_FILE and MOONCAKE_TLS_CA_FILE)";

/// This engine's TLS on the data port: the listener's side and the initiator's.
#[derive(Clone)]
pub struct DataTls {
    acceptor: Acceptor,
    connector: Connector,
}

impl std::fmt::Debug for DataTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataTls")
    }
}

impl DataTls {
    /// This engine's certificate and key (presented on both sides) and the CA file
    /// peers' certificates must chain to. Whatever is wrong with a file is an error
    /// naming it.
    pub fn new(cert: &Path, key: &Path, ca: &Path) -> Result<Self, TransferError> {
        let bad = |e: mooncake_tls::TlsError| TransferError::Config(format!("data-port {e}"));
        let server = mooncake_tls::server_config(cert, key, Some(ca)).map_err(bad)?;
        let client = mooncake_tls::client_config(ca, Some((cert, key))).map_err(bad)?;
        Ok(Self {
            acceptor: Acceptor::new(server),
            connector: Connector::new(client),
        })
    }

    /// The listener's handshake, bounded by `timeout`. A peer whose first bytes are
    /// not TLS is named as a plaintext peer.
    pub(super) async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<Stream, TransferError> {
        let run = async {
            let mut head = [0u8; 2];
            let n = tcp
                .peek(&mut head)
                .await
                .map_err(|e| TransferError::io("waiting for a TLS handshake", e))?;
            if n > 0 && !mooncake_tls::looks_like_tls(&head[..n]) {
                // rustls answers it with an alert, which the peer names (see `Sniff`).
                tracing::debug!("a plaintext peer on the TLS data port");
            }
            self.acceptor.accept(tcp).await.map_err(|e| {
                TransferError::Config(format!(
                    "TLS handshake on the data port failed: {e} (this data port requires TLS; the peer needs {HINT})"
                ))
            })
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| {
            TransferError::Io(format!(
                "no TLS handshake on the data port within {timeout:?}"
            ))
        })?
    }

    /// The initiator's handshake with the listener at `remote` (its IP address is the
    /// name checked, unless the certificate is pinned).
    pub(super) async fn connect(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
    ) -> Result<Stream, TransferError> {
        self.connector
            .connect(&remote.ip().to_string(), tcp)
            .await
            .map_err(|e| {
                let why = match e.kind() {
                    io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::InvalidData => {
                        " (does that data port serve TLS? MOONCAKE_TRANSFER_TLS=1 is set here, so the peer needs it too)"
                    }
                    _ => "",
                };
                TransferError::Config(format!("data port at {remote}: {e}{why}"))
            })
    }
}

impl DataTls {
    /// `err`, from the first exchange after the handshake, as the caller should see
    /// it: under TLS 1.3 a listener that refuses this process's certificate says so
    /// with an alert that arrives only then.
    pub(super) fn explain(remote: SocketAddr, err: TransferError) -> TransferError {
        match &err {
            TransferError::Io(m) | TransferError::Frame(m) if m.contains("alert") => {
                TransferError::Config(format!(
                    "TLS: the data port at {remote} ended the session ({m}): it refused this process's certificate (is it in the peer's MOONCAKE_TLS_CA_FILE?)"
                ))
            }
            _ => err,
        }
    }
}

/// A plaintext stream that remembers the first bytes it read, so that an initiator
/// whose handshake fails can say the listener answered with TLS.
pub(super) struct Sniff<'a> {
    inner: &'a mut TcpStream,
    head: [u8; 2],
    seen: usize,
}

impl<'a> Sniff<'a> {
    pub(super) fn new(inner: &'a mut TcpStream) -> Self {
        Self {
            inner,
            head: [0; 2],
            seen: 0,
        }
    }

    /// `err` as the caller should see it: naming TLS when the listener spoke TLS.
    pub(super) fn explain(&self, remote: SocketAddr, err: TransferError) -> TransferError {
        if self.seen > 0 && mooncake_tls::looks_like_tls(&self.head[..self.seen]) {
            return TransferError::Config(format!(
                "the data port at {remote} requires TLS and this process speaks plaintext: set {HINT}"
            ));
        }
        err
    }
}

impl AsyncRead for Sniff<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        let take = new.len().min(this.head.len() - this.seen);
        this.head[this.seen..this.seen + take].copy_from_slice(&new[..take]);
        this.seen += take;
        r
    }
}

impl AsyncWrite for Sniff<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The read half of a data connection, as payload copies need it.
pub trait WireRead: AsyncRead + Unpin + Send + Sized + 'static {
    /// Reads `len` payload bytes into `mem`; `Ok(false)`: access was revoked and the
    /// rest was drained (see `tcp::guarded::read_into`).
    fn read_into<M: MemAccess + Sync>(
        rd: &mut BufReader<Self>,
        len: usize,
        mem: &M,
        stall: Option<Duration>,
    ) -> impl Future<Output = io::Result<bool>> + Send;
}

/// The write half of a data connection, as payload copies need it.
pub trait WireWrite: AsyncWrite + Unpin + Send + Sized + 'static {
    /// Writes `prefix` (whole frames that go first; usually empty), `header`, then
    /// `len` bytes from `mem`, and flushes (see `tcp::guarded::write_from`).
    fn write_from<M: MemAccess + Sync>(
        &mut self,
        prefix: &[u8],
        header: &Header,
        len: usize,
        mem: &M,
        stall: Option<Duration>,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// Plaintext: the kernel copies between the socket and the memory.
impl WireRead for OwnedReadHalf {
    fn read_into<M: MemAccess + Sync>(
        rd: &mut BufReader<Self>,
        len: usize,
        mem: &M,
        stall: Option<Duration>,
    ) -> impl Future<Output = io::Result<bool>> + Send {
        super::guarded::read_into(rd, len, mem, stall)
    }
}

impl WireWrite for OwnedWriteHalf {
    fn write_from<M: MemAccess + Sync>(
        &mut self,
        prefix: &[u8],
        header: &Header,
        len: usize,
        mem: &M,
        stall: Option<Duration>,
    ) -> impl Future<Output = io::Result<()>> + Send {
        super::guarded::write_from(self, prefix, header, len, mem, stall)
    }
}

/// Bytes a TLS payload is copied in at once (four TLS records).
const CHUNK: usize = 64 << 10;

/// TLS: decrypted bytes go through a buffer into the memory.
impl WireRead for ReadHalf<Stream> {
    async fn read_into<M: MemAccess + Sync>(
        rd: &mut BufReader<Self>,
        len: usize,
        mem: &M,
        stall: Option<Duration>,
    ) -> io::Result<bool> {
        let mut got = 0usize;
        let mut revoked = false;
        let mut scratch = Vec::new();
        while got < len {
            let want = (len - got).min(CHUNK);
            let n = if !rd.buffer().is_empty() {
                let n = rd.buffer().len().min(want);
                scratch.clear();
                scratch.extend_from_slice(&rd.buffer()[..n]);
                rd.consume(n);
                n
            } else {
                scratch.resize(want, 0);
                within(stall, "reading a payload", rd.read(&mut scratch[..want])).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if !revoked {
                let src = scratch.as_ptr();
                // SAFETY: `with` grants access to `len` bytes; we write within [got, got+n)
                // and `got + n <= len`.
                revoked = mem
                    .with(|p| unsafe { std::ptr::copy_nonoverlapping(src, p.add(got), n) })
                    .is_none();
            }
            got += n;
        }
        Ok(!revoked)
    }
}

/// TLS: the memory is copied into a buffer that the stream encrypts.
impl WireWrite for WriteHalf<Stream> {
    async fn write_from<M: MemAccess + Sync>(
        &mut self,
        prefix: &[u8],
        header: &Header,
        len: usize,
        mem: &M,
        stall: Option<Duration>,
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(prefix.len() + HEADER_LEN + len.min(CHUNK));
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(&header.encode());
        let mut done = 0usize;
        loop {
            let n = (len - done).min(CHUNK);
            if n > 0 {
                // SAFETY: access granted for [p, p+len); we read [done, done+n).
                mem.with(|p| {
                    buf.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(p.add(done) as *const u8, n)
                    })
                })
                .ok_or_else(|| io::Error::other("memory access revoked mid-frame"))?;
            }
            within(stall, "writing a payload", self.write_all(&buf)).await?;
            done += n;
            buf.clear();
            if done >= len {
                break;
            }
        }
        within(stall, "writing a payload", self.flush()).await
    }
}

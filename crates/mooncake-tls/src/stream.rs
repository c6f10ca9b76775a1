//! A TCP connection that is plain or TLS, and what makes a TLS one.

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

enum Kind {
    Plain(TcpStream),
    Server(Box<server::TlsStream<TcpStream>>),
    Client(Box<client::TlsStream<TcpStream>>),
}

/// A connection, plain or TLS. Bytes [`Stream::peek`] took from a TLS connection are
/// read again first.
pub struct Stream {
    kind: Kind,
    replay: Vec<u8>,
    at: usize,
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Self {
        Self::new(Kind::Plain(tcp))
    }
}

impl Stream {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            replay: Vec::new(),
            at: 0,
        }
    }

    /// The TCP connection underneath (for readiness, options and the peer's address).
    pub fn tcp(&self) -> &TcpStream {
        match &self.kind {
            Kind::Plain(s) => s,
            Kind::Server(s) => s.get_ref().0,
            Kind::Client(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self.kind, Kind::Plain(_))
    }

    /// The first bytes the peer sent, without consuming them (at least one; 0 when
    /// the peer closed). Waits for them.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Kind::Plain(s) = &self.kind {
            return s.peek(buf).await;
        }
        if self.at >= self.replay.len() {
            let mut first = vec![0u8; buf.len().max(1)];
            let n = match &mut self.kind {
                Kind::Plain(_) => unreachable!("handled above"),
                Kind::Server(s) => s.read(&mut first).await?,
                Kind::Client(s) => s.read(&mut first).await?,
            };
            first.truncate(n);
            self.replay = first;
            self.at = 0;
        }
        let pending = &self.replay[self.at..];
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        Ok(n)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.replay.len() {
            let pending = &this.replay[this.at..];
            let n = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..n]);
            this.at += n;
            if this.at == this.replay.len() {
                this.replay = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.kind {
            Kind::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Kind::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Kind::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().kind {
            Kind::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Kind::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Kind::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.kind {
            Kind::Plain(s) => s.is_write_vectored(),
            Kind::Server(s) => s.is_write_vectored(),
            Kind::Client(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// The server side of the handshake. Callers bound it with a timeout: a peer that
/// stops mid-handshake must not hold its connection slot.
#[derive(Clone)]
pub struct Acceptor {
    inner: TlsAcceptor,
    cfg: Arc<ServerConfig>,
}

impl Acceptor {
    pub fn new(cfg: Arc<ServerConfig>) -> Self {
        Self {
            inner: TlsAcceptor::from(cfg.clone()),
            cfg,
        }
    }

    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let s = self.inner.accept(tcp).await?;
        Ok(Stream::new(Kind::Server(Box::new(s))))
    }
}

/// The same configuration (not an equal one).
impl PartialEq for Acceptor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cfg, &other.cfg)
    }
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

/// The client side of the handshake.
#[derive(Clone)]
pub struct Connector(TlsConnector);

impl Connector {
    pub fn new(cfg: Arc<ClientConfig>) -> Self {
        Self(TlsConnector::from(cfg))
    }

    /// A TLS connection over `tcp` to `host` (a DNS name or an IP address, as the
    /// server's certificate must name it). A failed handshake's error says TLS.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> io::Result<Stream> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS: {host:?} is not a server name: {e}"),
            )
        })?;
        let s = self
            .0
            .connect(name, tcp)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
        Ok(Stream::new(Kind::Client(Box::new(s))))
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

//! The transports to the master. [`MasterChannel`] is what the client uses: the framed
//! protocol (`crate::framed::FramedChannel`) unless the client's tuning
//! (`ClientTuning::master_protocol`) selects [`DirectChannel`], gRPC over one HTTP/2 connection driven by hyper directly.
//!
//! tonic's `Channel` puts a `tower::Buffer` in front of its connection, so every call is
//! handed to a worker task and its answer handed back: two extra task wake-ups per
//! round trip, which on a busy 2-core host cost as much as the master's own work for a
//! small call. Here a call goes from the caller's task straight into hyper's HTTP/2
//! connection. Like `Channel`, nothing is dialled until the first call, and a broken
//! connection is re-dialled by the next call (meanwhile calls fail with `UNAVAILABLE`,
//! which the client reports as `RPC_FAIL`).

pub use crate::framed::{CallMode, FramedChannel};
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mooncake_tls::{Connector, Stream};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response, Uri};
use tonic::codegen::Service;
use tonic::Status;

/// Connection settings; the defaults match what the client used with `Channel`.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// Bound on the TCP connect; the handshakes after it (TLS, HTTP/2, the token's
    /// proof) get this plus `timeout`.
    pub connect_timeout: Duration,
    /// Bound on one call once connected (`DEADLINE_EXCEEDED` after it).
    pub timeout: Option<Duration>,
    /// HTTP/2 PING interval (also while idle), so a master that vanished without
    /// closing the connection is noticed; `None` disables it.
    pub keep_alive: Option<Duration>,
    /// The token every new connection proves (`crate::auth`); `None`: none.
    pub auth: Option<crate::auth::ClientAuth>,
}

impl Default for DirectConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            timeout: None,
            keep_alive: Some(Duration::from_secs(5)),
            auth: None,
        }
    }
}

/// A cheaply cloned handle on one lazily dialled HTTP/2 connection to `host:port`.
#[derive(Clone)]
pub struct DirectChannel {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    cfg: DirectConfig,
    /// The live connection's sender; replaced when it is found closed.
    sender: parking_lot::Mutex<Option<SendRequest<Body>>>,
    /// One dial at a time: concurrent first calls share one connection.
    dialing: tokio::sync::Mutex<()>,
    /// TLS to the master (`MOONCAKE_TLS_*`), or why the settings are unusable.
    tls: Result<Option<Connector>, String>,
}

impl DirectChannel {
    /// A handle for `addr` (`host:port`); nothing is dialled yet.
    pub fn new(addr: &str, cfg: DirectConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                cfg,
                sender: parking_lot::Mutex::new(None),
                dialing: tokio::sync::Mutex::new(()),
                tls: mooncake_tls::config::client().map_err(|e| e.to_string()),
            }),
        }
    }

    /// The URI tonic's generated clients need as origin (`MasterClient::with_origin`).
    pub fn origin(&self) -> Result<Uri, String> {
        format!("http://{}", self.inner.addr)
            .parse()
            .map_err(|e| format!("master address {:?}: {e}", self.inner.addr))
    }

    fn live(&self) -> Option<SendRequest<Body>> {
        self.inner
            .sender
            .lock()
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned()
    }

    async fn sender(&self) -> Result<SendRequest<Body>, Status> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _one = self.inner.dialing.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        // The TCP connect alone is bounded by `connect_timeout` (in `dial`), which is
        // what makes an unreachable master fail fast; the TLS, HTTP/2 and token
        // handshakes after it are CPU work on both sides and get the call's bound on
        // top, so a loaded host does not turn a slow handshake into "unreachable".
        let cfg = &self.inner.cfg;
        let bound = cfg.connect_timeout + cfg.timeout.unwrap_or_default();
        let s = tokio::time::timeout(bound, self.dial())
            .await
            .map_err(|_| {
                Status::unavailable(format!(
                    "cannot connect to {}: no answer within {bound:?}",
                    self.inner.addr
                ))
            })??;
        *self.inner.sender.lock() = Some(s.clone());
        Ok(s)
    }

    async fn dial(&self) -> Result<SendRequest<Body>, Status> {
        let addr = &self.inner.addr;
        let fail = |e: &dyn std::fmt::Display| {
            Status::unavailable(format!("cannot connect to {addr}: {e}"))
        };
        let tls = self.inner.tls.as_ref().map_err(|e| fail(e))?;
        let connect = tokio::net::TcpStream::connect(addr.as_str());
        let stream = tokio::time::timeout(self.inner.cfg.connect_timeout, connect)
            .await
            .map_err(|_| {
                fail(&format_args!(
                    "no answer within {:?}",
                    self.inner.cfg.connect_timeout
                ))
            })?
            .map_err(|e| fail(&e))?;
        // Control-plane messages are small and latency-bound: no Nagle delay.
        stream.set_nodelay(true).map_err(|e| fail(&e))?;
        let stream = match tls {
            None => Stream::from(stream),
            Some(c) => {
                let host = mooncake_common::hostname::split_host_port(addr).0;
                c.connect(host, stream).await.map_err(|e| fail(&e))?
            }
        };
        let mut b = Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new());
        if let Some(every) = self.inner.cfg.keep_alive {
            b.keep_alive_interval(every)
                .keep_alive_timeout(every)
                .keep_alive_while_idle(true);
        }
        let (tx, conn) = b
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            // Ends when the master closes the connection or a keep-alive goes
            // unanswered; the next call then dials again.
            let _ = conn.await;
        });
        if let Some(auth) = &self.inner.cfg.auth {
            self.authenticate(auth, tx.clone()).await?;
        }
        Ok(tx)
    }

    /// Proves the token on the new connection `tx` (`Auth.Challenge`, then
    /// `Auth.Authenticate`); every later call on it runs as the proven tenant.
    async fn authenticate(
        &self,
        auth: &crate::auth::ClientAuth,
        tx: SendRequest<Body>,
    ) -> Result<(), Status> {
        let one = DirectChannel {
            inner: Arc::new(Inner {
                addr: self.inner.addr.clone(),
                cfg: DirectConfig {
                    auth: None,
                    ..self.inner.cfg.clone()
                },
                sender: parking_lot::Mutex::new(Some(tx)),
                dialing: tokio::sync::Mutex::new(()),
                tls: self.inner.tls.clone(),
            }),
        };
        let origin = one.origin().map_err(Status::invalid_argument)?;
        let mut c = mooncake_proto::auth_client::AuthClient::with_origin(one, origin);
        let hello = c
            .challenge(mooncake_proto::ChallengeRequest {})
            .await?
            .into_inner();
        let (peer_nonce, proof) = auth.answer(&hello.challenge)?;
        c.authenticate(mooncake_proto::AuthenticateRequest {
            peer_nonce,
            proof,
            tenant_id: auth.tenant_id.clone().unwrap_or_default(),
        })
        .await?;
        Ok(())
    }

    async fn send(self, req: Request<Body>) -> Result<Response<Body>, Status> {
        let mut tx = self.sender().await?;
        let addr = &self.inner.addr;
        let call = tx.send_request(req);
        let resp = match self.inner.cfg.timeout {
            Some(t) => tokio::time::timeout(t, call).await.map_err(|_| {
                Status::deadline_exceeded(format!("master {addr} did not answer within {t:?}"))
            })?,
            None => call.await,
        }
        .map_err(|e| Status::unavailable(format!("master {addr}: {e}")))?;
        Ok(resp.map(Body::new))
    }
}

impl Service<Request<Body>> for DirectChannel {
    type Response = Response<Body>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // HTTP/2 multiplexes: a call never waits for another to finish.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(req))
    }
}

/// Which protocol calls to the master use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `mooncake_proto::frame` over a pool of connections (the default).
    #[default]
    Framed,
    /// gRPC over HTTP/2.
    Grpc,
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "framed" => Ok(Protocol::Framed),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(format!(
                "unknown master protocol {other:?} (framed or grpc)"
            )),
        }
    }
}

/// A master connection of either protocol; `crate::calls::MasterCalls` makes typed
/// calls on it.
#[derive(Clone)]
pub enum MasterChannel {
    Framed(FramedChannel),
    Grpc(DirectChannel),
}

impl MasterChannel {
    /// A handle for `addr` (`host:port`); nothing is dialled yet.
    pub fn new(addr: &str, cfg: DirectConfig, protocol: Protocol) -> Self {
        match protocol {
            Protocol::Framed => MasterChannel::Framed(FramedChannel::new(addr, cfg)),
            Protocol::Grpc => MasterChannel::Grpc(DirectChannel::new(addr, cfg)),
        }
    }

    /// This handle with framed calls done in `mode` (gRPC calls are always
    /// asynchronous); connections stay shared with `self`.
    pub fn with_mode(self, mode: CallMode) -> Self {
        match self {
            MasterChannel::Framed(c) => MasterChannel::Framed(c.with_mode(mode)),
            grpc => grpc,
        }
    }

    /// This handle with blocking framed calls polling for their answer for up to
    /// `spin` before sleeping in `recv`.
    pub fn with_spin(self, spin: Duration) -> Self {
        match self {
            MasterChannel::Framed(c) => MasterChannel::Framed(c.with_spin(spin)),
            grpc => grpc,
        }
    }
}

/// A codec whose requests are protobuf bytes encoded beforehand (see
/// `KeyBatch`) and whose answers are decoded as `U`: a large request is built
/// from borrowed keys in one buffer instead of one `String` per key.
pub struct PreEncoded<U>(std::marker::PhantomData<fn() -> U>);

impl<U> Default for PreEncoded<U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

/// Writes already encoded message bytes.
pub struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = bytes::Bytes;
    type Error = Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

/// Decodes one protobuf message.
pub struct MessageDecoder<U>(std::marker::PhantomData<fn() -> U>);

impl<U: prost::Message + Default> tonic::codec::Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable answer: {e}")))
    }
}

impl<U: prost::Message + Default + Send + 'static> tonic::codec::Codec for PreEncoded<U> {
    type Encode = bytes::Bytes;
    type Decode = U;
    type Encoder = RawEncoder;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> MessageDecoder<U> {
        MessageDecoder(std::marker::PhantomData)
    }
}

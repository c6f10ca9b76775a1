//! The rpc port's one accept loop, for a plain master and an HA one alike: each
//! connection is peeked once and served either as the framed protocol (its magic) or
//! as HTTP/2 gRPC, both through the same gate.
//!
//! HTTP/2 goes to hyper's server directly rather than `tonic::transport::Server`:
//! every client speaks HTTP/2 with prior knowledge, so tonic's HTTP/1-or-2 detection
//! and the boxed layers around every call are per-call work with nothing to do.
//! Answers carry no `date` header. Connections get `TCP_NODELAY` (control messages
//! are small and latency-bound).
//!
//! With TLS (`MasterTuning::tls`) the handshake comes first, within the same
//! handshake timeout, and the protocol is told from the decrypted bytes.
//!
//! Every connection holds one of `max_connections` permits; one accepted beyond them
//! is closed at once, so a flood costs its peer a refused connection and the master
//! nothing it keeps. A connection that does not show its protocol within the
//! handshake timeout is closed; HTTP/2 connections are pinged and closed when the
//! peer stops answering; framed ones have their own timeouts (`framed`).
//!
//! With authentication on (`tuning.auth`), each HTTP/2 connection has its own
//! [`ConnAuth`]: its `Auth` service calls prove a token, and every other call on it is
//! answered UNAUTHENTICATED until one was proven; a proven call carries its [`Tenant`]
//! (`auth`) in the request's extensions to the gRPC service.

use super::auth::{self as auth, ConnAuth, AUTH_PREFIX};
use super::framed::{self, PollShared};
use super::grpc;
use crate::api::Gate;
use crate::config::MasterTuning;
use hyper::server::conn::http2::Builder;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mooncake_proto::frame::MAGIC;
use mooncake_tls::{Acceptor, Stream};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::codegen::Service;

type BoxAnswer = Pin<Box<dyn Future<Output = Result<hyper::Response<Body>, Infallible>> + Send>>;

/// Another gRPC service on the same port (the owners' drain and tier work, HA's
/// `Follow`), chosen by the prefix of the request's path.
#[derive(Clone)]
pub struct Extra {
    pub prefix: &'static str,
    pub call: Arc<dyn Fn(hyper::Request<Body>) -> BoxAnswer + Send + Sync>,
}

/// HTTP/2 limits: a request's headers are a path and a few fixed fields.
const MAX_HEADER_LIST: u32 = 16 * 1024;
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The connection ready for its protocol, and whether that is the framed one: with
/// TLS the handshake comes first and the first bytes are looked at decrypted. A
/// framed client speaking plaintext to a TLS port is answered with an error frame
/// that says so (a gRPC one is closed): both otherwise see a bare close.
async fn open(stream: TcpStream, tls: Option<&Acceptor>) -> std::io::Result<(Stream, bool)> {
    let Some(tls) = tls else {
        let mut stream = Stream::from(stream);
        let framed = framed::is_framed(&mut stream).await?;
        return Ok((stream, framed));
    };
    let mut first = [0u8; MAGIC.len()];
    let n = stream.peek(&mut first).await?;
    if n > 0 && first[..n] == MAGIC[..n] {
        framed::refuse_plaintext(stream).await;
        return Err(std::io::Error::other(
            "plaintext framed client on a TLS port",
        ));
    }
    let mut stream = tls.accept(stream).await?;
    let framed = framed::is_framed(&mut stream).await?;
    Ok((stream, framed))
}

/// Serves the control plane on `listener` until `shutdown` resolves, then lets every
/// connection finish its in-flight call (HTTP/2 GOAWAY) and returns.
pub async fn serve<G: Gate>(
    gate: G,
    extras: Vec<Extra>,
    listener: tokio::net::TcpListener,
    tuning: MasterTuning,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Err(e) = tuning.validate() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    }
    let tuning = Arc::new(tuning);
    let extras: Arc<[Extra]> = extras.into();
    let svc = grpc::server(gate.clone());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .auto_date_header(false)
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_LIST)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let permits = Arc::new(Semaphore::new(tuning.max_connections));
    let poll = Arc::new(PollShared::default());
    let refused = AtomicU64::new(0);
    let (stop, stopping) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        // Logged at the first refusal and then every 1000th.
                        if refused.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                            tracing::warn!(
                                "rpc port: {} connections open (the limit); refusing {peer}",
                                tuning.max_connections
                            );
                        }
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let conn_auth = Arc::new(ConnAuth::default());
                    let auth_svc = auth::grpc_service(conn_auth.clone(), tuning.auth.clone(), Some(peer));
                    let (gate, svc, extras) = (gate.clone(), svc.clone(), extras.clone());
                    let (builder, tuning, poll) = (builder.clone(), tuning.clone(), poll.clone());
                    let mut stopping = stopping.clone();
                    conns.spawn(async move {
                        let _permit = permit;
                        let opened = tokio::select! {
                            f = tokio::time::timeout(tuning.handshake_timeout, open(stream, tuning.tls.as_ref())) => f,
                            _ = stopping.wait_for(|s| *s) => return,
                        };
                        let stream = match opened {
                            Ok(Ok((stream, true))) => {
                                return framed::serve_connection(stream, gate, &tuning, poll, stopping).await;
                            }
                            Ok(Ok((stream, false))) => stream,
                            // Closed, failed, refused or silent: nothing to serve.
                            _ => return,
                        };
                        let rpc_auth = tuning.auth.clone();
                        let handler = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| -> BoxAnswer {
                            if req.uri().path().starts_with(AUTH_PREFIX) {
                                let mut a = auth_svc.clone();
                                return Box::pin(async move { a.call(req).await });
                            }
                            let Some(tenant) = conn_auth.tenant(&rpc_auth) else {
                                return Box::pin(async { Ok(auth::unauthenticated().into_http()) });
                            };
                            if let Some(x) = extras.iter().find(|x| req.uri().path().starts_with(x.prefix)) {
                                return (x.call)(req.map(Body::new));
                            }
                            req.extensions_mut().insert(tenant);
                            let mut svc = svc.clone();
                            Box::pin(async move { svc.call(req).await })
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), handler);
                        tokio::pin!(conn);
                        let stop_asked = async move {
                            let _ = stopping.wait_for(|s| *s).await;
                        };
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            _ = stop_asked => {}
                        }
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    });
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep
                    // serving the connections we have and try again shortly.
                    tracing::warn!("rpc accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    let _ = stop.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

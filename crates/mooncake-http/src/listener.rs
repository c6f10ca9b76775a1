//! The serving loop and what each connection is wrapped in: the admission table
//! behind the connection cap, the request body and socket wrappers behind the stall
//! timeouts and the body limit.

use crate::Limits;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use mooncake_tls::{Acceptor, Stream};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// How long a newcomer over the cap waits for the evicted connection to let go of
/// its slot (it only has to be scheduled) before it is closed instead.
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    serve_tls(listener, app, shutdown, limits, None).await
}

/// [`serve`], with every connection TLS when `tls` is given (HTTPS). The handshake
/// counts against the header timeout and happens on the connection's task, holding
/// its slot: a peer that stops mid-handshake is cut off like one that stops
/// mid-head, and gives way to newcomers over the cap like an idle one.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
    tls: Option<Acceptor>,
) -> std::io::Result<()> {
    let cap = effective_cap(limits.max_connections, descriptor_limit());
    if cap < limits.max_connections {
        tracing::warn!(
            wanted = limits.max_connections,
            cap,
            addr = ?listener.local_addr().ok(),
            "HTTP connection cap lowered to a quarter of the descriptor limit; raise `ulimit -n` to allow more"
        );
    }
    let permits = Arc::new(Semaphore::new(cap));
    let table = ConnTable::new();
    let (drain_tx, drain_rx) = watch::channel(());
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(permit) = admit(&permits, &table).await else {
                        tracing::debug!(%peer, "HTTP port at its cap with a request in flight on every connection; closing a new one");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let reg = table.register();
                    let (app, drain, tls) = (app.clone(), drain_rx.clone(), tls.clone());
                    conns.spawn(async move {
                        let _permit = permit;
                        let stream = match tls {
                            None => Stream::from(stream),
                            Some(tls) => match handshake(&tls, stream, &reg, limits).await {
                                Some(s) => s,
                                None => return,
                            },
                        };
                        connection(stream, peer, app, reg, limits, drain).await;
                    });
                }
                Err(e) => {
                    // EMFILE/ENFILE or a connection reset before it was accepted:
                    // wait for descriptors to come back rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    drop(drain_rx);
    let _ = drain_tx.send(());
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// A slot for a new connection: a free one, or one an idle connection gives up.
/// `None`: every connection has a request in flight, so the new one is closed at once.
async fn admit(permits: &Arc<Semaphore>, table: &ConnTable) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = permits.clone().try_acquire_owned() {
        return Some(p);
    }
    if !table.evict_one() {
        return None;
    }
    tokio::time::timeout(EVICT_WAIT, permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// The server side of a TLS handshake within the header timeout; `None` when it
/// failed, timed out or the connection was told to give way. A client whose first
/// byte is not a TLS handshake record is answered in plain HTTP, 400 with the reason
/// (an `http://` URL for an `https://` port), rather than with a TLS alert it cannot
/// read.
async fn handshake(
    tls: &Acceptor,
    stream: TcpStream,
    reg: &Registration,
    limits: Limits,
) -> Option<Stream> {
    let peer = stream.peer_addr().ok();
    let run = async {
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await?;
        if n == 1 && first[0] != mooncake_tls::HANDSHAKE_RECORD {
            refuse_plaintext(stream).await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a plain HTTP request on this HTTPS port (answered 400)",
            ));
        }
        tls.accept(stream).await
    };
    tokio::select! {
        r = tokio::time::timeout(limits.header_timeout, run) => match r {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "HTTPS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(?peer, "HTTPS handshake did not finish within the header timeout");
                None
            }
        },
        _ = reg.slot.evict.notified() => None,
    }
}

/// What a plain HTTP client on an HTTPS port is told.
const PLAINTEXT_REFUSAL: &str = "this port serves HTTPS only: use an https:// URL\n";

/// Answers a plaintext client 400 and closes. The request is read (up to 64 KiB, for
/// a second at most) after the answer is sent, so that closing with it unread does
/// not reset the connection before the client has read the answer.
async fn refuse_plaintext(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAINTEXT_REFUSAL}",
        PLAINTEXT_REFUSAL.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while total < 64 << 10 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Serves one connection until it closes, is evicted, or drains at shutdown.
async fn connection(
    stream: Stream,
    peer: SocketAddr,
    app: Router,
    reg: Registration,
    limits: Limits,
    mut drain: watch::Receiver<()>,
) {
    let slot = reg.slot.clone();
    let inner = TowerToHyperService::new(app);
    let svc_slot = slot.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // Handlers and middleware see who is asking (refusals are logged with it).
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let guard = InRequest::start(svc_slot.clone());
        let too_large = content_length(&req).filter(|n| *n > limits.max_body_bytes);
        let answer = match too_large {
            Some(n) => Err(n),
            None => Ok(inner.call(req.map(|b| Body::new(BoundedBody::new(b, limits))))),
        };
        async move {
            let resp = match answer {
                Ok(answer) => answer.await?,
                Err(n) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body of {n} bytes exceeds the {}-byte limit",
                        limits.max_body_bytes
                    ),
                )
                    .into_response(),
            };
            Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked { inner: b, guard }))
        }
    });
    let io = TokioIo::new(StallIo::new(stream, limits.write_stall_timeout));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let conn = builder.serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection closed");
                }
                break;
            }
            _ = drain.changed(), if !draining => {
                // Nothing is owed to a connection without a request in flight (a
                // partial head included): close it rather than wait out its timeout.
                if slot.is_idle() {
                    break;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = slot.evict.notified() => {
                tracing::debug!("HTTP connection closed to admit a newer one (port at its cap)");
                break;
            }
        }
    }
    drop(reg);
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Marks the connection as serving a request until the answer's body is done.
struct InRequest(Arc<Slot>);

impl InRequest {
    fn start(slot: Arc<Slot>) -> Self {
        slot.in_request();
        Self(slot)
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.idle();
    }
}

/// An answer's body; the connection is idle again once hyper is done with it.
struct Tracked {
    inner: Body,
    #[allow(dead_code)] // held for its Drop
    guard: InRequest,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that errors when it passes `max_body_bytes` or pauses for
/// `body_stall_timeout`.
struct BoundedBody {
    inner: Incoming,
    seen: u64,
    limit: u64,
    stall: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl BoundedBody {
    fn new(inner: Incoming, limits: Limits) -> Self {
        Self {
            inner,
            seen: 0,
            limit: limits.max_body_bytes,
            stall: limits.body_stall_timeout,
            sleep: None,
        }
    }
}

impl hyper::body::Body for BoundedBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.sleep = None;
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("request body exceeds the {}-byte limit", this.limit),
                        ))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let stall = this.stall;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("request body stalled for {stall:?}"),
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, with writes that fail once they make no progress for `stall`.
struct StallIo {
    inner: Stream,
    stall: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl StallIo {
    fn new(inner: Stream, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            sleep: None,
        }
    }

    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let stall = self.stall;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("client read nothing of its answer for {stall:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.sleep = None;
                ready
            }
        }
    }
}

impl AsyncRead for StallIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One open connection, as the admission table sees it.
struct Slot {
    /// Nanoseconds after the table's epoch since which the connection has been waiting
    /// for a request (a partial head counts as waiting); 0 while it serves one.
    idle_since: AtomicU64,
    /// Has sent at least one whole request.
    served: AtomicBool,
    /// Chosen to give way; set once.
    evicted: AtomicBool,
    evict: Notify,
    epoch: Instant,
}

impl Slot {
    fn idle(&self) {
        let ns = self.epoch.elapsed().as_nanos() as u64;
        self.idle_since.store(ns.max(1), Relaxed);
    }

    fn is_idle(&self) -> bool {
        self.idle_since.load(Relaxed) != 0
    }

    fn in_request(&self) {
        self.idle_since.store(0, Relaxed);
        self.served.store(true, Relaxed);
    }
}

/// The open connections of one listener.
struct ConnTable {
    epoch: Instant,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// Removes its slot from the table when the connection ends.
struct Registration {
    table: Arc<ConnTable>,
    id: u64,
    slot: Arc<Slot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.slots.lock().remove(&self.id);
    }
}

impl ConnTable {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn register(self: &Arc<Self>) -> Registration {
        let slot = Arc::new(Slot {
            idle_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        slot.idle();
        let id = self.next_id.fetch_add(1, Relaxed);
        self.slots.lock().insert(id, slot.clone());
        Registration {
            table: self.clone(),
            id,
            slot,
        }
    }

    /// Tells the connection that should give way to close: the longest idle among
    /// those that never sent a whole request, else the longest idle of all. `false`
    /// when every connection has a request in flight.
    fn evict_one(&self) -> bool {
        let slots = self.slots.lock();
        let victim = slots
            .values()
            .filter(|s| !s.evicted.load(Relaxed))
            .filter_map(|s| {
                let since = s.idle_since.load(Relaxed);
                (since != 0).then_some((s.served.load(Relaxed), since, s))
            })
            .min_by_key(|(served, since, _)| (*served, *since))
            .map(|(_, _, s)| s.clone());
        drop(slots);
        match victim {
            Some(s) => {
                s.evicted.store(true, Relaxed);
                s.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The process's soft limit on open descriptors, from `/proc/self/limits` (`None`
/// when unreadable or unlimited).
fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `wanted`, lowered to a quarter of the descriptor limit (never below 16).
fn effective_cap(wanted: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(l) => wanted.min(((l / 4) as usize).max(16)),
        None => wanted,
    }
    .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_give_way_before_clients_and_requests_in_flight_never() {
        let t = ConnTable::new();
        let client = t.register();
        client.slot.in_request();
        client.slot.idle();
        std::thread::sleep(Duration::from_millis(2));
        let stranger = t.register();
        let busy = t.register();
        busy.slot.in_request();
        assert!(t.evict_one());
        assert!(stranger.slot.evicted.load(Relaxed));
        assert!(!client.slot.evicted.load(Relaxed));
        assert!(t.evict_one());
        assert!(client.slot.evicted.load(Relaxed));
        assert!(!t.evict_one());
        assert!(!busy.slot.evicted.load(Relaxed));
        drop(stranger);
        assert_eq!(t.slots.lock().len(), 2);
    }

    #[test]
    fn cap_leaves_room_under_the_descriptor_limit() {
        assert_eq!(effective_cap(1024, Some(1024)), 256);
        assert_eq!(effective_cap(1024, Some(1 << 20)), 1024);
        assert_eq!(effective_cap(1024, None), 1024);
        assert_eq!(effective_cap(1024, Some(8)), 16);
        assert!(descriptor_limit().is_some_and(|l| l > 0));
    }
}

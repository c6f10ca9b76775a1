//! The master's side of the framed control-plane protocol (`mooncake_proto::frame`),
//! served on the rpc port next to gRPC: a connection whose first bytes are the frame
//! magic is handed here, anything else goes to HTTP/2.
//!
//! One dispatch for both protocols: each request frame becomes the `http::Request` a
//! gRPC call would have produced (path, `content-type: application/grpc`, the message
//! behind its 5-byte gRPC prefix) and goes through the same tower service
//! (`MasterServer`, or the HA `FencedService` with its fence and replication wait);
//! the answer's message and status (from trailers, or a trailers-only answer) become
//! the answer frame. One task per connection, calls handled inline, one call in flight.
//! `BatchExist` skips that detour (`direct`).

pub mod direct;

use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use mooncake_proto::frame::{self, FrameError, MAGIC};
use mooncake_proto::status::ERROR_CODE_KEY;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::http::{header, HeaderValue, Request, Response, Uri};
use tonic::codegen::Service;
use tonic::{Code, Status};

/// Whether the connection speaks the framed protocol: its first bytes (peeked, not
/// consumed) are a prefix of the magic. Waits for the client's first bytes.
pub async fn is_framed(stream: &TcpStream) -> bool {
    let mut first = [0u8; MAGIC.len()];
    match stream.peek(&mut first).await {
        Ok(n) if n > 0 => first[..n] == MAGIC[..n],
        _ => false,
    }
}

/// A request or answer body of at most one chunk and no trailers.
pub(crate) struct OneChunk(Option<Bytes>);

impl HttpBody for OneChunk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Serves one framed connection with `svc` until the client closes it, a frame is
/// bad, or `stopping` turns true (a call in progress is finished and answered first).
pub async fn serve_connection<S, D>(
    stream: TcpStream,
    mut svc: S,
    direct: D,
    mut stopping: watch::Receiver<bool>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    D: direct::Direct,
{
    // Buffered reads: a frame's length and body usually arrive in one syscall.
    let mut stream = BufReader::with_capacity(16 * 1024, stream);
    let mut magic = [0u8; MAGIC.len()];
    let read = tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => return,
        r = stream.read_exact(&mut magic) => r,
    };
    if read.is_err() || magic != MAGIC {
        return;
    }
    let mut out = Vec::with_capacity(4096);
    let mut poll = NextPoll::new(poll_window());
    loop {
        let idle_since = Instant::now();
        if stream.buffer().is_empty() {
            poll.wait(stream.get_ref()).await;
        }
        let read = tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => return,
            r = read_frame(&mut stream) => r,
        };
        let buf = match read {
            Ok(b) => {
                poll.arrived(idle_since.elapsed());
                b
            }
            Err(ReadError::Closed) => return,
            Err(ReadError::Frame(e)) => {
                // Answer why, then close: the stream cannot be resynchronised.
                out.clear();
                let msg = format!("framed rpc: {e}");
                let code = match e {
                    FrameError::TooLarge { .. } => Code::ResourceExhausted,
                    _ => Code::InvalidArgument,
                };
                if frame::encode_answer(code as u32, 0, &msg, b"", &mut out).is_ok() {
                    let _ = stream.write_all(&out).await;
                }
                tracing::warn!("{msg}");
                return;
            }
        };
        out.clear();
        let answered = match direct::call(&direct, &buf, &mut out) {
            Some(answered) => answered,
            None => match to_http(buf) {
                Ok(req) => {
                    if std::future::poll_fn(|cx| svc.poll_ready(cx)).await.is_err() {
                        return;
                    }
                    let resp = match svc.call(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    answer_frame(resp, &mut out).await
                }
                Err(e) => Err(Status::invalid_argument(format!("framed rpc: {e}"))),
            },
        };
        if let Err(status) = answered {
            out.clear();
            if let Err(e) = encode_status(&status, &mut out) {
                tracing::warn!("framed rpc: cannot encode an answer: {e}");
                return;
            }
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
        if out.capacity() > 1 << 20 {
            out = Vec::with_capacity(4096);
        }
    }
}

/// How long a connection's task keeps its worker awake for the client's next request
/// (`MOONCAKE_MASTER_POLL_US`, default [`DEFAULT_POLL_US`]; 0 turns it off).
pub(crate) fn poll_window() -> Duration {
    static W: OnceLock<Duration> = OnceLock::new();
    *W.get_or_init(|| {
        const DEFAULT: Duration = Duration::from_micros(DEFAULT_POLL_US);
        match std::env::var("MOONCAKE_MASTER_POLL_US") {
            Err(_) => DEFAULT,
            Ok(v) => mooncake_common::duration::parse_micros("MOONCAKE_MASTER_POLL_US", &v)
                .unwrap_or_else(|e| {
                    tracing::warn!("{e}; using {DEFAULT:?}");
                    DEFAULT
                }),
        }
    })
}

/// Default of `MOONCAKE_MASTER_POLL_US`: a loopback or same-rack round trip plus the
/// client's own work between two calls fits in it.
pub const DEFAULT_POLL_US: u64 = 100;

/// Decides when a connection polls for its next request instead of parking.
///
/// Why: on a VM, a master thread that parks in `epoll_wait` after each answer must be
/// woken (an inter-processor interrupt through the hypervisor) for the next request;
/// measured here, that wake-up was most of a 4 KiB get's latency. A client that calls
/// back to back (one thread looping over `get`) is therefore answered sooner if the
/// worker stays awake for a moment. Polling yields between checks, so other
/// connections' tasks still run on that worker.
///
/// When: only for the connection that alone sent the last requests (another
/// connection's request in between means several clients keep the master busy, and
/// polling would only take CPU from them), only if its last pause between our answer
/// and its next request was short, and only one connection at a time. A pause
/// measured while polling is short if it ended within the window; one measured
/// without polling also holds the wake-up the poll is there to save, so it counts as
/// short up to [`UNPOLLED_SLACK`] windows (else one slow moment would turn polling
/// off for good: every later pause would include a wake-up too).
pub(crate) struct NextPoll {
    window: Duration,
    id: u64,
    last_gap_short: bool,
    polled: bool,
}

/// See [`NextPoll`].
const UNPOLLED_SLACK: u32 = 3;

static LAST_CONN: AtomicU64 = AtomicU64::new(0);
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
static POLLING: AtomicBool = AtomicBool::new(false);

impl NextPoll {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            last_gap_short: false,
            polled: false,
        }
    }

    /// Polls for up to the window if this connection qualifies (see the type).
    async fn wait(&mut self, stream: &TcpStream) {
        self.polled = false;
        if self.window.is_zero()
            || !self.last_gap_short
            || LAST_CONN.load(Ordering::Relaxed) != self.id
            || POLLING.swap(true, Ordering::Acquire)
        {
            return;
        }
        self.polled = true;
        let t = Instant::now();
        while t.elapsed() < self.window && LAST_CONN.load(Ordering::Relaxed) == self.id {
            let ready =
                std::future::poll_fn(|cx| Poll::Ready(stream.poll_read_ready(cx).is_ready())).await;
            if ready {
                break;
            }
            // Lets the worker run other tasks and poll the I/O driver, then resumes.
            tokio::task::yield_now().await;
        }
        POLLING.store(false, Ordering::Release);
    }

    /// Records a request that arrived `gap` after our previous answer.
    fn arrived(&mut self, gap: Duration) {
        let limit = if self.polled {
            self.window
        } else {
            self.window * UNPOLLED_SLACK
        };
        self.last_gap_short = gap < limit;
        LAST_CONN.store(self.id, Ordering::Relaxed);
    }
}

enum ReadError {
    Closed,
    Frame(FrameError),
}

async fn read_frame(stream: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut head = [0u8; frame::LEN_BYTES];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|_| ReadError::Closed)?;
    let len = frame::frame_len(head).map_err(ReadError::Frame)?;
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|_| ReadError::Closed)?;
    Ok(buf)
}

/// The gRPC request a request frame stands for; the message gets its 5-byte prefix
/// written over the bytes before it (the path, copied out first), so it is not copied.
fn to_http(mut buf: Vec<u8>) -> Result<Request<Body>, FrameError> {
    let (uri, at) = {
        let r = frame::decode_request(&buf)?;
        let uri = Uri::try_from(r.path).map_err(|_| FrameError::Malformed("bad method path"))?;
        (uri, r.message_at)
    };
    let len = buf.len() - at;
    let body = if at >= 5 {
        frame::grpc_prefix(len, &mut buf[at - 5..at]);
        Bytes::from(buf).slice(at - 5..)
    } else {
        let mut b = vec![0u8; 5];
        frame::grpc_prefix(len, &mut b);
        b.extend_from_slice(&buf[at..]);
        Bytes::from(b)
    };
    let mut req = Request::new(Body::new(OneChunk(Some(body))));
    *req.uri_mut() = uri;
    *req.method_mut() = tonic::codegen::http::Method::POST;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(req)
}

fn encode_status(status: &Status, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let error_code = status
        .metadata()
        .get(ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .unwrap_or(0);
    frame::encode_answer(status.code() as u32, error_code, status.message(), b"", out)
}

/// Collects a gRPC answer into an answer frame in `out`; `Err` is the status to send
/// instead (the call failed, or its answer was not one well-formed message).
async fn answer_frame(resp: Response<Body>, out: &mut Vec<u8>) -> Result<(), Status> {
    if let Some(status) = Status::from_header_map(resp.headers()) {
        // Trailers-only: no message.
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    let mut body = resp.into_body();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let f = f.map_err(|e| Status::internal(format!("answer body: {e}")))?;
        match f.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => {
                if let Ok(t) = f.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    if let Some(status) = trailers.as_ref().and_then(Status::from_header_map) {
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    if data.len() < 5 || data[0] != 0 {
        return Err(Status::internal(
            "framed rpc: answer is not one gRPC message",
        ));
    }
    let len = u32::from_be_bytes(data[1..5].try_into().expect("four bytes")) as usize;
    if data.len() != 5 + len {
        return Err(Status::internal(
            "framed rpc: answer is not one gRPC message",
        ));
    }
    frame::encode_answer(0, 0, "", &data[5..], out)
        .map_err(|e| Status::resource_exhausted(format!("framed rpc: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (s, c)
    }

    async fn drain(s: &TcpStream) {
        // Let the I/O driver deliver the new socket's first events before clearing.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut b = [0u8; 8];
        assert!(matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
    }

    /// The three ways a poll ends early, and the connections that never poll. The
    /// window is far longer than any step here, so an early end shows the cause.
    /// One test, because the "last connection" and "one poller" states are global.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling_stops_for_data_for_other_clients_and_is_gated() {
        let long = Duration::from_secs(20);
        let (server, mut client) = pair().await;

        // A connection that has not yet shown a short pause does not poll.
        let mut p = NextPoll::new(long);
        let t = Instant::now();
        p.wait(&server).await;
        assert!(t.elapsed() < long / 4, "polled without a short pause");

        // After a short pause it polls, and stops when the next request arrives.
        p.arrived(Duration::from_micros(10));
        // As the server does after reading a request: readiness is cleared once a read
        // finds nothing (a new socket starts out "ready").
        drain(&server).await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"x").await.unwrap();
            client
        });
        let t = Instant::now();
        p.wait(&server).await;
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(40),
            "stopped before data came: {waited:?}"
        );
        assert!(waited < long / 4, "did not stop when data came: {waited:?}");
        let _client = writer.await.unwrap();
        assert!(
            !POLLING.load(Ordering::Relaxed),
            "the poller slot was not given back"
        );

        // Another connection's request ends the poll (several clients are active).
        let (server2, mut client2) = pair().await;
        let mut p2 = NextPoll::new(long);
        let (server3, _client3) = pair().await;
        drain(&server3).await;
        let mut p3 = NextPoll::new(long);
        p3.arrived(Duration::from_micros(10));
        let other = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p2.arrived(Duration::from_micros(10));
            (p2, server2)
        });
        let t = Instant::now();
        p3.wait(&server3).await;
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(40),
            "did not poll: {waited:?}"
        );
        assert!(
            waited < long / 4,
            "kept polling while another client was active"
        );
        let (p2, server2) = other.await.unwrap();

        // A pause measured without polling holds a wake-up too: up to three windows
        // still count as short.
        let mut p2 = p2;
        drain(&server2).await;
        p2.arrived(long * 2);
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client2.write_all(b"x").await.unwrap();
            client2
        });
        let t = Instant::now();
        p2.wait(&server2).await;
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(40),
            "did not poll: {waited:?}"
        );
        let _client2 = writer.await.unwrap();
        assert_eq!(server2.try_read(&mut [0u8; 4]).unwrap(), 1);
        drain(&server2).await;

        // A pause longer than the window while polling, or than three windows without,
        // turns polling off for that connection.
        p2.arrived(long * 2);
        let t = Instant::now();
        p2.wait(&server2).await;
        assert!(t.elapsed() < long / 4, "polled after a long pause");
        p2.arrived(long * 4);
        p2.wait(&server2).await;
        assert!(t.elapsed() < long / 4, "polled after a long pause");

        // A zero window never polls.
        let mut z = NextPoll::new(Duration::ZERO);
        z.arrived(Duration::ZERO);
        let t = Instant::now();
        z.wait(&server2).await;
        assert!(t.elapsed() < long / 4);
    }
}

//! The framed control-plane protocol (`mooncake_proto::frame`), served on the rpc port
//! beside gRPC: the listener hands over a connection whose first bytes are the frame
//! magic. Each request frame names its method; the method's message is decoded with
//! prost and served by the same handler and gate as its gRPC call, and the answer is
//! encoded straight into the answer frame. One task per connection, one call in
//! flight, answered inline.
//!
//! Input is bounded as it arrives: the magic must come within the handshake timeout,
//! a request within the frame timeout of its first byte, the next request within the
//! idle timeout; a frame's buffer grows with the bytes that actually arrive (a header
//! that announces 64 MiB and then stalls costs what was sent, not 64 MiB).

use super::auth::{admit_framed, Tenant};
use super::handlers::{self as h, EndKind};
use super::run;
use crate::api::{Gate, Method};
use crate::config::MasterTuning;
use crate::master::Master;
use mooncake_proto::frame::{self, FrameError, MAGIC};
use mooncake_proto::handshake::AUTH_MAGIC;
use mooncake_proto::status::ERROR_CODE_KEY;
use mooncake_tls::Stream;
use prost::Message;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::{Code, Status};

/// The prefix of every `Master` method path (`/mooncake.v1.Master/PutStart`).
pub const PATH_PREFIX: &str = "/mooncake.v1.Master/";

/// How much of a frame is read at a time: a frame's buffer grows by at most this
/// much beyond the bytes that arrived.
const READ_CHUNK: usize = 64 * 1024;

/// Whether the connection speaks the framed protocol: its first bytes (peeked, not
/// consumed) are a prefix of the magic (plain or authenticating). Waits for the
/// client's first bytes.
pub async fn is_framed(stream: &mut Stream) -> std::io::Result<bool> {
    let mut first = [0u8; MAGIC.len()];
    let n = stream.peek(&mut first).await?;
    Ok(n > 0 && (first[..n] == MAGIC[..n] || first[..n] == AUTH_MAGIC[..n]))
}

/// Answers a framed client that sent plaintext to a TLS port with an error frame
/// that says so, then closes once the client has read it (its request is drained so
/// that the close does not reset the connection before the answer is read).
pub(crate) async fn refuse_plaintext(mut stream: TcpStream) {
    let msg = "this master's rpc port requires TLS: set MOONCAKE_TLS_CA_FILE to the CA \
               file that signed its certificate (and MOONCAKE_TLS_CERT_FILE/KEY_FILE if \
               it requires client certificates)";
    let mut out = Vec::new();
    if frame::encode_answer(Code::Unavailable as u32, 0, msg, b"", &mut out).is_err() {
        return;
    }
    let drain = async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// Serves one framed connection until the client closes it, a frame is bad or late,
/// or `stopping` turns true (a call in progress is finished and answered first).
pub(crate) async fn serve_connection<G: Gate>(
    stream: Stream,
    gate: G,
    tuning: &MasterTuning,
    poll: Arc<PollShared>,
    mut stopping: watch::Receiver<bool>,
) {
    // Buffered reads: a frame's length and body usually arrive in one syscall.
    let mut stream = BufReader::with_capacity(16 * 1024, stream);
    let mut magic = [0u8; MAGIC.len()];
    let read = tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => return,
        r = tokio::time::timeout(tuning.handshake_timeout, stream.read_exact(&mut magic)) => r,
    };
    if !matches!(read, Ok(Ok(_))) {
        return;
    }
    // The tenant every call on this connection runs as (refused: answered, closed).
    let peer = stream.get_ref().tcp().peer_addr().ok();
    let admitted = tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => return,
        t = admit_framed(&mut stream, magic, &tuning.auth, tuning.handshake_timeout, peer) => t,
    };
    let Some(tenant) = admitted else {
        return;
    };
    let mut out = Vec::with_capacity(4096);
    let mut buf = Vec::new();
    let mut poll = NextPoll::new(tuning.poll_window, poll);
    loop {
        let idle_since = Instant::now();
        if stream.buffer().is_empty() {
            poll.wait(stream.get_ref().tcp()).await;
        }
        let read = tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => return,
            r = read_frame(&mut stream, &mut buf, tuning) => r,
        };
        out.clear();
        match read {
            Ok(()) => poll.arrived(idle_since.elapsed()),
            Err(ReadError::Closed) => return,
            Err(ReadError::Late(what)) => {
                tracing::debug!("framed rpc: closing a connection that {what}");
                return;
            }
            Err(ReadError::Frame(e)) => {
                // Answer why, then close: the stream cannot be resynchronised.
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
        }
        let (method, served) = match decode_method(&buf) {
            Ok((m, msg)) => (
                Some(m),
                dispatch_method(&gate, &tenant, m, msg, &mut out).await,
            ),
            Err(status) => (None, Err(status)),
        };
        poll.answered(method);
        if let Err(status) = served {
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
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
    }
}

/// Answers one request frame's bytes (what follows its length) as a connection would,
/// without a socket: how the fuzz targets (`fuzz/`) reach the decoders and handlers
/// with the exact bytes a peer can send.
#[doc(hidden)]
pub async fn answer<G: Gate>(gate: &G, req: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(status) = dispatch(gate, &Tenant::cluster(), req, &mut out).await {
        out.clear();
        let _ = encode_status(&status, &mut out);
    }
    out
}

/// Serves one request frame into `out`; `Err` is the status to answer with instead.
async fn dispatch<G: Gate>(
    gate: &G,
    t: &Tenant,
    req: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    let (method, msg) = decode_method(req)?;
    dispatch_method(gate, t, method, msg, out).await
}

/// The method a request frame calls and its message's bytes.
fn decode_method(req: &[u8]) -> Result<(Method, &[u8]), Status> {
    let r = frame::decode_request(req)
        .map_err(|e| Status::invalid_argument(format!("framed rpc: {e}")))?;
    let method = r
        .path
        .strip_prefix(PATH_PREFIX)
        .and_then(Method::from_name)
        .ok_or_else(|| Status::unimplemented(format!("framed rpc: no method {:?}", r.path)))?;
    Ok((method, &req[r.message_at..]))
}

/// Serves one decoded request into `out`; `Err` is the status to answer with instead.
async fn dispatch_method<G: Gate>(
    gate: &G,
    t: &Tenant,
    method: Method,
    msg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    use Method::*;
    match method {
        MountSegment => {
            call(gate, method, msg, out, |m, r| {
                h::mount_segment(m, t, r, false)
            })
            .await
        }
        RemountSegment => {
            call(gate, method, msg, out, |m, r| {
                h::mount_segment(m, t, r, true)
            })
            .await
        }
        UnmountSegment => call(gate, method, msg, out, |m, r| h::unmount_segment(m, t, r)).await,
        Heartbeat => call(gate, method, msg, out, h::heartbeat).await,
        ListSegments => call(gate, method, msg, out, |m, r| h::list_segments(m, t, r)).await,
        PutStart => {
            call(gate, method, msg, out, |m, r| {
                h::write_start(m, t, r, false)
            })
            .await
        }
        BatchPutStart => {
            call(gate, method, msg, out, |m, r| {
                h::batch_write_start(m, t, r, false)
            })
            .await
        }
        PutEnd => {
            call(gate, method, msg, out, |m, r| {
                h::write_finish(m, t, r, EndKind::PutEnd)
            })
            .await
        }
        BatchPutEnd => {
            call(gate, method, msg, out, |m, r| {
                h::batch_write_finish(m, t, r, EndKind::PutEnd)
            })
            .await
        }
        PutRevoke => {
            call(gate, method, msg, out, |m, r| {
                h::write_finish(m, t, r, EndKind::PutRevoke)
            })
            .await
        }
        BatchPutRevoke => {
            call(gate, method, msg, out, |m, r| {
                h::batch_write_finish(m, t, r, EndKind::PutRevoke)
            })
            .await
        }
        UpsertStart => call(gate, method, msg, out, |m, r| h::write_start(m, t, r, true)).await,
        BatchUpsertStart => {
            call(gate, method, msg, out, |m, r| {
                h::batch_write_start(m, t, r, true)
            })
            .await
        }
        UpsertEnd => {
            call(gate, method, msg, out, |m, r| {
                h::write_finish(m, t, r, EndKind::UpsertEnd)
            })
            .await
        }
        BatchUpsertEnd => {
            call(gate, method, msg, out, |m, r| {
                h::batch_write_finish(m, t, r, EndKind::UpsertEnd)
            })
            .await
        }
        UpsertRevoke => {
            call(gate, method, msg, out, |m, r| {
                h::write_finish(m, t, r, EndKind::UpsertRevoke)
            })
            .await
        }
        BatchUpsertRevoke => {
            call(gate, method, msg, out, |m, r| {
                h::batch_write_finish(m, t, r, EndKind::UpsertRevoke)
            })
            .await
        }
        GetReplicaList => call(gate, method, msg, out, |m, r| h::get_replica_list(m, t, r)).await,
        BatchGetReplicaList => {
            call(gate, method, msg, out, |m, r| {
                h::batch_get_replica_list(m, t, r)
            })
            .await
        }
        Exist => call(gate, method, msg, out, |m, r| h::exist(m, t, r)).await,
        BatchExist => {
            // The keys are borrowed from the frame: no `String` per key.
            let keys = borrowed_keys(msg)
                .map_err(|e| Status::invalid_argument(format!("BatchExist request: {e}")))?;
            let answer = run(gate, method, |m: &Master| h::batch_exist(m, t, &keys)).await?;
            encode(&answer, out)
        }
        Remove => call(gate, method, msg, out, |m, r| h::remove(m, t, r)).await,
        BatchRemove => call(gate, method, msg, out, |m, r| h::batch_remove(m, t, r)).await,
        RemoveByRegex => call(gate, method, msg, out, |m, r| h::remove_by_regex(m, t, r)).await,
        RemoveAll => call(gate, method, msg, out, |m, r| h::remove_all(m, t, r)).await,
        QueryKey => call(gate, method, msg, out, |m, r| h::query_key(m, t, r)).await,
        GetStats => call(gate, method, msg, out, h::get_stats).await,
        VerifyProof => call(gate, method, msg, out, super::verify::verify_proof).await,
    }
}

/// Decodes `msg` as the method's request, serves it through the gate, and encodes
/// the answer frame into `out`.
async fn call<G, Req, Resp>(
    gate: &G,
    method: Method,
    msg: &[u8],
    out: &mut Vec<u8>,
    handler: impl FnOnce(&Master, Req) -> Result<Resp, Status>,
) -> Result<(), Status>
where
    G: Gate,
    Req: Message + Default,
    Resp: Message,
{
    let req = Req::decode(msg)
        .map_err(|e| Status::invalid_argument(format!("{} request: {e}", method.name())))?;
    let answer = run(gate, method, |m| handler(m, req)).await?;
    encode(&answer, out)
}

/// An OK answer frame holding `answer`.
fn encode(answer: &impl Message, out: &mut Vec<u8>) -> Result<(), Status> {
    let len = answer.encoded_len();
    let at = out.len();
    frame::encode_answer(0, 0, "", &[], out)
        .map_err(|e| Status::resource_exhausted(format!("framed rpc: {e}")))?;
    out.reserve(len);
    answer
        .encode(out)
        .map_err(|e| Status::internal(format!("framed rpc: {e}")))?;
    // The frame's length now covers the message too.
    let frame_len = out.len() - at - frame::LEN_BYTES;
    if frame_len > frame::MAX_FRAME {
        return Err(Status::resource_exhausted(format!(
            "framed rpc: an answer of {frame_len} bytes exceeds the limit of {} bytes",
            frame::MAX_FRAME
        )));
    }
    out[at..at + frame::LEN_BYTES].copy_from_slice(&(frame_len as u32).to_le_bytes());
    Ok(())
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

enum ReadError {
    Closed,
    /// The peer was too slow: what it failed to do in time.
    Late(&'static str),
    Frame(FrameError),
}

/// Reads one request frame (after its length) into `buf`: its first byte may take up
/// to the idle timeout, the rest of it up to the frame timeout; `buf` grows with the
/// bytes that arrive.
async fn read_frame(
    stream: &mut BufReader<Stream>,
    buf: &mut Vec<u8>,
    tuning: &MasterTuning,
) -> Result<(), ReadError> {
    let mut head = [0u8; frame::LEN_BYTES];
    match tokio::time::timeout(tuning.idle_timeout, stream.read_exact(&mut head[..1])).await {
        Err(_) => return Err(ReadError::Late("stayed idle past the idle timeout")),
        Ok(Err(_)) => return Err(ReadError::Closed),
        Ok(Ok(_)) => {}
    }
    let rest = async {
        stream
            .read_exact(&mut head[1..])
            .await
            .map_err(|_| ReadError::Closed)?;
        let len = frame::frame_len(head).map_err(ReadError::Frame)?;
        buf.clear();
        buf.reserve(len.min(READ_CHUNK));
        let mut body = (&mut *stream).take(len as u64);
        while buf.len() < len {
            if buf.capacity() == buf.len() {
                buf.reserve((len - buf.len()).min(READ_CHUNK));
            }
            if body.read_buf(buf).await.map_err(|_| ReadError::Closed)? == 0 {
                return Err(ReadError::Closed);
            }
        }
        Ok(())
    };
    tokio::time::timeout(tuning.frame_timeout, rest)
        .await
        .unwrap_or(Err(ReadError::Late(
            "did not finish its frame within the frame timeout",
        )))
}

/// The keys of a `BatchKeyRequest` (`repeated string keys = 1`), borrowed from the
/// message. Other fields are skipped, as prost skips unknown fields; what prost would
/// refuse (a truncated field, a key that is not UTF-8, field 1 not length-delimited)
/// is an error.
fn borrowed_keys(mut b: &[u8]) -> Result<Vec<&str>, &'static str> {
    let mut keys = Vec::new();
    while !b.is_empty() {
        let tag = prost::encoding::decode_varint(&mut b).map_err(|_| "bad field tag")?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err("field number 0");
        }
        if field == 1 && wire != 2 {
            return Err("keys (field 1) is not length-delimited");
        }
        match wire {
            0 => {
                prost::encoding::decode_varint(&mut b).map_err(|_| "truncated varint")?;
            }
            1 => b = b.get(8..).ok_or("truncated fixed64")?,
            5 => b = b.get(4..).ok_or("truncated fixed32")?,
            2 => {
                let len = prost::encoding::decode_varint(&mut b).map_err(|_| "bad length")?;
                let len = usize::try_from(len).map_err(|_| "bad length")?;
                if len > b.len() {
                    return Err("truncated field");
                }
                let (v, rest) = b.split_at(len);
                b = rest;
                if field == 1 {
                    keys.push(std::str::from_utf8(v).map_err(|_| "a key is not UTF-8")?);
                }
            }
            _ => return Err("unsupported wire type"),
        }
    }
    Ok(keys)
}

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
/// polling would only take CPU from them), only if its last pause after an answer to
/// the same method as the one just answered was short, and only one connection at a
/// time. Why per method: what a client does next depends on what it was answered. A
/// put's start is followed by the put's data (a 1 MiB put: a third of a millisecond
/// before its end comes), its end by the caller's next call (microseconds); judged
/// by the last pause alone, the long pause after every start turned polling off for
/// the end's answer too, and each call of a large put waited for a wake-up. A pause
/// measured while polling is short if it ended within the window; one measured
/// without polling also holds the wake-up the poll is there to save, so it counts as
/// short up to [`UNPOLLED_SLACK`] windows (else one slow moment would turn polling
/// off for good: every later pause would include a wake-up too).
pub(crate) struct NextPoll {
    window: Duration,
    shared: Arc<PollShared>,
    id: u64,
    /// Bit `m`: the last pause after answering method `m` was short.
    short_after: u64,
    /// The method of the request answered last (`None`: an undecodable request).
    last: Option<Method>,
    polled: bool,
}

/// See [`NextPoll`].
const UNPOLLED_SLACK: u32 = 3;

/// What the connections of one listener share to decide who polls.
#[derive(Debug, Default)]
pub(crate) struct PollShared {
    /// The connection that sent the last request.
    last_conn: AtomicU64,
    next_conn: AtomicU64,
    /// Whether some connection is polling now (one at a time).
    polling: AtomicBool,
}

impl NextPoll {
    pub(crate) fn new(window: Duration, shared: Arc<PollShared>) -> Self {
        Self {
            window,
            id: shared.next_conn.fetch_add(1, Ordering::Relaxed) + 1,
            shared,
            short_after: 0,
            last: None,
            polled: false,
        }
    }

    fn bit(m: Method) -> u64 {
        1u64 << (m as u32 % 64)
    }

    /// Records the method of the request just answered (the pause that follows is
    /// counted for it).
    pub(crate) fn answered(&mut self, method: Option<Method>) {
        self.last = method;
    }

    /// Polls for up to the window if this connection qualifies (see the type).
    async fn wait(&mut self, stream: &TcpStream) {
        self.polled = false;
        let short = self
            .last
            .is_some_and(|m| self.short_after & Self::bit(m) != 0);
        if self.window.is_zero()
            || !short
            || self.shared.last_conn.load(Ordering::Relaxed) != self.id
            || self.shared.polling.swap(true, Ordering::Acquire)
        {
            return;
        }
        self.polled = true;
        let t = Instant::now();
        while t.elapsed() < self.window && self.shared.last_conn.load(Ordering::Relaxed) == self.id
        {
            let ready =
                std::future::poll_fn(|cx| Poll::Ready(stream.poll_read_ready(cx).is_ready())).await;
            if ready {
                break;
            }
            // Lets the worker run other tasks and poll the I/O driver, then resumes.
            tokio::task::yield_now().await;
        }
        self.shared.polling.store(false, Ordering::Release);
    }

    /// Records a request that arrived `gap` after our previous answer.
    fn arrived(&mut self, gap: Duration) {
        let limit = if self.polled {
            self.window
        } else {
            self.window * UNPOLLED_SLACK
        };
        if let Some(m) = self.last {
            if gap < limit {
                self.short_after |= Self::bit(m);
            } else {
                self.short_after &= !Self::bit(m);
            }
        }
        self.shared.last_conn.store(self.id, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_proto::BatchKeyRequest;
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

    /// Runs `p.wait` while the client sends one byte 50 ms in; returns how long the
    /// wait took and the client.
    async fn wait_for_late_byte(
        p: &mut NextPoll,
        server: &TcpStream,
        mut client: TcpStream,
    ) -> (Duration, TcpStream) {
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"x").await.unwrap();
            client
        });
        let t = Instant::now();
        p.wait(server).await;
        let waited = t.elapsed();
        (waited, writer.await.unwrap())
    }

    /// The three ways a poll ends early, and the connections that never poll. The
    /// window is far longer than any step here, so an early end shows the cause.
    /// One test: the steps share one listener's "last connection" and "one poller".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling_stops_for_data_for_other_clients_and_is_gated() {
        let long = Duration::from_secs(20);
        let shared = Arc::new(PollShared::default());
        let (server, client) = pair().await;

        // A connection that has not yet shown a short pause does not poll.
        let mut p = NextPoll::new(long, shared.clone());
        p.answered(Some(Method::Exist));
        let t = Instant::now();
        p.wait(&server).await;
        assert!(t.elapsed() < long / 4, "polled without a short pause");

        // After a short pause it polls, and stops when the next request arrives.
        p.arrived(Duration::from_micros(10));
        // As the server does after reading a request: readiness is cleared once a read
        // finds nothing (a new socket starts out "ready").
        drain(&server).await;
        let (waited, _client) = wait_for_late_byte(&mut p, &server, client).await;
        assert!(
            waited >= Duration::from_millis(40),
            "stopped before data came: {waited:?}"
        );
        assert!(waited < long / 4, "did not stop when data came: {waited:?}");
        assert!(
            !shared.polling.load(Ordering::Relaxed),
            "the poller slot was not given back"
        );

        // Another connection's request ends the poll (several clients are active).
        let (server2, client2) = pair().await;
        let mut p2 = NextPoll::new(long, shared.clone());
        p2.answered(Some(Method::Exist));
        let (server3, _client3) = pair().await;
        drain(&server3).await;
        let mut p3 = NextPoll::new(long, shared.clone());
        p3.answered(Some(Method::Exist));
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
        let (waited, _client2) = wait_for_late_byte(&mut p2, &server2, client2).await;
        assert!(
            waited >= Duration::from_millis(40),
            "did not poll: {waited:?}"
        );
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
        let mut z = NextPoll::new(Duration::ZERO, shared.clone());
        z.answered(Some(Method::Exist));
        z.arrived(Duration::ZERO);
        let t = Instant::now();
        z.wait(&server2).await;
        assert!(t.elapsed() < long / 4);
    }

    /// Whether a connection polls depends on the pause after the same method's last
    /// answer: after a put's start (the data follows, a long pause) it does not, after
    /// its end (the caller's next call follows at once) it does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_method_is_judged_by_the_pause_after_its_own_answers() {
        let long = Duration::from_secs(20);
        let shared = Arc::new(PollShared::default());
        let (server, client) = pair().await;
        drain(&server).await;
        let mut p = NextPoll::new(long, shared.clone());
        // A put's cycle: start answered, a long pause (the data), end answered, a
        // short pause (the next put's start).
        p.answered(Some(Method::BatchPutStart));
        p.arrived(long * 4);
        p.answered(Some(Method::BatchPutEnd));
        p.arrived(Duration::from_micros(10));
        p.answered(Some(Method::BatchPutStart));

        // Just answered a start: no poll.
        let t = Instant::now();
        p.wait(&server).await;
        assert!(t.elapsed() < long / 4, "polled after a put's start");

        // Just answered an end: polls until the next request comes.
        p.arrived(long * 4);
        p.answered(Some(Method::BatchPutEnd));
        let (waited, _client) = wait_for_late_byte(&mut p, &server, client).await;
        assert!(
            waited >= Duration::from_millis(40),
            "did not poll after a put's end: {waited:?}"
        );
        assert!(waited < long / 4, "did not stop when data came: {waited:?}");

        // An undecodable request's answer never polls.
        p.answered(None);
        let t = Instant::now();
        p.wait(&server).await;
        assert!(
            t.elapsed() < long / 4,
            "polled after an undecodable request"
        );
    }

    #[test]
    fn keys_are_read_as_prost_encodes_them() {
        let keys: Vec<String> = ["", "a", "ключ", &"k".repeat(300)]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let msg = BatchKeyRequest { keys: keys.clone() }.encode_to_vec();
        assert_eq!(borrowed_keys(&msg).unwrap(), keys);
        assert!(borrowed_keys(b"").unwrap().is_empty());
        // Unknown fields of every wire type are skipped.
        let mut m = vec![0x10, 0x96, 0x01]; // field 2, varint
        m.extend_from_slice(&[0x19, 1, 2, 3, 4, 5, 6, 7, 8]); // field 3, fixed64
        m.extend_from_slice(&[0x25, 1, 2, 3, 4]); // field 4, fixed32
        m.extend_from_slice(&[0x2a, 2, b'x', b'y']); // field 5, bytes
        m.extend_from_slice(&msg);
        assert_eq!(borrowed_keys(&m).unwrap(), keys);
    }

    #[test]
    fn what_prost_refuses_is_an_error() {
        for (bad, why) in [
            (&b"\x0a\x05ab"[..], "truncated field"),
            (&b"\x0a\x02\xff\xfe"[..], "a key is not UTF-8"),
            (&b"\x08\x01"[..], "keys (field 1) is not length-delimited"),
            (&b"\x19\x01"[..], "truncated fixed64"),
            (&b"\x0a"[..], "bad length"),
            (&b"\x00"[..], "field number 0"),
            (&b"\x13"[..], "unsupported wire type"),
        ] {
            assert_eq!(borrowed_keys(bad).unwrap_err(), why, "{bad:?}");
            // Prost refuses the same bytes.
            assert!(BatchKeyRequest::decode(bad).is_err(), "{bad:?}");
        }
    }
}

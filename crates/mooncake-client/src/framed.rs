//! The framed transport to the master (`mooncake_proto::frame`): one call per TCP
//! connection at a time, from a pool of idle connections, without HTTP/2.
//!
//! [`FramedChannel::unary`] encodes the request message straight into its frame
//! behind the method path and decodes the answer frame's message; an error answer
//! becomes the `Status` a gRPC call would have returned (code, message, and the
//! contract code as `mc-error-code` metadata), so both protocols fail alike
//! (`crate::calls::MasterCalls` picks the protocol per call).
//!
//! A call takes an idle connection (checked with a non-blocking peek: one the master
//! closed meanwhile is dropped), uses it exclusively and gives it back; it dials when
//! none is idle. A connection that failed or timed out mid-call is dropped, and one
//! given back to a pool that already holds [`MAX_IDLE`] is closed.
//!
//! Two ways to do a call's I/O, chosen per channel handle ([`CallMode`]): tokio
//! sockets ([`CallMode::Async`]), or, for a caller that blocks on a runtime from a
//! thread of its own (the Python binding's `block_on`), blocking `std::net` sockets
//! used right on the thread that polls the call, with a read timeout for the deadline
//! ([`CallMode::Blocking`]): no runtime worker wakes up, no hand-off between threads.
//! Such a call polls its socket for the answer for up to its spin budget (default
//! [`DEFAULT_SPIN`]) before it sleeps in `recv`. Both modes share one handle's pools,
//! so a client can use either per call site.

use crate::transport::DirectConfig;
use mooncake_proto::frame::{self, MAGIC, MAX_MESSAGE};
use mooncake_proto::status::ERROR_CODE_KEY;
use mooncake_tls::{Connector, Stream};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Status};

/// How a framed call does its socket I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallMode {
    /// tokio sockets: the call yields while it waits; right for tasks on runtime
    /// workers and for futures that overlap several calls (`tokio::join!`).
    #[default]
    Async,
    /// Blocking sockets on whichever thread polls the call: for threads that block on
    /// a runtime anyway (`Runtime::block_on` from a foreign thread). Never for calls
    /// polled on a runtime worker, for overlapped calls (they would run one after the
    /// other) or around a current-thread runtime that must serve the master.
    Blocking,
}

/// How long a blocking call polls its socket for the answer by default. A master
/// round trip is tens of microseconds: sleeping costs the caller a context switch and
/// the master a wake-up in its `send`, both of which the polling avoids.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(60);

/// A cheaply cloned handle on a pool of framed connections to `host:port`.
#[derive(Clone)]
pub struct FramedChannel {
    inner: Arc<Inner>,
    mode: CallMode,
    /// How long a blocking call polls for the answer before sleeping in `recv`.
    spin: Duration,
}

struct Inner {
    addr: String,
    cfg: DirectConfig,
    /// TLS to the master (`MOONCAKE_TLS_*`), or why the settings are unusable.
    tls: Result<Option<Connector>, String>,
    idle: parking_lot::Mutex<Vec<BufStream>>,
    idle_sync: parking_lot::Mutex<Vec<SyncConn>>,
}

/// A pooled tokio connection; reads are buffered (the frame's length and body in one
/// syscall). Strict request/answer leaves the buffer empty between calls.
type BufStream = tokio::io::BufReader<Stream>;

struct SyncConn {
    stream: std::net::TcpStream,
    /// The read timeout set on the socket (differs from the configured one after a
    /// call shortened it to its deadline's remainder).
    read_timeout: Option<Duration>,
}

/// Idle connections kept per pool (and per kind); a connection given back to a full
/// pool is closed. A burst of concurrent calls dials one connection per call; without
/// a bound, all of them would stay open for the life of the client.
pub const MAX_IDLE: usize = 32;

/// Returns a connection to `pool`, or closes it when the pool is full.
fn give_back<T>(pool: &parking_lot::Mutex<Vec<T>>, conn: T) {
    let mut idle = pool.lock();
    if idle.len() < MAX_IDLE {
        idle.push(conn);
    }
}

/// Whether an idle connection is still usable: nothing to read and not closed. One
/// non-blocking `recv(MSG_PEEK)`, on tokio and std sockets alike.
fn idle_and_open(fd: &impl AsRawFd) -> bool {
    let mut b = 0u8;
    // SAFETY: a one-byte buffer we own; MSG_PEEK consumes nothing.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

fn unavailable(addr: &str, e: &dyn std::fmt::Display) -> Status {
    Status::unavailable(format!("master {addr}: {e}"))
}

impl FramedChannel {
    /// A pool for `addr` (`host:port`) in [`CallMode::Async`]; nothing is dialled
    /// yet. `cfg.keep_alive` does not apply (an idle connection is checked before each
    /// use instead).
    pub fn new(addr: &str, cfg: DirectConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                cfg,
                tls: mooncake_tls::config::client().map_err(|e| e.to_string()),
                idle: parking_lot::Mutex::new(Vec::new()),
                idle_sync: parking_lot::Mutex::new(Vec::new()),
            }),
            mode: CallMode::Async,
            spin: DEFAULT_SPIN,
        }
    }

    /// This handle with calls done in `mode`; the pools stay shared with `self`.
    pub fn with_mode(mut self, mode: CallMode) -> Self {
        self.mode = mode;
        self
    }

    /// This handle with blocking calls polling for their answer for up to `spin`
    /// (zero: never) before sleeping in `recv`.
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    pub fn mode(&self) -> CallMode {
        self.mode
    }

    /// Calls the unary method `path` (`/mooncake.v1.Master/Heartbeat`) with `req` and
    /// decodes the answer as `U`.
    pub async fn unary<T, U>(&self, path: &str, req: &T) -> Result<U, Status>
    where
        T: prost::Message,
        U: prost::Message + Default,
    {
        let mut out = request_head(path, req.encoded_len())?;
        req.encode(&mut out)
            .map_err(|e| Status::internal(format!("cannot encode the request: {e}")))?;
        self.exchange(out).await
    }

    /// Like [`FramedChannel::unary`] for a request message encoded beforehand.
    pub async fn unary_encoded<U>(&self, path: &str, message: &[u8]) -> Result<U, Status>
    where
        U: prost::Message + Default,
    {
        let mut out = request_head(path, message.len())?;
        out.extend_from_slice(message);
        self.exchange(out).await
    }

    /// Sends the request frame in `out` (preceded by the magic) and decodes the answer.
    async fn exchange<U: prost::Message + Default>(&self, out: Vec<u8>) -> Result<U, Status> {
        // TLS connections are tokio ones: blocking calls take the async path.
        let tls = matches!(self.inner.tls, Ok(Some(_)));
        let (buf, at) = match self.mode {
            CallMode::Blocking if !tls => self.exchange_blocking(out)?,
            CallMode::Blocking => self.exchange_async(out).await?,
            CallMode::Async => self.exchange_async(out).await?,
        };
        decode_answer(&buf[at..])
    }

    fn dial_timeout(&self) -> Status {
        Status::unavailable(format!(
            "cannot connect to {}: no answer within {:?}",
            self.inner.addr, self.inner.cfg.connect_timeout
        ))
    }

    async fn take_async(&self) -> Result<(BufStream, bool), Status> {
        loop {
            let Some(s) = self.inner.idle.lock().pop() else {
                break;
            };
            if idle_and_open(s.get_ref().tcp()) {
                return Ok((s, false));
            }
        }
        let addr = &self.inner.addr;
        let tls = self.inner.tls.as_ref().map_err(|e| unavailable(addr, e))?;
        let failed = |e: io::Error| Status::unavailable(format!("cannot connect to {addr}: {e}"));
        // The connect bound is what makes an unreachable master fail fast; the TLS
        // handshake that follows is CPU work on both sides and gets the call's bound
        // too, so a loaded host does not turn a slow handshake into "unreachable".
        let s = tokio::time::timeout(
            self.inner.cfg.connect_timeout,
            tokio::net::TcpStream::connect(addr.as_str()),
        )
        .await
        .map_err(|_| self.dial_timeout())?
        .map_err(failed)?;
        // Control-plane messages are small and latency-bound: no Nagle delay.
        s.set_nodelay(true).map_err(failed)?;
        let s = match tls {
            None => Stream::from(s),
            Some(c) => {
                let host = mooncake_common::hostname::split_host_port(addr).0;
                let bound =
                    self.inner.cfg.connect_timeout + self.inner.cfg.timeout.unwrap_or_default();
                tokio::time::timeout(bound, c.connect(host, s))
                    .await
                    .map_err(|_| self.dial_timeout())?
                    .map_err(failed)?
            }
        };
        let mut s = tokio::io::BufReader::with_capacity(4096, s);
        if let Some(auth) = &self.inner.cfg.auth {
            // Proven before the first request: the connection needs no magic after.
            let bound = self.inner.cfg.connect_timeout + self.inner.cfg.timeout.unwrap_or_default();
            tokio::time::timeout(bound, auth.framed_async(&mut s))
                .await
                .map_err(|_| self.dial_timeout())??;
            return Ok((s, false));
        }
        Ok((s, true))
    }

    /// The answer frame (without its length) read into the returned buffer from the
    /// returned offset on.
    async fn exchange_async(&self, mut out: Vec<u8>) -> Result<(Vec<u8>, usize), Status> {
        let (mut s, fresh) = self.take_async().await?;
        let addr = &self.inner.addr;
        let start = if fresh { 0 } else { MAGIC.len() };
        let io = async {
            s.write_all(&out[start..]).await?;
            let mut head = [0u8; frame::LEN_BYTES];
            s.read_exact(&mut head).await?;
            let len = answer_len(head)?;
            out.clear();
            out.resize(len, 0);
            s.read_exact(&mut out).await.map_err(|e| tls_or(head, e))?;
            io::Result::Ok(())
        };
        match self.inner.cfg.timeout {
            Some(t) => tokio::time::timeout(t, io).await.map_err(|_| {
                Status::deadline_exceeded(format!("master {addr} did not answer within {t:?}"))
            })?,
            None => io.await,
        }
        .map_err(|e| unavailable(addr, &e))?;
        check_answer(&out, addr)?;
        give_back(&self.inner.idle, s);
        Ok((out, 0))
    }

    fn take_sync(&self) -> Result<(SyncConn, bool), Status> {
        loop {
            let Some(c) = self.inner.idle_sync.lock().pop() else {
                break;
            };
            if idle_and_open(&c.stream) {
                return Ok((c, false));
            }
        }
        let addr = &self.inner.addr;
        let cfg = &self.inner.cfg;
        let fail = |e: &dyn std::fmt::Display| {
            Status::unavailable(format!("cannot connect to {addr}: {e}"))
        };
        let mut last = None;
        let addrs =
            std::net::ToSocketAddrs::to_socket_addrs(addr.as_str()).map_err(|e| fail(&e))?;
        for a in addrs {
            match std::net::TcpStream::connect_timeout(&a, cfg.connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(|e| fail(&e))?;
                    stream.set_read_timeout(cfg.timeout).map_err(|e| fail(&e))?;
                    stream
                        .set_write_timeout(cfg.timeout)
                        .map_err(|e| fail(&e))?;
                    let mut c = SyncConn {
                        stream,
                        read_timeout: cfg.timeout,
                    };
                    if let Some(auth) = &cfg.auth {
                        // Proven before the first request: no magic after it.
                        auth.framed_blocking(&mut c.stream)?;
                        return Ok((c, false));
                    }
                    return Ok((c, true));
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => last = Some(self.dial_timeout()),
                Err(e) => last = Some(fail(&e)),
            }
        }
        Err(last.unwrap_or_else(|| fail(&"no address")))
    }

    /// As [`FramedChannel::exchange_async`], with blocking I/O on this thread.
    fn exchange_blocking(&self, mut out: Vec<u8>) -> Result<(Vec<u8>, usize), Status> {
        let began = Instant::now();
        let (mut c, fresh) = self.take_sync()?;
        let addr = &self.inner.addr;
        let cfg_timeout = self.inner.cfg.timeout;
        let deadline = cfg_timeout.map(|t| began + t);
        let timed_out = || {
            Status::deadline_exceeded(format!(
                "master {addr} did not answer within {:?}",
                cfg_timeout.unwrap_or_default()
            ))
        };
        let fail = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
            _ => unavailable(addr, &e),
        };
        if c.read_timeout != cfg_timeout {
            c.stream.set_read_timeout(cfg_timeout).map_err(fail)?;
            c.read_timeout = cfg_timeout;
        }
        let start = if fresh { 0 } else { MAGIC.len() };
        c.stream.write_all(&out[start..]).map_err(fail)?;
        // Strict request/answer: nothing follows the answer, so read into a buffer
        // larger than a small frame (the request's, reused): usually one syscall.
        out.clear();
        out.resize(out.capacity().max(4096), 0);
        let _waiting = spin_until_readable(&c, Instant::now(), self.spin);
        let mut got = 0;
        while got < frame::LEN_BYTES {
            got += read_some(&mut c, &mut out[got..], deadline, got == 0).map_err(fail)?;
        }
        let head = <[u8; frame::LEN_BYTES]>::try_from(&out[..frame::LEN_BYTES]).expect("four");
        let total = frame::LEN_BYTES + answer_len(head).map_err(fail)?;
        if got > total {
            return Err(Status::internal(format!(
                "master {addr}: bytes after the answer frame"
            )));
        }
        out.resize(total.max(out.len()), 0);
        while got < total {
            got += read_some(&mut c, &mut out[got..total], deadline, false)
                .map_err(|e| fail(tls_or(head, e)))?;
        }
        out.truncate(total);
        check_answer(&out[frame::LEN_BYTES..], addr)?;
        give_back(&self.inner.idle_sync, c);
        Ok((out, frame::LEN_BYTES))
    }
}

/// Blocking calls waiting for an answer in this process.
static WAITING: AtomicUsize = AtomicUsize::new(0);

struct Waiting {
    alone: bool,
}

impl Waiting {
    fn enter() -> Self {
        Waiting {
            alone: WAITING.fetch_add(1, Ordering::Relaxed) == 0,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Polls the socket (`poll` with a zero timeout: lockless, so it does not contend with
/// the kernel delivering the answer) until it is readable or the spin budget, counted
/// from `began`, is spent (a zero budget: no polling). The read that follows then finds the bytes without sleeping.
///
/// Only the process's sole waiting caller polls: with several threads waiting at once,
/// polling would take the CPUs the master and the other callers need (measured: 4
/// threads sharing a client on 2 cores did half the gets per second). The returned
/// guard counts the caller as waiting until it is dropped (after the answer's read).
#[must_use]
fn spin_until_readable(c: &SyncConn, began: Instant, budget: Duration) -> Waiting {
    let waiting = Waiting::enter();
    if budget.is_zero() || !waiting.alone {
        return waiting;
    }
    let mut pfd = libc::pollfd {
        fd: c.stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one pollfd we own; a zero timeout never blocks.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n != 0 || began.elapsed() >= budget {
            return waiting;
        }
        std::hint::spin_loop();
    }
}

/// One read into `buf` (at least one byte). Except for a call's first read, the socket
/// timeout becomes what is left of the deadline first, so a master that trickles bytes
/// cannot stretch a call past it.
fn read_some(
    c: &mut SyncConn,
    buf: &mut [u8],
    deadline: Option<Instant>,
    first: bool,
) -> io::Result<usize> {
    if let (false, Some(d)) = (first, deadline) {
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        c.stream.set_read_timeout(Some(left))?;
        c.read_timeout = Some(left);
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A request frame up to its message, preceded by the magic (sent only on a fresh
/// connection): the frame's length, the path's length, the path. The message's
/// `message_len` bytes go right after it; the buffer has room for them.
fn request_head(path: &str, message_len: usize) -> Result<Vec<u8>, Status> {
    if message_len > MAX_MESSAGE {
        return Err(Status::resource_exhausted(format!(
            "request exceeds the framed protocol's limit of {MAX_MESSAGE} bytes"
        )));
    }
    let path_len =
        u16::try_from(path.len()).map_err(|_| Status::invalid_argument("method path too long"))?;
    let len = 2 + path.len() + message_len;
    // Room for a small answer too: the blocking path reads it into this buffer.
    let mut out = Vec::with_capacity((MAGIC.len() + frame::LEN_BYTES + len).max(256));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&path_len.to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    Ok(out)
}

/// Checks that `frame` (an answer frame without its length) is well formed before its
/// connection is reused: a malformed one means the connection is out of step.
fn check_answer(frame: &[u8], addr: &str) -> Result<(), Status> {
    frame::decode_answer(frame)
        .map(|_| ())
        .map_err(|e| Status::internal(format!("master {addr}: {e}")))
}

/// The answer frame's message decoded as `U`, or the master's error as the status a
/// gRPC call would have ended with (`mc-error-code` carrying the contract code).
fn decode_answer<U: prost::Message + Default>(frame: &[u8]) -> Result<U, Status> {
    let a = frame::decode_answer(frame)
        .map_err(|e| Status::internal(format!("malformed answer: {e}")))?;
    if a.code != 0 {
        let mut st = Status::new(Code::from(a.code as i32), a.status_message);
        if a.error_code != 0 {
            if let Ok(v) = a.error_code.to_string().parse() {
                st.metadata_mut().insert(ERROR_CODE_KEY, v);
            }
        }
        return Err(st);
    }
    U::decode(&frame[a.message_at..])
        .map_err(|e| Status::internal(format!("undecodable answer: {e}")))
}

/// The length an answer frame announces, or why the peer is not a master's rpc port:
/// an HTTP server (the master's admin or metadata port, a store's REST port) answers
/// the frame magic with a status line, whose first four bytes would otherwise read as
/// a frame of over a gigabyte.
///
/// A TLS server's first bytes (a record header) are also a valid frame length (789 or
/// 790 bytes, plus multiples of 64 KiB), which a real answer can have, so TLS is named
/// only when such a frame does not arrive ([`tls_or`]) or its length is impossible.
fn answer_len(head: [u8; frame::LEN_BYTES]) -> io::Result<usize> {
    if &head == b"HTTP" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "this port answers HTTP: it is an HTTP port (the master's --metrics_port or \
             metadata server, or a store's REST port), not the master's rpc port \
             (--rpc_port, default 50051)",
        ));
    }
    frame::frame_len(head).map_err(|e| tls_or(head, e.into()))
}

/// `e`, or the TLS explanation when the answer began like a TLS record (a TLS server
/// sends a few bytes, an alert, and closes: the frame they seem to announce never
/// completes).
fn tls_or(head: [u8; frame::LEN_BYTES], e: io::Error) -> io::Error {
    if mooncake_tls::looks_like_tls(&head) {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "this port answers with TLS: set MOONCAKE_TLS_CA_FILE to the CA file that \
             signed the master's certificate",
        )
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_proto::{HeartbeatRequest, HeartbeatResponse};
    use std::future::Future;
    use std::task::{Context, Poll};

    /// A framed "master" answering heartbeats: `view_id` 7, or for an empty client id
    /// INVALID_ARGUMENT carrying contract code -600.
    fn fake_master() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                std::thread::spawn(move || {
                    let mut magic = [0u8; MAGIC.len()];
                    if s.read_exact(&mut magic).is_err() || magic != MAGIC {
                        return;
                    }
                    let mut buf = Vec::new();
                    while frame::read_frame_sync(&mut s, &mut buf).is_ok() {
                        let req = frame::decode_request(&buf).unwrap();
                        assert_eq!(req.path, HEARTBEAT);
                        let hb =
                            <HeartbeatRequest as prost::Message>::decode(&buf[req.message_at..])
                                .unwrap();
                        let mut out = Vec::new();
                        if hb.client_id.is_empty() {
                            frame::encode_answer(3, -600, "no id", &[], &mut out).unwrap();
                        } else {
                            let resp = HeartbeatResponse {
                                view_id: 7,
                                ..Default::default()
                            };
                            let msg = prost::Message::encode_to_vec(&resp);
                            frame::encode_answer(0, 0, "", &msg, &mut out).unwrap();
                        }
                        if s.write_all(&out).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    const HEARTBEAT: &str = "/mooncake.v1.Master/Heartbeat";

    fn heartbeat(
        ch: FramedChannel,
        id: &str,
    ) -> impl Future<Output = Result<HeartbeatResponse, Status>> {
        let req = HeartbeatRequest {
            client_id: id.to_string(),
        };
        async move { ch.unary(HEARTBEAT, &req).await }
    }

    #[test]
    fn request_frames_are_the_protocols() {
        let req = HeartbeatRequest {
            client_id: "c-1".into(),
        };
        let msg = prost::Message::encode_to_vec(&req);
        let mut want = MAGIC.to_vec();
        frame::encode_request(HEARTBEAT, &msg, &mut want).unwrap();
        let mut out = request_head(HEARTBEAT, msg.len()).unwrap();
        prost::Message::encode(&req, &mut out).unwrap();
        assert_eq!(out, want);
        let e = request_head(HEARTBEAT, MAX_MESSAGE + 1).unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
    }

    #[test]
    fn answers_decode_to_messages_or_statuses() {
        let resp = HeartbeatResponse {
            view_id: 9,
            remount_needed: true,
        };
        let mut f = Vec::new();
        frame::encode_answer(0, 0, "", &prost::Message::encode_to_vec(&resp), &mut f).unwrap();
        let got: HeartbeatResponse = decode_answer(&f[frame::LEN_BYTES..]).unwrap();
        assert_eq!(got, resp);
        // An error answer: the status a gRPC call would have ended with.
        f.clear();
        frame::encode_answer(14, -1010, "not the leader", &[], &mut f).unwrap();
        let st = decode_answer::<HeartbeatResponse>(&f[frame::LEN_BYTES..]).unwrap_err();
        assert_eq!(st.code(), Code::Unavailable);
        assert_eq!(st.message(), "not the leader");
        assert_eq!(
            mooncake_proto::status::from_status(&st),
            mooncake_common::ErrorCode::UnavailableInCurrentMode
        );
        // A truncated frame is refused.
        assert_eq!(
            decode_answer::<HeartbeatResponse>(&f[frame::LEN_BYTES..10])
                .unwrap_err()
                .code(),
            Code::Internal
        );
    }

    #[test]
    fn the_call_mode_is_per_handle_and_the_pools_are_shared() {
        let addr = fake_master();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = DirectConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(5)),
            keep_alive: None,
            auth: None,
        };
        let async_ch = FramedChannel::new(&addr, cfg);
        let blocking_ch = async_ch.clone().with_mode(CallMode::Blocking);
        assert_eq!(async_ch.mode(), CallMode::Async);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _in_runtime = rt.enter();
        // A blocking call does all its I/O on the thread polling it: one poll, with
        // nobody to wake it and no reactor turning, completes it.
        for _ in 0..2 {
            let mut call = std::pin::pin!(heartbeat(blocking_ch.clone(), "a"));
            match call.as_mut().poll(&mut cx) {
                Poll::Ready(r) => assert_eq!(r.unwrap().view_id, 7),
                Poll::Pending => panic!("a blocking call waited for the runtime"),
            }
        }
        let mut call = std::pin::pin!(heartbeat(blocking_ch.clone(), ""));
        let Poll::Ready(Err(st)) = call.as_mut().poll(&mut cx) else {
            panic!("expected the master's error at once");
        };
        assert_eq!(st.code(), Code::InvalidArgument);
        assert_eq!(st.message(), "no id");
        assert_eq!(
            mooncake_proto::status::from_status(&st),
            mooncake_common::ErrorCode::InvalidParams
        );
        assert_eq!(async_ch.inner.idle_sync.lock().len(), 1, "given back once");
        // The asynchronous handle on the same pools waits for the reactor, and gets
        // its answer once the runtime runs.
        let mut call = Box::pin(heartbeat(async_ch.clone(), "b"));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(rt.block_on(call).unwrap().view_id, 7);
        assert_eq!(blocking_ch.inner.idle.lock().len(), 1);
    }

    /// Pointed at an HTTP port, a call says so and names the port it wants, in both
    /// call modes.
    #[test]
    fn an_http_port_is_recognised_and_the_rpc_port_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut b = [0u8; 64];
                let _ = s.read(&mut b);
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = DirectConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(5)),
            keep_alive: None,
            auth: None,
        };
        let ch = FramedChannel::new(&addr, cfg);
        for ch in [ch.clone(), ch.with_mode(CallMode::Blocking)] {
            let st = rt.block_on(heartbeat(ch, "a")).unwrap_err();
            assert!(
                st.message().contains("answers HTTP") && st.message().contains("--rpc_port"),
                "{}",
                st.message()
            );
        }
    }

    /// A server that reads the magic and then answers every request frame with
    /// `answer`; with `close`, it closes after the first answer.
    fn answering(answer: Vec<u8>, close: bool) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut magic = [0u8; MAGIC.len()];
                    if s.read_exact(&mut magic).is_err() {
                        return;
                    }
                    let mut buf = Vec::new();
                    while frame::read_frame_sync(&mut s, &mut buf).is_ok() {
                        if s.write_all(&answer).is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn both_modes(addr: &str) -> [FramedChannel; 2] {
        let cfg = DirectConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(5)),
            keep_alive: None,
            auth: None,
        };
        let ch = FramedChannel::new(addr, cfg);
        [ch.clone(), ch.with_mode(CallMode::Blocking)]
    }

    /// An answer whose length's bytes read like a TLS record header (790 bytes:
    /// `16 03 00 00`) is an answer: a batch's put start answered with it once failed
    /// as "this port answers with TLS".
    #[test]
    fn an_answer_whose_length_looks_like_tls_is_an_answer() {
        let resp = HeartbeatResponse {
            view_id: 7,
            ..Default::default()
        };
        let mut msg = prost::Message::encode_to_vec(&resp);
        // Padding as a field the message does not have (number 15, bytes): decoders
        // skip it.
        let pad = 790 - frame::ANSWER_MIN_PREFIX - msg.len() - 3;
        msg.push(15 << 3 | 2);
        msg.extend_from_slice(&[(pad as u8 & 0x7f) | 0x80, (pad >> 7) as u8]);
        msg.resize(msg.len() + pad, 0xab);
        let mut out = Vec::new();
        frame::encode_answer(0, 0, "", &msg, &mut out).unwrap();
        assert_eq!(
            &out[..4],
            &[0x16, 0x03, 0x00, 0x00],
            "the length reads as TLS"
        );
        let addr = answering(out, false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for ch in both_modes(&addr) {
            for _ in 0..2 {
                let r = rt.block_on(heartbeat(ch.clone(), "a")).unwrap();
                assert_eq!(r.view_id, 7);
            }
        }
    }

    /// A TLS server's alert (a record header, two bytes, then the connection closed)
    /// is named as TLS, in both call modes.
    #[test]
    fn a_tls_alert_is_named_as_tls() {
        let addr = answering(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32], true);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for ch in both_modes(&addr) {
            let st = rt.block_on(heartbeat(ch, "a")).unwrap_err();
            assert!(
                st.message().contains("answers with TLS")
                    && st.message().contains("MOONCAKE_TLS_CA_FILE"),
                "{}",
                st.message()
            );
        }
    }

    #[test]
    fn the_idle_pool_keeps_at_most_max_idle_and_closes_the_rest() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let pool = parking_lot::Mutex::new(Vec::new());
        let mut peers = Vec::new();
        for _ in 0..MAX_IDLE + 8 {
            let c = std::net::TcpStream::connect(addr).unwrap();
            peers.push(l.accept().unwrap().0);
            give_back(&pool, c);
        }
        assert_eq!(pool.lock().len(), MAX_IDLE);
        // The connections past the bound were closed: their peers read end-of-stream.
        let mut b = [0u8; 1];
        for p in &mut peers[MAX_IDLE..] {
            assert_eq!(p.read(&mut b).unwrap(), 0);
        }
        // The pooled ones are open: nothing to read yet.
        peers[0].set_nonblocking(true).unwrap();
        assert_eq!(
            peers[0].read(&mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}

//! The data listener: serves Hello, Describe, Read and Write frames against this
//! engine's registered memory.
//!
//! One task per connection, reading requests in order and answering each before the
//! next; the peer pipelines many requests, so the socket buffers keep the link busy
//! while this task parses. Reads of an SSD tier are the exception: they start as
//! soon as their requests are parsed, a few ahead of the answer being sent, so the
//! device is not idle while the socket is written (`tcp::ahead`).
//!
//! Copies per payload byte on this side: a Write's payload is read from the socket
//! straight into the registered region (one kernel->user copy; only the bytes that
//! arrived with the header, at most 8 KiB, pass through the read buffer); a Read's
//! payload is written from the region with writev (one user->kernel copy). No
//! intermediate buffer exists for payloads. The region is pinned only inside
//! each syscall (`tcp::guarded`), so unregistering never waits on a slow peer.
//!
//! Anyone who can reach the port can connect, so every connection is bounded: the
//! listener keeps at most [`ListenerLimits::max_connections`] open (over it, an idle one
//! gives way, see `tcp::admit`), a connection that starts no frame within
//! `idle_timeout` is closed, a frame that stalls for `stall_timeout` closes its
//! connection, and nothing is allocated from a length the peer announced: payloads go
//! into registered memory or are read in bounded steps.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::admit::{descriptor_limit, effective_cap, ConnTable, Slot};
use super::ahead::{Got, ReadAhead};
use super::frame::{crc, status, Header, Op, HEADER_LEN, MAX_CONTROL_LEN, MAX_DATA_LEN};
use super::grant::Scope;
use super::guarded::{MemAccess, RegionMem};
use super::io::{drain, read_control, tune, within, write_frame, READ_BUF};
use super::tls::{WireRead, WireWrite};
use crate::config::TcpTuning;
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::metrics::Metrics;
use mooncake_common::grant::MAX_GRANT_LEN;

/// Largest Hello payload: a segment name ("host:port"), far below this.
pub const MAX_HELLO_LEN: u64 = 4096;

/// How long a new connection over the cap waits for the evicted one to let go of its
/// slot (it only has to be scheduled) before it is closed instead.
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// The data listener's bounds; defaults and reasons are on the [`TcpTuning`] fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub stall_timeout: Duration,
    pub auth_timeout: Duration,
}

impl ListenerLimits {
    pub fn from_tuning(t: &TcpTuning) -> Self {
        Self {
            max_connections: t.max_connections,
            idle_timeout: t.idle_timeout,
            stall_timeout: t.stall_timeout,
            auth_timeout: t.auth_timeout,
        }
    }
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self::from_tuning(&TcpTuning::default())
    }
}

/// Accepts connections until `stop` turns true.
pub async fn run_listener(
    listener: TcpListener,
    seg: Arc<LocalSegment>,
    sock_buf: usize,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let cap = effective_cap(limits.max_connections, descriptor_limit());
    if cap < limits.max_connections {
        tracing::warn!(
            wanted = limits.max_connections,
            cap,
            "data listener: connection cap lowered to half the descriptor limit; raise `ulimit -n` to serve more peers"
        );
    }
    let permits = Arc::new(Semaphore::new(cap));
    let table = ConnTable::new();
    let refused = Arc::new(AtomicU64::new(0));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(permit) = admit(&permits, &table, &seg).await else {
                        tracing::debug!(%peer, "data listener at its cap with every connection serving a frame; closing a new one");
                        continue;
                    };
                    tune(&stream, sock_buf);
                    let seg = seg.clone();
                    let refused = refused.clone();
                    let reg = table.register();
                    conns.spawn(async move {
                        let _permit = permit;
                        let r = tokio::select! {
                            r = serve(stream, &seg, &reg.slot, &limits) => r,
                            _ = reg.slot.evict.notified() => Err(TransferError::Io(
                                "closed to admit a newer connection (listener at its cap)".into(),
                            )),
                        };
                        match r {
                            Err(TransferError::Unauthenticated(why)) => {
                                // The first refusal and then every 1000th: a flood of
                                // strangers must not flood the log.
                                if refused.fetch_add(1, Relaxed).is_multiple_of(1000) {
                                    tracing::warn!(%peer, "data port: refused a peer that did not prove a token ({why})");
                                }
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "data connection closed"),
                            Ok(()) => {}
                        }
                    });
                }
                Err(e) => {
                    // EMFILE/ENFILE or a connection reset before it was accepted: wait
                    // for descriptors to come back rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

/// A slot for a new connection: a free one, or one an idle connection gives up.
/// `None`: every connection is serving a frame, so the new one is closed at once.
async fn admit(
    permits: &Arc<Semaphore>,
    table: &ConnTable,
    seg: &LocalSegment,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = permits.clone().try_acquire_owned() {
        return Some(p);
    }
    if !table.evict_one() {
        Metrics::add(&seg.metrics.connections_refused, 1);
        return None;
    }
    Metrics::add(&seg.metrics.connections_evicted, 1);
    match tokio::time::timeout(EVICT_WAIT, permits.clone().acquire_owned()).await {
        Ok(Ok(p)) => Some(p),
        _ => {
            Metrics::add(&seg.metrics.connections_refused, 1);
            None
        }
    }
}

/// Waits up to `limits.idle_timeout` for the next frame to start, then reads its
/// header with `limits.stall_timeout` per read. `Ok(None)`: the peer closed cleanly
/// between frames.
async fn next_header<R: AsyncRead + Unpin>(
    rd: &mut BufReader<R>,
    slot: &Slot,
    limits: &ListenerLimits,
    io: impl Fn(std::io::Error) -> TransferError,
) -> Result<Option<Header>, TransferError> {
    slot.idle();
    let waiting = rd.fill_buf();
    if within(Some(limits.idle_timeout), "waiting for a frame", waiting)
        .await
        .map_err(&io)?
        .is_empty()
    {
        return Ok(None);
    }
    let mut b = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = within(
            Some(limits.stall_timeout),
            "reading a frame header",
            rd.read(&mut b[got..]),
        )
        .await
        .map_err(&io)?;
        if n == 0 {
            return Err(TransferError::Frame(format!(
                "connection closed inside a header ({got} of {HEADER_LEN} bytes)"
            )));
        }
        got += n;
    }
    let h = Header::decode(&b).map_err(|e| {
        if mooncake_tls::looks_like_tls(&b) {
            TransferError::Config(
                "a TLS client on this plaintext data port (set MOONCAKE_TRANSFER_TLS=1 here too, or unset it on the peer)".into(),
            )
        } else {
            e
        }
    })?;
    slot.in_frame();
    Ok(Some(h))
}

/// Writes a small answer (ack, refusal, descriptor) whole within the stall bound: a
/// peer that stops reading answers holds its slot no longer than that. The flush
/// sends what a TLS stream buffered (a no-op on a plaintext socket).
async fn answer<W: AsyncWrite + Unpin>(
    wr: &mut W,
    h: &Header,
    payload: &[u8],
    stall: Option<Duration>,
) -> std::io::Result<()> {
    within(stall, "writing an answer", async {
        write_frame(wr, h, payload).await?;
        wr.flush().await
    })
    .await
}

/// The answer to a Hello, Describe or Control request whose payload is `req`.
fn control_answer(seg: &LocalSegment, h: &Header, req: &[u8]) -> (Header, Vec<u8>) {
    match h.op {
        Op::Hello => {
            let ok = req.is_empty() || req == seg.name.as_bytes();
            let st = if ok {
                status::OK
            } else {
                status::WRONG_SEGMENT
            };
            let ack = Header::new(Op::HelloAck, h.id, seg.generation, 0).with_status(st);
            (ack, Vec::new())
        }
        Op::Describe => {
            let json = seg.descriptor().to_json().into_bytes();
            let resp = Header::new(Op::DescribeData, h.id, seg.generation, json.len() as u64);
            (resp, json)
        }
        _ => {
            let handler = seg.control.read().clone();
            let (st, body) = match handler {
                None => (
                    status::BAD_REQUEST,
                    b"no control handler on this engine".to_vec(),
                ),
                Some(f) => match f(req) {
                    Ok(b) => (status::OK, b),
                    Err(e) => (status::BAD_REQUEST, e.into_bytes()),
                },
            };
            let resp = Header::new(Op::ControlData, h.id, 0, body.len() as u64).with_status(st);
            (resp, body)
        }
    }
}

/// Whether the restricted connection of `scope` may address `h`'s range; logs a
/// refusal (the first, then every 1000th: a tenant probing memory must not flood the
/// log).
fn allowed(scope: &mut Scope, seg: &LocalSegment, h: &Header) -> bool {
    match scope.check(&seg.grants, h.addr, h.len) {
        Ok(()) => true,
        Err(why) => {
            let n = seg.metrics.requests_forbidden.fetch_add(1, Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(
                    addr = h.addr,
                    len = h.len,
                    "data port: refused a {:?} outside the tenant's grants: {why}",
                    h.op
                );
            }
            false
        }
    }
}

/// One connection: TLS first when this data port requires it, then the frames.
async fn serve(
    stream: TcpStream,
    seg: &LocalSegment,
    slot: &Slot,
    limits: &ListenerLimits,
) -> Result<(), TransferError> {
    match &seg.tls {
        None => {
            let (rd, wr) = stream.into_split();
            serve_on(rd, wr, seg, slot, limits).await
        }
        Some(tls) => {
            let s = tls.accept(stream, limits.auth_timeout).await?;
            let (rd, wr) = tokio::io::split(s);
            serve_on(rd, wr, seg, slot, limits).await
        }
    }
}

async fn serve_on<R: WireRead, W: WireWrite>(
    rd: R,
    mut wr: W,
    seg: &LocalSegment,
    slot: &Slot,
    limits: &ListenerLimits,
) -> Result<(), TransferError> {
    let mut rd = BufReader::with_capacity(READ_BUF, rd);
    let stall = Some(limits.stall_timeout);
    let mut scope = Scope::open();
    if let Some(v) = &seg.auth.verifier {
        let (tenant, early) =
            super::auth::accept(&mut rd, &mut wr, v.as_ref(), limits.auth_timeout).await?;
        tracing::debug!(%tenant, "data connection authenticated");
        scope = Scope::of(tenant);
        if let Some(e) = early {
            let (resp, body) = control_answer(seg, &e.header, &e.payload);
            answer(&mut wr, &resp, &body, stall)
                .await
                .map_err(|e| TransferError::io("answer", e))?;
        }
    }
    let io = |what: &'static str| {
        move |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Metrics::add(&seg.metrics.connections_timed_out, 1);
            }
            TransferError::io(what, e)
        }
    };
    // Reads of the SSD tier start as their requests arrive and are answered in
    // request order (`tcp::ahead`); every other frame is served after the answers of
    // the reads before it.
    let mut ahead = ReadAhead::default();
    loop {
        let h = if ahead.is_empty() {
            match next_header(&mut rd, slot, limits, io("frame header")).await? {
                Some(h) => h,
                None => break,
            }
        } else if let Some(h) = buffered_header(&mut rd, slot, &ahead)? {
            h
        } else {
            // Until the oldest read is done, take more requests if there is room
            // (a whole header already buffered was taken above).
            let take_more = !ahead.is_full() && rd.buffer().is_empty();
            let arrived = if take_more {
                tokio::select! {
                    biased;
                    r = async { rd.fill_buf().await.map(|b| !b.is_empty()) } => {
                        Some(r.map_err(io("frame header"))?)
                    }
                    _ = ahead.front_done() => None,
                }
            } else {
                None
            };
            match arrived {
                Some(true) => continue,
                Some(false) => break,
                None => {
                    if let Some((h, got)) = ahead.next().await {
                        send_source_read(&mut wr, seg, &h, got, stall)
                            .await
                            .map_err(io("read payload"))?;
                    }
                    continue;
                }
            }
        };
        let src = match h.op {
            Op::Read => seg.source_for(h.addr, h.len),
            _ => None,
        };
        if src.is_none() {
            while let Some((h, got)) = ahead.next().await {
                send_source_read(&mut wr, seg, &h, got, stall)
                    .await
                    .map_err(io("read payload"))?;
            }
        }
        match h.op {
            Op::Hello | Op::Describe | Op::Control => {
                let limit = if h.op == Op::Hello {
                    MAX_HELLO_LEN
                } else {
                    MAX_CONTROL_LEN
                };
                let req = read_control(&mut rd, h.payload_len(), limit, stall)
                    .await
                    .map_err(io("request"))?;
                let (resp, body) = control_answer(seg, &h, &req);
                answer(&mut wr, &resp, &body, stall)
                    .await
                    .map_err(io("answer"))?;
            }
            Op::Grant => {
                let g = read_control(&mut rd, h.payload_len(), MAX_GRANT_LEN as u64, stall)
                    .await
                    .map_err(io("grant"))?;
                scope.grant(&seg.grants, &g);
            }
            Op::Write | Op::Read if scope.restricted() && !allowed(&mut scope, seg, &h) => {
                if h.op == Op::Write {
                    drain(&mut rd, h.len, stall)
                        .await
                        .map_err(io("draining write"))?;
                }
                let op = if h.op == Op::Write {
                    Op::WriteAck
                } else {
                    Op::ReadData
                };
                let resp = Header::new(op, h.id, h.addr, h.len).with_status(status::FORBIDDEN);
                answer(&mut wr, &resp, &[], stall)
                    .await
                    .map_err(io("refusal"))?;
            }
            Op::Write => {
                let st = match seg.memory.lookup(h.addr, h.len) {
                    None => {
                        Metrics::add(&seg.metrics.out_of_region, 1);
                        drain(&mut rd, h.len, stall)
                            .await
                            .map_err(io("draining write"))?;
                        status::OUT_OF_REGION
                    }
                    Some(region) => {
                        region.note_written(h.addr, h.len);
                        drop(region);
                        let mem = RegionMem {
                            memory: &seg.memory,
                            addr: h.addr,
                            len: h.len,
                        };
                        let (delivered, crc_ok) = if h.has_crc() {
                            // Staged, checked, then copied: a payload that fails its
                            // CRC never reaches the region, so no reader can see it.
                            // The buffer grows with the bytes that arrive.
                            let staged = read_control(&mut rd, h.len, MAX_DATA_LEN, stall)
                                .await
                                .map_err(io("write payload"))?;
                            if crc(&staged) == h.crc {
                                // SAFETY: `with` grants the registered `len` bytes.
                                let copied = mem.with(|p| unsafe {
                                    std::ptr::copy_nonoverlapping(staged.as_ptr(), p, staged.len())
                                });
                                (copied.is_some(), true)
                            } else {
                                (true, false)
                            }
                        } else {
                            let delivered = R::read_into(&mut rd, h.len as usize, &mem, stall)
                                .await
                                .map_err(io("write payload"))?;
                            (delivered, true)
                        };
                        Metrics::add(&seg.metrics.bytes_served_in, h.len);
                        match (delivered, crc_ok) {
                            (false, _) => status::OUT_OF_REGION,
                            (true, false) => status::CHECKSUM,
                            (true, true) => status::OK,
                        }
                    }
                };
                let ack = Header::new(Op::WriteAck, h.id, h.addr, h.len).with_status(st);
                answer(&mut wr, &ack, &[], stall)
                    .await
                    .map_err(io("write ack"))?;
            }
            Op::Read if src.is_some() => {
                if let Some(src) = src {
                    ahead.start(h, src);
                }
            }
            Op::Read => match seg.memory.lookup(h.addr, h.len) {
                None => {
                    Metrics::add(&seg.metrics.out_of_region, 1);
                    let resp = Header::new(Op::ReadData, h.id, h.addr, h.len)
                        .with_status(status::OUT_OF_REGION);
                    answer(&mut wr, &resp, &[], stall)
                        .await
                        .map_err(io("read refusal"))?;
                }
                Some(region) => {
                    let mut resp = Header::new(Op::ReadData, h.id, h.addr, h.len);
                    if h.has_crc() {
                        // SAFETY: the range is inside the registered region `region` pins.
                        let src = unsafe {
                            std::slice::from_raw_parts(h.addr as usize as *const u8, h.len as usize)
                        };
                        resp = resp.with_crc(crc(src));
                    }
                    drop(region);
                    let mem = RegionMem {
                        memory: &seg.memory,
                        addr: h.addr,
                        len: h.len,
                    };
                    wr.write_from(&[], &resp, h.len as usize, &mem, stall)
                        .await
                        .map_err(io("read payload"))?;
                    Metrics::add(&seg.metrics.bytes_served_out, h.len);
                }
            },
            other => {
                return Err(TransferError::Frame(format!(
                    "unexpected {other:?} frame from an initiator"
                )))
            }
        }
    }
    // The peer closed: the reads it asked for before are still answered.
    while let Some((h, got)) = ahead.next().await {
        send_source_read(&mut wr, seg, &h, got, stall)
            .await
            .map_err(io("read payload"))?;
    }
    Ok(())
}

/// A whole frame header the read buffer already holds, taken without waiting while
/// there is room for another read ahead; `None` otherwise.
fn buffered_header<R: AsyncRead + Unpin>(
    rd: &mut BufReader<R>,
    slot: &Slot,
    ahead: &ReadAhead,
) -> Result<Option<Header>, TransferError> {
    if ahead.is_full() || rd.buffer().len() < HEADER_LEN {
        return Ok(None);
    }
    let h = Header::decode(&rd.buffer()[..HEADER_LEN])?;
    rd.consume(HEADER_LEN);
    slot.in_frame();
    Ok(Some(h))
}

/// The answer to a read of the SSD tier: its bytes, or a refusal when the source
/// could not vouch for them (a missing or torn record, an I/O error).
async fn send_source_read<W: AsyncWrite + Unpin>(
    wr: &mut W,
    seg: &LocalSegment,
    h: &Header,
    got: Got,
    stall: Option<Duration>,
) -> std::io::Result<()> {
    let resp = Header::new(Op::ReadData, h.id, h.addr, h.len);
    match got {
        Ok(b) => {
            let b: &[u8] = (*b).as_ref();
            let resp = if h.has_crc() {
                resp.with_crc(crc(b))
            } else {
                resp
            };
            answer(wr, &resp, b, stall).await?;
            Metrics::add(&seg.metrics.bytes_served_out, h.len);
        }
        Err(e) => {
            tracing::debug!(
                addr = h.addr,
                len = h.len,
                "refused a read of the SSD tier: {e}"
            );
            Metrics::add(&seg.metrics.out_of_region, 1);
            answer(wr, &resp.with_status(status::OUT_OF_REGION), &[], stall).await?;
        }
    }
    Ok(())
}

//! One initiator-side data connection: a writer task that sends requests and a reader
//! task that matches responses by request id. Many requests are in flight at once
//! (pipelined); callers talk to the tasks through a bounded channel, so a dropped
//! caller future can never leave half a frame on the socket.
//!
//! Copies per payload byte on this side: a Write is sent from the caller's memory with
//! writev (one user->kernel copy); a Read response is read from the socket straight
//! into the caller's memory (one kernel->user copy, except up to 8 KiB that may arrive
//! together with the header and pass through the read buffer).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::BufReader;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::frame::{crc, status, Header, Op, FLAG_CRC};
use super::guarded::{read_into, write_from, CallerMem, MemAccess};
use super::io::{read_header, tune, write_frame, READ_BUF};
use super::slice::Job;
use crate::config::TcpTuning;
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::metrics::Metrics;
use crate::Opcode;

const QUEUE: usize = 1024;

struct Pending {
    closed: Option<TransferError>,
    map: HashMap<u64, Job>,
    /// The request whose payload the writer is sending right now: `close` leaves it to
    /// the writer, which fails it only after it stops reading the caller's memory (so a
    /// retry on another path never overlaps with this copy).
    writing: Option<u64>,
}

struct Shared {
    pending: Mutex<Pending>,
    dead: AtomicBool,
    /// Bytes queued or in flight on this connection (for least-loaded path choice).
    outstanding: AtomicU64,
    segment: String,
}

impl Shared {
    fn insert(&self, id: u64, job: Job, writing: bool) -> Result<(), (Job, TransferError)> {
        let mut p = self.pending.lock();
        if let Some(e) = &p.closed {
            return Err((job, e.clone()));
        }
        p.map.insert(id, job);
        if writing {
            p.writing = Some(id);
        }
        Ok(())
    }

    /// The writer finished sending request `id`'s payload.
    fn written(&self, id: u64) {
        let job = {
            let mut p = self.pending.lock();
            p.writing = None;
            match p.closed.clone() {
                Some(e) => p.map.remove(&id).map(|j| (j, e)),
                None => None,
            }
        };
        if let Some((job, e)) = job {
            self.finish(job, Err(e));
        }
    }

    fn take(&self, id: u64) -> Option<Job> {
        self.pending.lock().map.remove(&id)
    }

    /// Marks the connection dead and fails every request still waiting on it.
    fn close(&self, err: TransferError) {
        self.dead.store(true, Ordering::Release);
        let jobs: Vec<Job> = {
            let mut p = self.pending.lock();
            if p.closed.is_none() {
                p.closed = Some(err.clone());
            }
            let keep = p.writing.and_then(|id| p.map.remove(&id).map(|j| (id, j)));
            let all = p.map.drain().map(|(_, j)| j).collect();
            if let Some((id, j)) = keep {
                p.map.insert(id, j);
            }
            all
        };
        for j in jobs {
            self.finish(j, Err(err.clone()));
        }
    }

    fn finish(&self, job: Job, result: Result<(), TransferError>) {
        self.outstanding
            .fetch_sub(job.len as u64, Ordering::Relaxed);
        job.complete(result);
    }
}

/// A live data connection to one peer over one local interface.
pub struct Conn {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    pub local_ip: Option<IpAddr>,
    pub remote: SocketAddr,
}

impl Conn {
    /// Connects, checks the peer is `segment` at `generation` (0 = any) and starts the
    /// connection tasks. Returns the peer's generation too.
    pub async fn connect(
        local_ip: Option<IpAddr>,
        remote: SocketAddr,
        segment: &str,
        generation: u64,
        tuning: &TcpTuning,
        seg: Arc<LocalSegment>,
    ) -> Result<(Arc<Conn>, u64), TransferError> {
        let fut = async {
            let mut stream = open(local_ip, remote, tuning.socket_buffer).await?;
            let peer_gen = hello(&mut stream, segment, generation).await?;
            Ok::<_, TransferError>((stream, peer_gen))
        };
        let (stream, peer_gen) = tokio::time::timeout(tuning.connect_timeout, fut)
            .await
            .map_err(|_| TransferError::Io(format!("connect to {remote} timed out")))??;
        Metrics::add(&seg.metrics.connections_opened, 1);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                closed: None,
                map: HashMap::new(),
                writing: None,
            }),
            dead: AtomicBool::new(false),
            outstanding: AtomicU64::new(0),
            segment: segment.to_string(),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let (rd, wr) = stream.into_split();
        tokio::spawn(writer(rx, wr, shared.clone(), tuning.crc, seg.clone()));
        tokio::spawn(reader(rd, shared.clone(), seg));
        let conn = Conn {
            tx,
            shared,
            local_ip,
            remote,
        };
        Ok((Arc::new(conn), peer_gen))
    }

    pub fn alive(&self) -> bool {
        !self.shared.dead.load(Ordering::Acquire)
    }

    pub fn outstanding(&self) -> u64 {
        self.shared.outstanding.load(Ordering::Relaxed)
    }

    /// Queues a slice; gives it back if the connection is gone.
    pub async fn send(&self, job: Job) -> Result<(), Job> {
        let len = job.len as u64;
        self.shared.outstanding.fetch_add(len, Ordering::Relaxed);
        match self.tx.send(job).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(job)) => {
                self.shared.outstanding.fetch_sub(len, Ordering::Relaxed);
                Err(job)
            }
        }
    }

    /// Kills the connection (tests use this to simulate a dying path).
    pub fn kill(&self) {
        self.shared.close(TransferError::Io(format!(
            "connection to {} killed",
            self.remote
        )));
    }
}

async fn open(
    local_ip: Option<IpAddr>,
    remote: SocketAddr,
    buf: usize,
) -> Result<TcpStream, TransferError> {
    let sock = if remote.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| TransferError::io("socket", e))?;
    if buf > 0 {
        let _ = sock.set_send_buffer_size(buf as u32);
        let _ = sock.set_recv_buffer_size(buf as u32);
    }
    if let Some(ip) = local_ip {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|e| TransferError::io(&format!("bind to local interface {ip}"), e))?;
    }
    let stream = sock
        .connect(remote)
        .await
        .map_err(|e| TransferError::io(&format!("connect to {remote}"), e))?;
    tune(&stream, 0);
    Ok(stream)
}

/// The handshake: names the segment and generation we expect; the listener answers
/// with its own generation.
async fn hello(
    stream: &mut TcpStream,
    segment: &str,
    generation: u64,
) -> Result<u64, TransferError> {
    let h = Header::new(Op::Hello, 0, generation, segment.len() as u64);
    write_frame(stream, &h, segment.as_bytes())
        .await
        .map_err(|e| TransferError::io("sending hello", e))?;
    let ack = read_header(stream)
        .await?
        .ok_or_else(|| TransferError::Io("peer closed during hello".into()))?;
    if ack.op != Op::HelloAck {
        return Err(TransferError::Frame(format!(
            "expected HelloAck, got {:?}",
            ack.op
        )));
    }
    if ack.status == status::WRONG_SEGMENT {
        return Err(TransferError::SegmentNotFound(
            segment.to_string(),
            format!(
                "the listener at {} serves another segment",
                stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ),
        ));
    }
    if generation != 0 && ack.addr != generation {
        return Err(TransferError::StaleDescriptor {
            segment: segment.to_string(),
            expected: generation,
            actual: ack.addr,
        });
    }
    Ok(ack.addr)
}

async fn writer(
    mut rx: mpsc::Receiver<Job>,
    mut wr: OwnedWriteHalf,
    sh: Arc<Shared>,
    crc_on: bool,
    seg: Arc<LocalSegment>,
) {
    let mut next_id = 1u64;
    while let Some(job) = rx.recv().await {
        let id = next_id;
        next_id += 1;
        let (op, addr, len, local, ctl) =
            (job.op, job.remote_addr, job.len, job.local, job.ctl.clone());
        let result = match op {
            Opcode::Write => {
                if ctl.is_cancelled() {
                    sh.finish(job, Err(TransferError::Shutdown));
                    continue;
                }
                let mem = CallerMem {
                    ctl: &ctl,
                    ptr: local,
                };
                let mut h = Header::new(Op::Write, id, addr, len as u64);
                if crc_on {
                    // SAFETY: `with` grants access to the caller's `len` bytes.
                    match mem.with(|p| crc(unsafe { std::slice::from_raw_parts(p, len) })) {
                        Some(c) => h = h.with_crc(c),
                        None => {
                            sh.finish(job, Err(TransferError::Shutdown));
                            continue;
                        }
                    }
                }
                if let Err((job, e)) = sh.insert(id, job, true) {
                    sh.finish(job, Err(e));
                    continue;
                }
                let r = write_from(&mut wr, &h, len, &mem).await;
                sh.written(id);
                if r.is_ok() {
                    Metrics::add(&seg.metrics.bytes_written, len as u64);
                }
                r
            }
            Opcode::Read => {
                let mut h = Header::new(Op::Read, id, addr, len as u64);
                if crc_on {
                    h.flags |= FLAG_CRC;
                }
                if let Err((job, e)) = sh.insert(id, job, false) {
                    sh.finish(job, Err(e));
                    continue;
                }
                write_frame(&mut wr, &h, &[]).await
            }
        };
        if let Err(e) = result {
            sh.close(TransferError::io(&format!("sending to {}", sh.segment), e));
            break;
        }
    }
    // Fail whatever is still queued; the reader fails what is in flight.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        sh.finish(job, Err(TransferError::Io("data connection closed".into())));
    }
}

async fn reader(rd: OwnedReadHalf, sh: Arc<Shared>, seg: Arc<LocalSegment>) {
    let mut rd = BufReader::with_capacity(READ_BUF, rd);
    let err = loop {
        let h = match read_header(&mut rd).await {
            Ok(Some(h)) => h,
            Ok(None) => break TransferError::Io(format!("{} closed the connection", sh.segment)),
            Err(e) => break e,
        };
        let Some(job) = sh.take(h.id) else {
            break TransferError::Frame(format!("response for unknown request id {}", h.id));
        };
        let result = match (h.op, job.op) {
            (Op::WriteAck, Opcode::Write) => status_result(&sh.segment, &h, job.len),
            (Op::ReadData, Opcode::Read) if h.status != status::OK => {
                status_result(&sh.segment, &h, job.len)
            }
            (Op::ReadData, Opcode::Read) if h.len != job.len as u64 => {
                let e = TransferError::Frame(format!(
                    "read returned {} bytes, asked {}",
                    h.len, job.len
                ));
                sh.finish(job, Err(e.clone()));
                break e;
            }
            (Op::ReadData, Opcode::Read) => {
                let mem = CallerMem {
                    ctl: &job.ctl,
                    ptr: job.local,
                };
                let r = read_into(&mut rd, job.len, &mem).await.map(|delivered| {
                    if !delivered {
                        return Some(TransferError::Shutdown);
                    }
                    if !h.has_crc() {
                        return None;
                    }
                    // SAFETY: `with` grants access to the caller's `len` bytes.
                    match mem.with(|p| crc(unsafe { std::slice::from_raw_parts(p, job.len) })) {
                        Some(c) if c == h.crc => None,
                        Some(_) => Some(TransferError::Checksum(format!(
                            "read of {} bytes at {:#x} from {}",
                            h.len, h.addr, sh.segment
                        ))),
                        None => Some(TransferError::Shutdown),
                    }
                });
                match r {
                    Err(e) => {
                        let e = TransferError::io("reading read payload", e);
                        sh.finish(job, Err(e.clone()));
                        break e;
                    }
                    Ok(Some(e)) => Err(e),
                    Ok(None) => {
                        Metrics::add(&seg.metrics.bytes_read, h.len);
                        Ok(())
                    }
                }
            }
            (got, _) => {
                let e =
                    TransferError::Frame(format!("unexpected {got:?} for a {:?} request", job.op));
                sh.finish(job, Err(e.clone()));
                break e;
            }
        };
        sh.finish(job, result);
    };
    sh.close(err);
}

fn status_result(segment: &str, h: &Header, len: usize) -> Result<(), TransferError> {
    match h.status {
        status::OK => Ok(()),
        status::OUT_OF_REGION => Err(TransferError::OutOfRegion {
            segment: segment.to_string(),
            addr: h.addr,
            len: len as u64,
        }),
        status::CHECKSUM => Err(TransferError::Checksum(format!(
            "write of {len} bytes at {:#x} to {segment}",
            h.addr
        ))),
        other => Err(TransferError::InvalidRequest(format!(
            "{segment} refused the request (status {other})"
        ))),
    }
}

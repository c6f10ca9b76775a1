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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::frame::{status, Header, Op};
use super::io::tune;
use super::slice::Job;
use super::tls::{DataTls, Sniff, WireRead, WireWrite};
use crate::config::TcpTuning;
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::metrics::Metrics;

const QUEUE: usize = 1024;

struct Pending {
    closed: Option<TransferError>,
    map: HashMap<u64, Job>,
    /// The request whose payload the writer is sending right now: `close` leaves it to
    /// the writer, which fails it only after it stops reading the caller's memory (so a
    /// retry on another path never overlaps with this copy).
    writing: Option<u64>,
}

pub(super) struct Shared {
    pending: Mutex<Pending>,
    dead: AtomicBool,
    /// Bytes queued or in flight on this connection (for least-loaded path choice).
    outstanding: AtomicU64,
    pub(super) segment: String,
}

impl Shared {
    // The job comes back whole on the (rare) closed-connection path so its sender can
    // complete it; boxing it would cost an allocation per slice on the common path.
    #[allow(clippy::result_large_err)]
    pub(super) fn insert(
        &self,
        id: u64,
        job: Job,
        writing: bool,
    ) -> Result<(), (Job, TransferError)> {
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
    pub(super) fn written(&self, id: u64) {
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

    pub(super) fn take(&self, id: u64) -> Option<Job> {
        self.pending.lock().map.remove(&id)
    }

    /// Marks the connection dead and fails every request still waiting on it.
    pub(super) fn close(&self, err: TransferError) {
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

    pub(super) fn finish(&self, job: Job, result: Result<(), TransferError>) {
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
            let mut tcp = open(local_ip, remote, tuning.socket_buffer).await?;
            let cred = seg.auth.credential.as_ref();
            match &seg.tls {
                None => {
                    let mut sniff = Sniff::new(&mut tcp);
                    let peer_gen = hello(&mut sniff, remote, segment, generation, cred)
                        .await
                        .map_err(|e| sniff.explain(remote, e))?;
                    Ok::<_, TransferError>((Wire::Plain(tcp), peer_gen))
                }
                Some(tls) => {
                    let mut s = tls.connect(tcp, remote).await?;
                    let peer_gen = hello(&mut s, remote, segment, generation, cred)
                        .await
                        .map_err(|e| DataTls::explain(remote, e))?;
                    Ok((Wire::Tls(s), peer_gen))
                }
            }
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
        match stream {
            Wire::Plain(s) => {
                let (rd, wr) = s.into_split();
                spawn_tasks(rd, wr, rx, &shared, tuning.crc, seg);
            }
            Wire::Tls(s) => {
                let (rd, wr) = tokio::io::split(s);
                spawn_tasks(rd, wr, rx, &shared, tuning.crc, seg);
            }
        }
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

/// Opens a lane (`tcp::lane`): a plaintext connection greeted (and proved) like a
/// pooled one, then handed over as a blocking socket to the calling thread.
pub(crate) async fn open_lane(
    local_ip: Option<IpAddr>,
    remote: SocketAddr,
    segment: &str,
    generation: u64,
    tuning: &TcpTuning,
    seg: &LocalSegment,
) -> Result<super::lane::Lane, TransferError> {
    let fut = async {
        let mut tcp = open(local_ip, remote, tuning.socket_buffer).await?;
        let mut sniff = Sniff::new(&mut tcp);
        hello(
            &mut sniff,
            remote,
            segment,
            generation,
            seg.auth.credential.as_ref(),
        )
        .await
        .map_err(|e| sniff.explain(remote, e))?;
        Ok::<_, TransferError>(tcp)
    };
    let tcp = tokio::time::timeout(tuning.connect_timeout, fut)
        .await
        .map_err(|_| TransferError::Io(format!("connect to {remote} timed out")))??;
    Metrics::add(&seg.metrics.connections_opened, 1);
    let std = tcp
        .into_std()
        .map_err(|e| TransferError::io("taking over a lane's socket", e))?;
    super::lane::Lane::new(std).map_err(|e| TransferError::io("setting up a lane", e))
}

/// A connected, greeted stream: plaintext, or TLS when this engine requires it.
enum Wire {
    Plain(TcpStream),
    Tls(mooncake_tls::Stream),
}

fn spawn_tasks<R: WireRead, W: WireWrite>(
    rd: R,
    wr: W,
    rx: mpsc::Receiver<Job>,
    shared: &Arc<Shared>,
    crc: bool,
    seg: Arc<LocalSegment>,
) {
    tokio::spawn(super::conn_tasks::writer(
        rx,
        wr,
        shared.clone(),
        crc,
        seg.clone(),
    ));
    tokio::spawn(super::conn_tasks::reader(rd, shared.clone(), seg));
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
/// with its own generation. A listener that requires authentication is sent a proof
/// of `credential` in between (`tcp::auth`).
async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    remote: SocketAddr,
    segment: &str,
    generation: u64,
    credential: Option<&mooncake_common::auth::Credential>,
) -> Result<u64, TransferError> {
    let h = Header::new(Op::Hello, 0, generation, segment.len() as u64);
    let remote = remote.to_string();
    let ack = super::auth::request(stream, &h, segment.as_bytes(), credential, &remote).await?;
    if ack.op != Op::HelloAck {
        return Err(TransferError::Frame(format!(
            "expected HelloAck, got {:?}",
            ack.op
        )));
    }
    if ack.status == status::WRONG_SEGMENT {
        return Err(TransferError::SegmentNotFound(
            segment.to_string(),
            format!("the listener at {remote} serves another segment"),
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

//! The real client's service for dummies: a TCP port (`--port`) for calls and a
//! unix socket in the abstract namespace for handing over shared pools (a file
//! descriptor cannot cross TCP). Both face strangers, so both are bounded:
//!
//! - at most `max_connections` connections per listener; one more is closed at once;
//! - a connection must say hello (magic, version) within `handshake_timeout`;
//! - a connection silent for `idle_timeout` between requests is closed, and a
//!   request's body must arrive within `io_timeout`;
//! - frames are bounded and read as their bytes arrive (`wire`);
//! - a request that does not parse closes its connection.
//!
//! One thread per connection: a dummy waits for each answer, so a connection carries
//! one call at a time, and the thread drives that call on the client's runtime.

mod dispatch;
pub mod mappings;

use crate::fdpass;
use crate::ops;
use crate::wire::{self, Dec, Enc, WireError};
use mappings::Mappings;
use mooncake_client::Client;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The bounds of both listeners.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub io_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            io_timeout: Duration::from_secs(60),
        }
    }
}

/// What every connection shares.
pub struct Service {
    pub client: Client,
    pub rt: tokio::runtime::Handle,
    /// Changes with every start, so dummies notice a restart and hand their pools over
    /// again.
    pub instance: u64,
    pub ipc_name: String,
    pub mappings: Mappings,
    pub limits: Limits,
    stopping: AtomicBool,
}

impl Service {
    pub fn new(client: Client, rt: tokio::runtime::Handle, port: u16, limits: Limits) -> Arc<Self> {
        Arc::new(Service {
            client,
            rt,
            instance: uuid::Uuid::new_v4().as_u64_pair().0 | 1,
            ipc_name: fdpass::ipc_name(port),
            mappings: Mappings::default(),
            limits,
            stopping: AtomicBool::new(false),
        })
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// A stream a dummy talks over.
trait Conn: Read + Write + Send + 'static {
    fn set_timeout(&self, t: Duration) -> io::Result<()>;
    /// Reads a frame header, with any descriptors that came with it.
    fn read_header(&mut self) -> io::Result<Option<([u8; 4], Vec<OwnedFd>)>>;
    const CAN_PASS_FDS: bool;
}

fn read_header_with(
    mut read: impl FnMut(&mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)>,
) -> io::Result<Option<([u8; 4], Vec<OwnedFd>)>> {
    let mut h = [0u8; 4];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < 4 {
        match read(&mut h[got..]) {
            Ok((0, _)) if got == 0 => return Ok(None),
            Ok((0, _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok((n, f)) => {
                got += n;
                fds.extend(f);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some((h, fds)))
}

impl Conn for TcpStream {
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
    fn read_header(&mut self) -> io::Result<Option<([u8; 4], Vec<OwnedFd>)>> {
        read_header_with(|b| self.read(b).map(|n| (n, Vec::new())))
    }
    const CAN_PASS_FDS: bool = false;
}

impl Conn for UnixStream {
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
    fn read_header(&mut self) -> io::Result<Option<([u8; 4], Vec<OwnedFd>)>> {
        let s = &*self;
        read_header_with(|b| fdpass::recv_with_fds(s, b))
    }
    const CAN_PASS_FDS: bool = true;
}

/// Serves dummies on `tcp` until the service stops.
pub fn spawn_tcp(
    svc: Arc<Service>,
    listener: TcpListener,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dummy-accept".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for s in listener.incoming() {
                if svc.stopped() {
                    return;
                }
                match s {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        admit(&svc, &active, s);
                    }
                    Err(e) => accept_failed(e),
                }
            }
        })
}

/// Takes pools on the abstract unix socket until the service stops.
pub fn spawn_ipc(
    svc: Arc<Service>,
    listener: UnixListener,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dummy-ipc".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for s in listener.incoming() {
                if svc.stopped() {
                    return;
                }
                match s {
                    Ok(s) => admit(&svc, &active, s),
                    Err(e) => accept_failed(e),
                }
            }
        })
}

/// Drops the pools of dummies that left, every few seconds, until the service stops.
pub fn spawn_reaper(svc: Arc<Service>) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dummy-reaper".into())
        .spawn(move || {
            while !svc.stopped() {
                std::thread::sleep(Duration::from_secs(5));
                svc.mappings.reap(mappings::ORPHAN_GRACE);
            }
        })
}

/// The unix listener in the abstract namespace.
pub fn bind_ipc(name: &str) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixListener::bind_addr(&addr)
}

fn accept_failed(e: io::Error) {
    tracing::warn!(error = %e, "accept failed");
    // Out of descriptors and the like: do not spin.
    std::thread::sleep(Duration::from_millis(50));
}

fn admit<C: Conn>(svc: &Arc<Service>, active: &Arc<AtomicUsize>, s: C) {
    if active.fetch_add(1, Ordering::AcqRel) >= svc.limits.max_connections {
        active.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(
            max = svc.limits.max_connections,
            "dummy connection refused: at the limit"
        );
        return; // dropping `s` closes it
    }
    let svc = svc.clone();
    let active2 = active.clone();
    let spawned = std::thread::Builder::new()
        .name("dummy-conn".into())
        .spawn(move || {
            if let Err(e) = serve_conn(&svc, s) {
                tracing::debug!(error = %e, "dummy connection ended");
            }
            active2.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The hello: magic, version and the dummy's token; answered with this instance.
fn hello(svc: &Service, body: &[u8]) -> Result<(u64, Vec<u8>), WireError> {
    let mut d = Dec::new(body);
    if d.u8()? != ops::HELLO {
        return Err(WireError::Malformed(
            "the first request is not a hello".into(),
        ));
    }
    let magic = d.take_magic()?;
    if &magic != ops::MAGIC {
        return Err(WireError::Malformed("not the dummy protocol".into()));
    }
    let version = d.u32()?;
    if version != ops::VERSION {
        return Err(WireError::Malformed(format!("protocol version {version}")));
    }
    let token = d.u64()?;
    d.end()?;
    let mut e = Enc::default();
    e.u64(svc.instance)
        .str(&svc.client.hostname())
        .str(&svc.ipc_name);
    Ok((token, e.buf))
}

fn serve_conn<C: Conn>(svc: &Arc<Service>, mut s: C) -> Result<(), WireError> {
    let limits = &svc.limits;
    s.set_timeout(limits.handshake_timeout)?;
    let Some((header, _)) = s.read_header()? else {
        return Ok(());
    };
    let body = wire::read_body(&mut s, header)?;
    let (token, answer) = hello(svc, &body)?;
    wire::write_frame(&mut s, &answer)?;
    svc.mappings.connected(token);
    let result = (|| loop {
        s.set_timeout(limits.idle_timeout)?;
        let Some((header, fds)) = s.read_header()? else {
            return Ok(());
        };
        s.set_timeout(limits.io_timeout)?;
        let body = wire::read_body(&mut s, header)?;
        if !C::CAN_PASS_FDS && !fds.is_empty() {
            return Err(WireError::Malformed(
                "descriptors on a TCP connection".into(),
            ));
        }
        let answer = dispatch::handle(svc, token, &body, fds)?;
        wire::write_frame(&mut s, &answer)?;
    })();
    svc.mappings.disconnected(token);
    result
}

impl Dec<'_> {
    fn take_magic(&mut self) -> Result<[u8; 8], WireError> {
        let mut m = [0u8; 8];
        for b in &mut m {
            *b = self.u8()?;
        }
        Ok(m)
    }
}

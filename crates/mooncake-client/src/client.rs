//! The client handle: start-up (transfer engine, optional segment, heartbeats),
//! identity, health, close, and registered buffers. The object operations live in
//! `put.rs`, `get.rs` and `admin.rs` as further `impl Client` blocks.

use crate::buffers::BufferRegistry;
use crate::config::{ClientConfig, ClientTuning, Health};
use crate::errors::{closed, transfer_error};
use crate::io::DataPath;
use crate::locations::{LocationCache, LocationCacheStats};
use crate::mount::{spawn_heartbeat, HeartbeatHost, Liveness, LocalSegment};
use crate::rpc::MasterRpc;
use mooncake_common::hostname::{split_host_port, with_port};
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{HeartbeatRequest, SegmentDesc};
use mooncake_segment::{SegmentMemory, ShmCache};
use mooncake_transfer::{MetricsSnapshot, TransferConfig, TransferEngine};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A connection to the pool. Cheap to clone; every method takes `&self` and may be
/// called from many tasks at once.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub client_id: String,
    pub hostname: String,
    /// The caller's master calls, in the tuning's call mode.
    pub rpc: MasterRpc,
    /// The same connections, always asynchronous: for the heartbeat task on the
    /// runtime's workers and for calls overlapped with `tokio::join!`.
    pub rpc_async: MasterRpc,
    pub tuning: ClientTuning,
    pub data: DataPath,
    pub buffers: BufferRegistry,
    pub segment: Option<LocalSegment>,
    pub liveness: Liveness,
    pub closed: AtomicBool,
    pub rotation: AtomicU64,
    /// Where lookups found objects, for speculative reads (`locations.rs`).
    pub locations: LocationCache,
    /// This process's SSD tier, once started (`tier.rs`).
    pub tier: parking_lot::Mutex<Option<Arc<mooncake_tier::DiskTier>>>,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    close_lock: tokio::sync::Mutex<()>,
}

impl HeartbeatHost for Inner {
    fn background_rpc(&self) -> &MasterRpc {
        &self.rpc_async
    }
    fn client_id(&self) -> &str {
        &self.client_id
    }
    fn segment(&self) -> Option<&LocalSegment> {
        self.segment.as_ref()
    }
    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
    async fn republish(&self) {
        if let Err(e) = self.data.engine.publish().await {
            tracing::debug!(error = %e, "could not publish the transfer descriptor again");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.get_mut().take() {
            h.abort();
        }
        // Peers must stop touching the memory before it is unmapped (field drop).
        if let Some(seg) = &self.segment {
            if let Some(mem) = seg.memory.lock().take() {
                let _ = self.data.engine.unregister_memory(mem.addr());
            }
        }
    }
}

/// The address the transfer engine listens on: the configured one
/// (`MC_TCP_BIND_ADDRESS`), else the hostname when it is an IP (or loopback for
/// `localhost`), else every interface.
fn bind_ip(host: &str, configured: Option<&str>) -> String {
    if let Some(ip) = configured {
        return ip.trim().to_string();
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        "0.0.0.0".to_string()
    }
}

/// The data ports a client without one in its `local_hostname` picks from, as the
/// reference's transfer engine does: operators open this range in their firewalls,
/// and `get_hostname()` answers a port in it.
pub const ENGINE_PORT_RANGE: std::ops::RangeInclusive<u16> = 12300..=14300;

/// Tries random free ports of [`ENGINE_PORT_RANGE`] (a port another process takes
/// between the probe and the bind costs one more try), then any free port.
async fn start_in_port_range(
    mut tc: TransferConfig,
) -> std::result::Result<Arc<TransferEngine>, mooncake_transfer::TransferError> {
    let span = u128::from(ENGINE_PORT_RANGE.end() - ENGINE_PORT_RANGE.start()) + 1;
    for _ in 0..32 {
        let p = ENGINE_PORT_RANGE.start() + (uuid::Uuid::new_v4().as_u128() % span) as u16;
        if std::net::TcpListener::bind((tc.bind_ip.as_str(), p)).is_err() {
            continue;
        }
        tc.port = p;
        match TransferEngine::start(tc.clone()).await {
            Err(mooncake_transfer::TransferError::Config(m)) if m.starts_with("cannot bind") => {}
            started => return started,
        }
    }
    tc.port = 0;
    TransferEngine::start(tc).await
}

impl Client {
    /// Starts the transfer engine, maps and mounts the global segment when
    /// `global_segment_size > 0`, and starts heartbeats. Fails with `RPC_FAIL` when the
    /// master does not answer, also for a pure client (which mounts nothing): like the
    /// reference's setup, a dead master is an error here, not at the first call.
    pub async fn connect(cfg: ClientConfig) -> Result<Client> {
        let client = Self::start(cfg).await?;
        let checked = match &client.inner.segment {
            Some(seg) => {
                seg.mount(&client.inner.rpc, &client.inner.client_id, false)
                    .await
            }
            None => client.ping_master().await,
        };
        if let Err(e) = checked {
            let _ = client.close().await;
            return Err(e);
        }
        Ok(client)
    }

    /// One heartbeat: `Ok` when the master answers at all, `RPC_FAIL` when it cannot
    /// be reached (or does not answer) within the connect timeout plus the RPC deadline.
    async fn ping_master(&self) -> Result<()> {
        let id = self.inner.client_id.clone();
        let r = self
            .inner
            .rpc
            .call("heartbeat", |mut c| async move {
                c.heartbeat(HeartbeatRequest { client_id: id }).await
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code, ErrorCode::RpcFail | ErrorCode::RpcTimeout) => {
                Err(MooncakeError::new(
                    ErrorCode::RpcFail,
                    format!("master unreachable: {}", e.message),
                ))
            }
            // Refused: no token, a wrong one, or a tenant_id that is not the token's.
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::Unauthenticated | ErrorCode::PermissionDenied
                ) =>
            {
                Err(e)
            }
            // The master answered (with an error of its own): it is there.
            Err(_) => Ok(()),
        }
    }

    /// Like [`Client::connect`] but does not wait for the mount: the heartbeat task
    /// keeps trying until the master accepts the segment (see [`Client::is_mounted`]).
    /// The store daemon uses it to come up before its master does.
    pub async fn start(cfg: ClientConfig) -> Result<Client> {
        let client = Self::prepare(cfg).await?;
        client.spawn_heartbeat();
        Ok(client)
    }

    fn spawn_heartbeat(&self) {
        let hb = spawn_heartbeat(Arc::downgrade(&self.inner));
        *self.inner.heartbeat.lock() = Some(hb);
    }

    /// Engine, segment memory and registration; no mount, no heartbeat yet.
    async fn prepare(cfg: ClientConfig) -> Result<Client> {
        let node = &cfg.node;
        let tuning = cfg.tuning;
        node.validate().map_err(|e| MooncakeError::invalid(e.0))?;
        tuning.validate().map_err(|e| MooncakeError::invalid(e.0))?;
        let rpc = MasterRpc::new(&node.master_server_address, cfg.rpc_timeout, &tuning)?;
        let rpc_async = rpc.asynchronous();
        let (host, port) = split_host_port(&node.local_hostname);
        let mut tc = TransferConfig::new(node.local_hostname.clone());
        tc.bind_ip = bind_ip(host, tuning.tcp_bind_address.as_deref());
        tc.metadata = node.metadata_server.clone();
        tc.protocol = node.protocol;
        tc.devices = node.device_name.clone();
        tc.auth = crate::data_auth::data_auth(tuning.credential.as_ref(), &rpc_async);
        tc.tls = mooncake_transfer::config::data_tls_from_env().map_err(|e| transfer_error(&e))?;
        let engine = match port {
            Some(p) => {
                tc.port = p;
                TransferEngine::start(tc).await
            }
            None => start_in_port_range(tc).await,
        }
        .map_err(|e| transfer_error(&e))?;
        let hostname = match split_host_port(engine.segment_name()) {
            (_, Some(_)) => engine.segment_name().to_string(),
            _ => {
                let ep = engine.endpoint();
                let p = split_host_port(&ep).1.unwrap_or(0);
                with_port(&node.local_hostname, p)
            }
        };
        let host_id = mooncake_segment::host_id();
        let segment = if node.global_segment_size > 0 {
            let size = usize::try_from(node.global_segment_size).map_err(|_| {
                MooncakeError::invalid("global_segment_size does not fit in memory")
            })?;
            // Kept across a restart of this process (`restart.rs`): the same identity
            // started again takes the memory back, and the master its objects.
            let identity = tuning
                .segment_identity
                .clone()
                .unwrap_or_else(|| node.local_hostname.clone());
            let mem = SegmentMemory::create_retained(
                &identity,
                size,
                tuning.shm_dir.as_deref(),
                tuning.hugepages,
            )?;
            // Safety: the mapping lives in `LocalSegment` until `close`/drop, which
            // unregister it first.
            unsafe { engine.register_memory(mem.addr(), mem.len()) }
                .map_err(|e| transfer_error(&e))?;
            let desc = mem.descriptor(
                &hostname,
                node.protocol.as_str(),
                engine.endpoint(),
                host_id.clone(),
            );
            Some(LocalSegment {
                memory: Mutex::new(Some(mem)),
                ever_mounted: AtomicBool::new(false),
                desc,
                mounted: AtomicBool::new(false),
                view_id: AtomicU64::new(0),
                grant_keys: engine.grant_keys(),
            })
        } else {
            None
        };
        if let Err(e) = engine.publish().await {
            tracing::warn!(error = %e, "could not publish the segment descriptor; peers use the master's endpoint hint");
        }
        let inner = Arc::new(Inner {
            client_id: uuid::Uuid::new_v4().to_string(),
            hostname,
            rpc,
            rpc_async,
            data: DataPath {
                engine,
                shm: ShmCache::new(host_id, tuning.shm, tuning.shm_prefault)
                    .with_dir(tuning.shm_dir.as_deref()),
            },
            buffers: BufferRegistry::default(),
            segment,
            liveness: Liveness::default(),
            closed: AtomicBool::new(false),
            rotation: AtomicU64::new(0),
            locations: LocationCache::new(tuning.location_cache),
            tier: parking_lot::Mutex::new(None),
            tuning,
            heartbeat: Mutex::new(None),
            close_lock: tokio::sync::Mutex::new(()),
        });
        Ok(Client { inner })
    }

    /// The `host:port` this client registered.
    pub fn hostname(&self) -> String {
        self.inner.hostname.clone()
    }

    /// The tuning this client was built with.
    pub fn tuning(&self) -> &ClientTuning {
        &self.inner.tuning
    }

    /// This process's identity at the master.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// Whether this client's segment is mounted (always false without one).
    pub fn is_mounted(&self) -> bool {
        !self.is_closed()
            && self
                .inner
                .segment
                .as_ref()
                .is_some_and(|s| s.mounted.load(Ordering::Acquire))
    }

    /// Counters of this process's transfer engine: bytes peers wrote into / read from
    /// our registered memory (`bytes_served_in` / `bytes_served_out`), failed requests.
    /// Same-host peers copy through the shared-memory file and are not counted.
    pub fn transfer_metrics(&self) -> MetricsSnapshot {
        self.inner.data.engine.metrics()
    }

    /// How the location cache did: speculative reads kept and thrown away, gets with
    /// nothing to read speculatively, and how many locations it holds.
    pub fn location_cache_stats(&self) -> LocationCacheStats {
        self.inner.locations.stats()
    }

    /// Heartbeats that did not reach the master since this client started.
    pub fn heartbeat_failures(&self) -> u64 {
        self.inner
            .liveness
            .heartbeat_failures
            .load(Ordering::Relaxed)
    }

    /// The descriptor of this client's segment, if it contributes one.
    pub fn segment_desc(&self) -> Option<SegmentDesc> {
        self.inner.segment.as_ref().map(|s| s.desc.clone())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    pub(crate) fn ensure_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(closed())
        } else {
            Ok(())
        }
    }

    /// 0 healthy, 1 not set up or closed, 2 master unreachable.
    pub async fn health(&self) -> Health {
        if self.is_closed() {
            return Health::NotSetUp;
        }
        match self.stats().await {
            Ok(_) => Health::Healthy,
            Err(_) => Health::MasterUnreachable,
        }
    }

    /// Idempotent: stops heartbeats, unmounts this client's segment (its objects go),
    /// stops serving and unmaps it.
    pub async fn close(&self) -> Result<()> {
        let _guard = self.inner.close_lock.lock().await;
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(h) = self.inner.heartbeat.lock().take() {
            h.abort();
        }
        let mut result = Ok(());
        if let Some(seg) = &self.inner.segment {
            if seg.ever_mounted.load(Ordering::Acquire) {
                result = seg.unmount(&self.inner.rpc, &self.inner.client_id).await;
            }
            let mem = seg.memory.lock().take();
            if let Some(mem) = mem {
                let engine = self.inner.data.engine.clone();
                // Unregistering waits for in-flight peer accesses; keep it off the runtime.
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = engine.unregister_memory(mem.addr());
                    drop(mem);
                })
                .await;
            }
        }
        self.inner.data.engine.shutdown().await;
        result
    }

    /// Allows zero-copy puts from and gets into `[addr, addr+len)`.
    ///
    /// # Safety
    /// The range stays valid until `unregister_buffer(addr)` or the client is dropped.
    pub unsafe fn register_buffer(&self, addr: usize, len: usize) -> Result<()> {
        self.ensure_open()?;
        self.inner.buffers.register(addr, len)
    }

    pub fn unregister_buffer(&self, addr: usize) -> Result<()> {
        self.inner.buffers.unregister(addr).map(|_| ())
    }
}

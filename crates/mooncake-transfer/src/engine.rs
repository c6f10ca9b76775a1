//! The engine: owns the local segment and its listener, resolves peers through the
//! metadata backend and caches them, and runs transfers through the batch driver.

use dashmap::DashMap;
use mooncake_common::config::Protocol;
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::batch::{self, Batch, BatchState};
use crate::config::TransferConfig;
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::metadata::{self, MetadataStore};
use crate::metrics::MetricsSnapshot;
use crate::nic;
use crate::segment::{new_generation, ram_key, rpc_meta_key, NicEndpoint, RpcMeta};
use crate::tcp::describe::describe_with;
use crate::tcp::pool::Peer;
use crate::TransferRequest;

/// Bytes per permit of the in-flight budget semaphore.
pub(crate) const BUDGET_UNIT: usize = 1024;

/// A transfer engine. `Send + Sync`; share it as `Arc<TransferEngine>`.
pub struct TransferEngine {
    pub(crate) cfg: TransferConfig,
    pub(crate) seg: Arc<LocalSegment>,
    pub(crate) budget: Arc<Semaphore>,
    pub(crate) budget_units: usize,
    meta: Arc<dyn MetadataStore>,
    peers: DashMap<String, Arc<Peer>>,
    local_ips: Vec<IpAddr>,
    endpoint: String,
    stop: watch::Sender<bool>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// The RDMA data path, when `protocol = rdma` found devices (feature `rdma`).
    #[cfg(feature = "rdma")]
    pub(crate) rdma: Option<Arc<dyn crate::rdma::RdmaPath>>,
}

impl TransferEngine {
    /// Binds the data listener, discovers local interfaces and connects the metadata
    /// backend. Does not publish (see [`TransferEngine::publish`]).
    pub async fn start(cfg: TransferConfig) -> Result<Arc<TransferEngine>, TransferError> {
        cfg.validate()?;
        let protocol = effective_protocol(&cfg)?;
        #[cfg(feature = "rdma")]
        if protocol == Protocol::Rdma {
            let devices = crate::rdma::probe(&cfg.devices)?;
            let verbs = Arc::new(crate::rdma::ibverbs::IbVerbs::default());
            let t = crate::rdma::transport::RdmaTransport::new(verbs, &devices, 64 << 10)?;
            return Self::start_with_rdma(cfg, Arc::new(crate::rdma::RdmaEngine::new(t))).await;
        }
        Self::start_inner(cfg, protocol).await
    }

    /// Starts an RDMA engine on a given RDMA path (tests pass one over fake verbs).
    #[cfg(feature = "rdma")]
    pub async fn start_with_rdma(
        cfg: TransferConfig,
        path: Arc<dyn crate::rdma::RdmaPath>,
    ) -> Result<Arc<TransferEngine>, TransferError> {
        cfg.validate()?;
        let mut eng = Self::start_inner(cfg, Protocol::Rdma).await?;
        let e = Arc::get_mut(&mut eng).ok_or(TransferError::Shutdown)?;
        path.set_credential(e.seg.auth.credential.clone());
        path.set_tls(e.seg.tls.clone());
        let p = path.clone();
        e.seg
            .control
            .write()
            .replace(Arc::new(move |req: &[u8]| p.accept(req)));
        e.rdma = Some(path);
        Ok(eng)
    }

    async fn start_inner(
        cfg: TransferConfig,
        protocol: Protocol,
    ) -> Result<Arc<TransferEngine>, TransferError> {
        let listener = TcpListener::bind((cfg.bind_ip.as_str(), cfg.port))
            .await
            .map_err(|e| {
                TransferError::Config(format!(
                    "cannot bind data listener {}:{}: {e}",
                    cfg.bind_ip, cfg.port
                ))
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| TransferError::io("listener address", e))?
            .port();
        let all = nic::list_interfaces()?;
        let selected = nic::select(&cfg.devices, &all);
        let local_ips: Vec<IpAddr> = selected.iter().map(|(_, ip)| *ip).collect();
        let endpoints = advertised(&cfg, port, &selected)?;
        let meta = metadata::connect(&cfg.metadata).await?;
        let name = mooncake_common::hostname::with_port(&cfg.local_hostname, port);
        let mut seg = LocalSegment::new(name, new_generation(), protocol.as_str());
        seg.auth = cfg.auth.clone();
        seg.tls = cfg.tls.clone();
        let seg = Arc::new(seg);
        *seg.endpoints.write() = endpoints;
        let endpoint = seg.endpoints.read()[0].addr.clone();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(crate::tcp::server::run_listener(
            listener,
            seg.clone(),
            cfg.tcp.socket_buffer,
            crate::tcp::server::ListenerLimits::from_tuning(&cfg.tcp),
            stop_rx,
        ));
        let budget_units = (cfg.tcp.max_inflight_bytes / BUDGET_UNIT).max(1);
        tracing::info!(segment = %seg.name, %endpoint, nics = ?selected, tls = seg.tls.is_some(), "transfer engine started");
        Ok(Arc::new(TransferEngine {
            budget: Arc::new(Semaphore::new(budget_units)),
            budget_units,
            cfg,
            seg,
            meta,
            peers: DashMap::new(),
            local_ips,
            endpoint,
            stop,
            listener: Mutex::new(Some(task)),
            #[cfg(feature = "rdma")]
            rdma: None,
        }))
    }

    /// The segment name this engine publishes (`local_hostname`, with the data port
    /// appended when it had none).
    pub fn segment_name(&self) -> &str {
        &self.seg.name
    }

    /// `ip:port` peers use to reach this engine.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// This engine's generation (changes at every start).
    pub fn generation(&self) -> u64 {
        self.seg.generation
    }

    /// The descriptor peers see right now.
    pub fn descriptor(&self) -> crate::SegmentDescriptor {
        self.seg.descriptor()
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.seg.metrics.snapshot()
    }

    /// How far peers have written through this engine's server into the registered
    /// region that starts at `addr` (the end of the furthest write, from `addr`);
    /// `None` when no region starts there. One-sided RDMA writes are not seen.
    pub fn written_end(&self, addr: usize) -> Option<usize> {
        self.seg.memory.written_end(addr)
    }

    /// Allows peers to read/write `[addr, addr+len)`. O(log n), touches no page.
    ///
    /// # Safety
    /// The memory stays valid until `unregister_memory(addr)` or the engine is dropped.
    pub unsafe fn register_memory(&self, addr: usize, len: usize) -> Result<(), TransferError> {
        self.seg.memory.register(addr, len)?;
        #[cfg(feature = "rdma")]
        if let Some(r) = &self.rdma {
            match r.register(addr as u64, len as u64) {
                Ok(keys) => self.seg.rkeys.write().push((addr as u64, keys)),
                Err(e) => {
                    let _ = self.seg.memory.unregister(addr);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Stops serving the region at `addr`; returns once no access to it is in progress.
    pub fn unregister_memory(&self, addr: usize) -> Result<(), TransferError> {
        self.seg.memory.unregister(addr)?;
        #[cfg(feature = "rdma")]
        if let Some(r) = &self.rdma {
            self.seg.rkeys.write().retain(|(a, _)| *a != addr as u64);
            r.deregister(addr as u64)?;
        }
        Ok(())
    }

    /// Publishes this engine's descriptor (`mooncake/ram/<name>`) and handshake address
    /// (`mooncake/rpc_meta/<name>`). A no-op for P2PHANDSHAKE. Call again after
    /// registering memory so looked-up descriptors list it.
    pub async fn publish(&self) -> Result<(), TransferError> {
        if self.meta.is_p2p() {
            return Ok(());
        }
        let d = self.seg.descriptor();
        self.meta.put(&ram_key(&d.name), &d.to_json()).await?;
        let ep: SocketAddr = self
            .endpoint
            .parse()
            .map_err(|_| TransferError::Config(format!("bad endpoint {}", self.endpoint)))?;
        let rpc = RpcMeta {
            ip_or_host_name: ep.ip().to_string(),
            rpc_port: ep.port(),
        };
        let rpc = serde_json::to_string(&rpc).unwrap_or_default();
        self.meta.put(&rpc_meta_key(&d.name), &rpc).await
    }

    /// Moves bytes for every request; one result per request, in order.
    ///
    /// # Safety
    /// Each request's local range is valid (readable for Write, writable for Read) until
    /// this future completes or is dropped; after a drop no byte of it is touched.
    pub async unsafe fn transfer(
        &self,
        reqs: &[TransferRequest],
    ) -> Vec<Result<(), TransferError>> {
        let state = BatchState::new(reqs.len());
        let plan = batch::plan(self, reqs, &state);
        let mut guard = plan.guard();
        batch::drive(self, reqs, plan, &state).await;
        guard.disarm();
        state.results()
    }

    /// Sends a request on a lane (`tcp::lane`) and returns it for the caller to
    /// finish on this thread: only when this thread entered
    /// [`crate::tcp::lane::CallerMayBlock`], the request is valid and no longer than
    /// one slice (`tcp.slice_size`) to a peer reached over plaintext TCP, and
    /// the lane could be opened and the request sent. `None`: use [`Self::transfer`].
    ///
    /// # Safety
    /// For a Write, the local range is readable for this call; for a Read, it stays
    /// writable and unaliased until the returned [`crate::tcp::lane::LaneOp`] is
    /// finished or dropped.
    pub async unsafe fn lane_start(
        &self,
        req: &TransferRequest,
    ) -> Option<crate::tcp::lane::LaneOp> {
        use crate::tcp::lane::{CallerMayBlock, LaneOp};
        if !CallerMayBlock::here()
            || req.length > self.cfg.tcp.slice_size
            || self.seg.tls.is_some()
            || req.target == self.segment_name()
            || batch::validate(req).is_err()
        {
            return None;
        }
        let peer = self
            .peer(&req.target, req.target_endpoint.as_deref())
            .await
            .ok()?;
        #[cfg(feature = "rdma")]
        if self.rdma.is_some() && peer.desc.protocol == "rdma" {
            return None;
        }
        let lane = match peer.lanes.take() {
            Some(l) => l,
            None => {
                let (local_ip, remote) = peer.slot_path(peer.pick(None));
                crate::tcp::conn::open_lane(
                    local_ip,
                    remote,
                    &peer.desc.name,
                    peer.desc.generation,
                    &self.cfg.tcp,
                    &self.seg,
                )
                .await
                .ok()?
            }
        };
        // SAFETY: forwarded from the caller.
        unsafe {
            LaneOp::send(
                lane,
                peer.lanes.clone(),
                self.seg.clone(),
                &peer.desc.name,
                req.opcode,
                req.local_addr,
                req.length,
                req.remote_addr,
                req.grant.as_ref(),
                self.cfg.tcp.crc,
            )
        }
        .ok()
    }

    /// Submits a batch and returns at once; poll [`Batch::status`] or await
    /// [`Batch::wait`]. Dropping the batch cancels what has not completed.
    ///
    /// # Safety
    /// Each request's local range stays valid until the batch completes or is dropped.
    pub unsafe fn submit(self: &Arc<Self>, reqs: Vec<TransferRequest>) -> Batch {
        batch::submit(self.clone(), reqs)
    }

    /// Installs the answerer of Control frames on this engine's listener (the RDMA
    /// transport's queue-pair handshake uses it).
    pub fn set_control_handler(&self, handler: crate::local::ControlHandler) {
        *self.seg.control.write() = Some(handler);
    }

    /// Serves reads of `source`'s range (an SSD tier) on this engine's listener and to
    /// this process's own transfers; `None` stops serving them.
    pub fn set_read_source(&self, source: Option<Arc<dyn crate::ReadSource>>) {
        *self.seg.source.write() = source;
    }

    /// The secrets this engine's listener checks tenants' grants with
    /// (`tcp::grant`): the owner of a mounted segment sets its segment's secret from
    /// the master's mount answer.
    pub fn grant_keys(&self) -> Arc<crate::tcp::grant::GrantKeys> {
        self.seg.grants.clone()
    }

    /// The cached peer for `target`, resolving it on first use.
    pub(crate) async fn peer(
        &self,
        target: &str,
        hint: Option<&str>,
    ) -> Result<Arc<Peer>, TransferError> {
        if let Some(p) = self.peers.get(target) {
            return Ok(p.clone());
        }
        let desc = self.lookup(target, hint).await?;
        let peer = Arc::new(Peer::new(
            desc,
            &self.local_ips,
            self.cfg.tcp.conns_per_path,
        )?);
        Ok(self.peers.entry(target.to_string()).or_insert(peer).clone())
    }

    /// Drops a cached peer (after a generation mismatch) so the next use re-resolves.
    pub(crate) fn forget_peer(&self, target: &str, stale: &Arc<Peer>) {
        self.peers.remove_if(target, |_, p| Arc::ptr_eq(p, stale));
    }

    /// Cached peer, for tests that break paths on purpose.
    pub fn debug_peer(&self, target: &str) -> Option<Arc<Peer>> {
        self.peers.get(target).map(|p| p.clone())
    }

    async fn lookup(
        &self,
        target: &str,
        hint: Option<&str>,
    ) -> Result<crate::SegmentDescriptor, TransferError> {
        let timeout = self.cfg.tcp.connect_timeout;
        if !self.meta.is_p2p() {
            match self.meta.get(&ram_key(target)).await {
                Ok(Some(json)) => {
                    return crate::SegmentDescriptor::from_json(&json)
                        .map_err(TransferError::Metadata)
                }
                Ok(None) if hint.is_none() => {
                    return Err(TransferError::SegmentNotFound(
                        target.into(),
                        "not in the metadata server".into(),
                    ))
                }
                Err(e) if hint.is_none() => return Err(e),
                _ => {}
            }
        }
        describe_with(
            hint.unwrap_or(target),
            timeout,
            self.seg.auth.credential.as_ref(),
            self.seg.tls.as_ref(),
        )
        .await
    }

    /// Stops the listener, withdraws published keys and closes connections.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.listener.lock().take();
        if let Some(t) = task {
            let _ = t.await;
        }
        if !self.meta.is_p2p() {
            let _ = self.meta.delete(&ram_key(&self.seg.name)).await;
            let _ = self.meta.delete(&rpc_meta_key(&self.seg.name)).await;
        }
        self.peers.clear();
    }
}

impl Drop for TransferEngine {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.listener.lock().take() {
            t.abort();
        }
    }
}

fn effective_protocol(cfg: &TransferConfig) -> Result<Protocol, TransferError> {
    if cfg.protocol == Protocol::Tcp {
        return Ok(Protocol::Tcp);
    }
    match crate::rdma_probe(&cfg.devices) {
        Ok(()) => Ok(Protocol::Rdma),
        Err(e) if cfg.rdma_fallback_to_tcp => {
            tracing::warn!(error = %e, "RDMA unavailable; falling back to TCP as configured");
            Ok(Protocol::Tcp)
        }
        Err(e) => Err(e),
    }
}

fn advertised(
    cfg: &TransferConfig,
    port: u16,
    nics: &[(String, IpAddr)],
) -> Result<Vec<NicEndpoint>, TransferError> {
    if !cfg.advertise.is_empty() {
        return Ok(cfg
            .advertise
            .iter()
            .map(|a| NicEndpoint {
                nic: a.clone(),
                addr: mooncake_common::hostname::with_port(a, port),
            })
            .collect());
    }
    let ip: IpAddr = cfg
        .bind_ip
        .parse()
        .map_err(|_| TransferError::Config(format!("bad bind_ip {}", cfg.bind_ip)))?;
    if !ip.is_unspecified() {
        return Ok(vec![NicEndpoint {
            nic: cfg.bind_ip.clone(),
            addr: SocketAddr::new(ip, port).to_string(),
        }]);
    }
    let mut eps: Vec<NicEndpoint> = nics
        .iter()
        .map(|(n, ip)| NicEndpoint {
            nic: n.clone(),
            addr: SocketAddr::new(*ip, port).to_string(),
        })
        .collect();
    if eps.is_empty() {
        eps.push(NicEndpoint {
            nic: "lo".into(),
            addr: format!("127.0.0.1:{port}"),
        });
    }
    Ok(eps)
}

//! What an HA master shares between the election, the gRPC fence and the admin port:
//! the fence, the current term's master (a fresh `Master` per term, so a re-elected
//! process never serves an index that went stale while another master led), and the
//! last known leader address.

use super::fence::Fence;
use crate::config::MasterConfig;
use crate::http::admin::RoleInfo;
use crate::master::Master;
use crate::report;
use crate::service::MasterService;
use crate::WorkerHandles;
use mooncake_proto::master_server::MasterServer;
use parking_lot::RwLock;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// One leadership term: its own master, workers and log line.
pub struct Term {
    pub number: u64,
    pub master: Arc<Master>,
    pub server: MasterServer<MasterService>,
    _workers: WorkerHandles,
    reporter: Option<JoinHandle<()>>,
}

impl Drop for Term {
    fn drop(&mut self) {
        if let Some(r) = &self.reporter {
            r.abort();
        }
    }
}

/// Builds the gRPC service for `master` with the limits `serve_grpc` uses.
pub fn grpc_service(master: Arc<Master>) -> MasterServer<MasterService> {
    MasterServer::new(MasterService::new(master))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

pub struct HaState {
    pub fence: Fence,
    cfg: MasterConfig,
    /// `rpc_address:rpc_port` this process advertises when it leads.
    pub advertised: String,
    term: RwLock<Option<Arc<Term>>>,
    /// Answers the admin port while no term runs (a standby's empty view).
    idle: Arc<Master>,
    leader: RwLock<String>,
    /// The lease of the current term (0: none); revoked on a graceful stop.
    pub lease: AtomicI64,
}

impl HaState {
    pub fn new(cfg: MasterConfig, advertised: String) -> Arc<Self> {
        let idle = Master::new(cfg.clone());
        Arc::new(Self {
            fence: Fence::new(),
            cfg,
            advertised,
            term: RwLock::new(None),
            idle,
            leader: RwLock::new(String::new()),
            lease: AtomicI64::new(0),
        })
    }

    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    /// Installs a fresh master for term `number` (call before the fence opens).
    pub fn install(&self, number: u64) {
        let master = Master::new(self.cfg.clone());
        let workers = master.spawn_workers();
        let reporter = self.cfg.enable_metric_reporting.then(|| {
            let m = master.clone();
            tokio::spawn(report::run(
                m,
                report::REPORT_INTERVAL,
                std::future::pending(),
            ))
        });
        tracing::info!(
            "HA: term {number} begins with an empty index, view_id={}",
            master.view_id()
        );
        *self.term.write() = Some(Arc::new(Term {
            number,
            server: grpc_service(master.clone()),
            master,
            _workers: workers,
            reporter,
        }));
    }

    /// Ends the current term (the fence must already be closed).
    pub fn retire(&self) {
        if let Some(t) = self.term.write().take() {
            tracing::warn!("HA: term {} ended; this master stops serving", t.number);
        }
    }

    /// The term allowed to serve right now, if any.
    pub fn serving(&self) -> Option<Arc<Term>> {
        let t = self.term.read().clone()?;
        self.fence.holds(t.number).then_some(t)
    }

    /// The master the admin port shows: the current term's, or an empty one.
    pub fn master(&self) -> Arc<Master> {
        match &*self.term.read() {
            Some(t) => t.master.clone(),
            None => self.idle.clone(),
        }
    }

    pub fn set_leader(&self, addr: &str) {
        let mut l = self.leader.write();
        if *l != addr {
            *l = addr.to_string();
        }
    }

    pub fn role(&self) -> RoleInfo {
        if self.serving().is_some() {
            RoleInfo::leader(self.advertised.clone())
        } else {
            RoleInfo {
                role: "standby".into(),
                leader: self.leader.read().clone(),
            }
        }
    }
}

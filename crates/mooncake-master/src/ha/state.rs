//! What an HA master shares between the election, the gRPC fence, the admin port and
//! the follower task: the fence, the current term's master, the last known leader
//! address, and the standby's shadow of the leader's state.
//!
//! A term's master is built from the shadow when this process followed the leader
//! until it won (zero-loss takeover, `replication::rebuild`); otherwise (first start,
//! or no usable shadow) it is a fresh `Master` with an empty index and a new view.

use super::fence::Fence;
use super::replication::leader::{FollowServer, ReplicationService};
use super::replication::{rebuild, shadow, StandbyShadow};
use crate::config::MasterConfig;
use crate::http::admin::RoleInfo;
use crate::master::Master;
use crate::report;
use crate::WorkerHandles;
use parking_lot::RwLock;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// One leadership term: its own master, workers and log line.
pub struct Term {
    pub number: u64,
    pub master: Arc<Master>,
    /// `Follow` for standbys (streams this term's replication log).
    pub replication: FollowServer,
    /// This term's drain jobs and copy/move tasks. Not replicated: a job does not
    /// outlive its term (the moves it made are in the index, which is).
    pub drains: Arc<crate::drain::Drains>,
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

pub struct HaState {
    pub fence: Arc<Fence>,
    cfg: MasterConfig,
    /// `rpc_address:rpc_port` this process advertises when it leads.
    pub advertised: String,
    term: RwLock<Option<Arc<Term>>>,
    /// Answers the admin port while no term runs (a standby's empty view).
    idle: Arc<Master>,
    leader: RwLock<String>,
    /// The lease of the current term (0: none); revoked on a graceful stop.
    pub lease: AtomicI64,
    /// The standby's copy of the leader's state, for the next takeover.
    pub shadow: StandbyShadow,
}

impl HaState {
    pub fn new(cfg: MasterConfig, advertised: String) -> Arc<Self> {
        let idle = Master::new(cfg.clone());
        Arc::new(Self {
            fence: Arc::new(Fence::new()),
            cfg,
            advertised,
            term: RwLock::new(None),
            idle,
            leader: RwLock::new(String::new()),
            lease: AtomicI64::new(0),
            shadow: StandbyShadow::default(),
        })
    }

    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    /// Installs the master of term `number` (call before the fence opens): rebuilt
    /// from the shadow when there is a usable one, else fresh.
    pub fn install(&self, number: u64) {
        let usable = shadow::usable_after_disconnect(self.cfg.ha_lease_ttl);
        let master = match self.shadow.take_for_takeover(usable) {
            Some(shadow) => {
                let t0 = std::time::Instant::now();
                let (m, r) = rebuild::master_from(self.cfg.clone(), shadow);
                tracing::info!(
                    "HA: term {number} continues the previous leader's view_id={} from the replicated state: {} segments, {} objects ({} writes in flight), {} replicas and {} objects dropped, rebuilt in {:?}",
                    m.view_id(), r.segments, r.objects, r.in_flight, r.dropped_replicas, r.dropped_objects, t0.elapsed()
                );
                m
            }
            None => {
                let m = Master::new(self.cfg.clone());
                tracing::info!(
                    "HA: term {number} begins with an empty index (no replicated state), view_id={}",
                    m.view_id()
                );
                m
            }
        };
        let workers = master.spawn_workers();
        let reporter = self.cfg.enable_metric_reporting.then(|| {
            let m = master.clone();
            tokio::spawn(report::run(
                m,
                report::REPORT_INTERVAL,
                std::future::pending(),
            ))
        });
        let fence = self.fence.clone();
        let replication =
            ReplicationService::new(master.clone(), Arc::new(move || fence.holds(number))).server();
        let drains = crate::drain::Drains::new(master.clone());
        *self.term.write() = Some(Arc::new(Term {
            number,
            replication,
            drains,
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

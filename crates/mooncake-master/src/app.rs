//! Wiring of a whole master process: binds every listener first (so a taken port fails
//! fast, naming its flag), then starts the gRPC service, the admin port, the metadata
//! server (when enabled), the background workers and the periodic log line, and stops
//! them all together on SIGTERM/SIGINT.
//!
//! [`start`] is what `main` and the end-to-end tests use; [`run`] adds the signals.

use crate::config::MasterConfig;
use crate::ha::election::EtcdElection;
use crate::ha::{self, HaState};
use crate::http::{self, admin, metadata};
use crate::master::Master;
use crate::metrics::MasterMetrics;
use crate::report;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long in-flight requests get to finish after a stop signal.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the master could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr} (--{flag}): {source}")]
    Bind {
        flag: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0} stopped unexpectedly: {1}")]
    Server(&'static str, String),
    #[error("{0}")]
    Persist(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Tls(String),
}

/// A started master: its bound addresses, and the handles to stop it.
pub struct Running {
    pub master: Arc<Master>,
    /// The token file every port checks (`--auth_token_file`), if any.
    pub auth: Option<Arc<crate::auth::MasterAuth>>,
    pub rpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metadata_addr: Option<SocketAddr>,
    /// The election state under `--enable_ha`.
    pub ha: Option<Arc<HaState>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<(&'static str, Result<(), String>)>,
    _workers: Option<crate::WorkerHandles>,
}

/// `host:port`, with brackets for an IPv6 literal.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn bind(flag: &'static str, host: &str, port: u16) -> Result<TcpListener, AppError> {
    let addr = join_host_port(host, port);
    TcpListener::bind(&addr)
        .await
        .map_err(|source| AppError::Bind { flag, addr, source })
}

fn local(l: &TcpListener, flag: &'static str) -> Result<SocketAddr, AppError> {
    l.local_addr().map_err(|source| AppError::Bind {
        flag,
        addr: "?".into(),
        source,
    })
}

/// Binds every port of `cfg` and starts serving. Ports may be 0 (tests).
pub async fn start(mut cfg: MasterConfig) -> Result<Running, AppError> {
    // TLS files are read before any port is bound: a bad one stops the start.
    let tls = cfg.tls_acceptor().map_err(AppError::Tls)?;
    cfg.tuning.tls = tls.clone();
    // The token file is read before any port is bound: a bad one stops the start.
    let auth = crate::auth::MasterAuth::open(&cfg).map_err(AppError::Auth)?;
    if let Some(a) = &auth {
        // The rpc port checks proofs against the same tokens (`service::auth`).
        let a = a.clone();
        cfg.tuning.auth = crate::service::auth::RpcAuth::new(move || a.tokens());
    }
    let rpc = bind("rpc_port", &cfg.rpc_address, cfg.rpc_port).await?;
    let admin_l = bind("metrics_port", &cfg.metrics_host, cfg.metrics_port).await?;
    let meta_l = if cfg.enable_http_metadata_server {
        let l = bind(
            "http_metadata_server_port",
            &cfg.http_metadata_server_host,
            cfg.http_metadata_server_port,
        )
        .await?;
        Some(l)
    } else {
        None
    };
    let rpc_addr = local(&rpc, "rpc_port")?;
    let admin_addr = local(&admin_l, "metrics_port")?;
    let metadata_addr = match &meta_l {
        Some(l) => Some(local(l, "http_metadata_server_port")?),
        None => None,
    };

    let reporting = cfg.enable_metric_reporting;
    let advertised = join_host_port(&cfg.rpc_address, rpc_addr.port());
    let ha = cfg
        .enable_ha
        .then(|| HaState::new(cfg.clone(), advertised.clone()));
    if cfg.enable_snapshot && ha.is_some() {
        tracing::warn!(
            "--enable_snapshot is ignored with --enable_ha: the standbys hold the index"
        );
    }
    let persist_dir = (cfg.enable_snapshot && ha.is_none())
        .then(|| std::path::PathBuf::from(&cfg.snapshot_backup_dir));
    let snapshot_interval = cfg.snapshot_interval;
    let master = match &ha {
        Some(h) => h.master(),
        None if persist_dir.is_some() => crate::persist::open(cfg).map_err(AppError::Persist)?,
        None => Master::new(cfg),
    };
    // Tenant quotas kept beside the on-disk index.
    match crate::quota::load(&master) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "{n} tenant quota(s) restored from {}",
            crate::quota::FILE_NAME
        ),
        Err(e) => return Err(AppError::Persist(e)),
    }
    // Caught up with a first snapshot before anything is served.
    let disk_log = match &persist_dir {
        Some(dir) => {
            Some(crate::persist::DiskLog::start(master.clone(), dir).map_err(AppError::Persist)?)
        }
        None => None,
    };
    let metrics = Arc::new(MasterMetrics::new(prometheus::Registry::new())?);
    // Under HA every term starts its own workers and log line.
    let workers = ha.is_none().then(|| master.spawn_workers());
    let (stop, stopped) = watch::channel(false);
    let signal = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // Drain jobs (under HA each term has its own: `ha::state::Term`).
    let drains = ha
        .is_none()
        .then(|| crate::drain::Drains::new(master.clone()));
    let mut tasks = JoinSet::new();
    if let Some(d) = disk_log {
        let sig = signal();
        tasks.spawn(async move {
            d.run(snapshot_interval, sig).await;
            ("on-disk index writer", Ok(()))
        });
    }
    let sig = signal();
    // Two paths on purpose: a plain master's calls pass the `Gate` of `Arc<Master>`
    // (nothing to check); running it as an HA master that always wins
    // (`LocalElection`) would put the fence and the term lookup on every call.
    match &ha {
        Some(h) => {
            let h2 = h.clone();
            tasks.spawn(async move {
                let r = ha::service::serve(h2, rpc, sig).await;
                ("rpc service", r.map_err(|e| e.to_string()))
            });
            let c = h.config();
            let etcd = || EtcdElection::new(&c.etcd_endpoints, &c.cluster_id, &h.advertised);
            let (h2, election) = (h.clone(), etcd());
            let sig = signal();
            tasks.spawn(async move {
                ha::election::run(h2, election, sig).await;
                ("HA election", Ok(()))
            });
            // While another master leads: follow its replication log (zero-loss
            // takeover, docs/ha.md).
            let h2 = h.clone();
            let sig = signal();
            tasks.spawn(async move {
                ha::replication::follower::run(h2, sig).await;
                ("HA follower", Ok(()))
            });
            // While it holds the replicated state: say so in etcd, so that a master
            // without it does not win the next election (ha/ready.rs). Its own
            // connection: a slow keep-alive of one must not delay the other.
            let (h2, election) = (h.clone(), etcd());
            let sig = signal();
            tasks.spawn(async move {
                ha::ready::run(h2, election, sig).await;
                ("HA readiness", Ok(()))
            });
        }
        None => {
            let (m, tuning) = (master.clone(), master.config().tuning.clone());
            // The owners of drained segments ask for their copies on the same port.
            let mut extras: Vec<_> = drains
                .iter()
                .cloned()
                .map(crate::drain::service::extra)
                .collect();
            // And the SSD tiers' owners ask for their tasks there too.
            extras.push(crate::tier::service::extra(master.clone()));
            tasks.spawn(async move {
                let r = crate::service::serve(m, extras, rpc, tuning, sig).await;
                ("rpc service", r.map_err(|e| e.to_string()))
            });
        }
    }
    let admin_state = match &ha {
        Some(h) => {
            let (h1, h2) = (h.clone(), h.clone());
            admin::AdminState::with_sources(
                Arc::new(move || h1.master()),
                metrics,
                Arc::new(move || h2.role()),
            )
        }
        None => admin::AdminState::new(master.clone(), metrics, advertised.clone()),
    };
    let mut app = admin::router(admin_state.clone()).merge(http::quota::router(admin_state));
    let drain_source: Option<http::drain::DrainSource> = match (&drains, &ha) {
        (Some(d), _) => {
            let d = d.clone();
            Some(Arc::new(move || Some(d.clone())))
        }
        (None, Some(h)) => {
            let h = h.clone();
            Some(Arc::new(move || h.serving().map(|t| t.drains.clone())))
        }
        (None, None) => None,
    };
    if let Some(source) = drain_source {
        app = app.merge(http::drain::router(source));
    }
    let app = admin::protect(app, auth.as_ref());
    if let Some(a) = &auth {
        let (a, sig) = (a.clone(), signal());
        tasks.spawn(async move {
            a.run_reloader(sig).await;
            ("token file reloader", Ok(()))
        });
    }
    let sig = signal();
    let admin_tls = tls.clone();
    tasks.spawn(async move {
        let r = http::serve(admin_l, app, sig, admin_tls).await;
        ("admin HTTP server", r.map_err(|e| e.to_string()))
    });
    if let Some(l) = meta_l {
        let app = metadata::router(metadata::MetadataStore::new());
        let app = mooncake_http::auth::protect_if(
            app,
            auth.as_ref()
                .map(|a| a.bearer("metadata server", metadata::OPEN_PATHS)),
        );
        let sig = signal();
        let meta_tls = tls.clone();
        tasks.spawn(async move {
            let r = http::serve(l, app, sig, meta_tls).await;
            ("metadata HTTP server", r.map_err(|e| e.to_string()))
        });
    }
    if reporting && ha.is_none() {
        let (m, sig) = (master.clone(), signal());
        tasks.spawn(async move {
            report::run(m, report::REPORT_INTERVAL, sig).await;
            ("log reporter", Ok(()))
        });
    }
    if let Some(h) = &ha {
        let c = h.config();
        tracing::info!(
            "HA enabled: campaigning for {} at {} as {advertised} (lease {:?})",
            ha::view_key(&c.cluster_id),
            c.etcd_endpoints.join(";"),
            c.ha_lease_ttl,
        );
        if c.rpc_address == "0.0.0.0" || c.rpc_address == "::" {
            tracing::warn!("HA: --rpc_address {} is advertised to clients as the leader address; set it to an address they can reach", c.rpc_address);
        }
    }

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "mooncake_master started: rpc={rpc_addr} (advertised {advertised}{}), admin={scheme}://{admin_addr}/metrics, metadata={}, view_id={}",
        if tls.is_some() { ", TLS" } else { "" },
        metadata_addr.map_or_else(|| "disabled".to_string(), |a| format!("{scheme}://{a}/metadata")),
        master.view_id(),
    );
    Ok(Running {
        master,
        auth,
        rpc_addr,
        admin_addr,
        metadata_addr,
        ha,
        stop,
        tasks,
        _workers: workers,
    })
}

impl Running {
    /// Serves until `shutdown` resolves or a server fails, then stops everything.
    pub async fn serve_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let failed = tokio::select! {
            _ = shutdown => None,
            Some(done) = self.tasks.join_next() => Some(match done {
                Ok((name, Ok(()))) => AppError::Server(name, "exited".into()),
                Ok((name, Err(e))) => AppError::Server(name, e),
                Err(e) => AppError::Server("a server task", e.to_string()),
            }),
        };
        self.stop().await;
        failed.map_or(Ok(()), Err)
    }

    /// Stops accepting, lets in-flight requests finish (bounded), stops the workers.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let drain = async {
            while let Some(done) = self.tasks.join_next().await {
                if let Ok((name, Err(e))) = done {
                    tracing::warn!("{name} ended with an error while stopping: {e}");
                }
            }
        };
        if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
            tracing::warn!("servers did not stop within {STOP_GRACE:?}; aborting them");
            self.tasks.abort_all();
        }
        tracing::info!("mooncake_master stopped");
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a signal sent right after the
/// start-up line (which tests and operators wait for) must not hit the default
/// action and kill the process with a failure status.
pub fn stop_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => tracing::info!("SIGINT received; stopping"),
                _ = wait(term) => tracing::info!("SIGTERM received; stopping"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("SIGINT received; stopping");
        }
    }
}

/// Starts the master and serves until SIGTERM/SIGINT.
pub async fn run(cfg: MasterConfig) -> Result<(), AppError> {
    let signals = stop_signal();
    start(cfg).await?.serve_until(signals).await
}

//! The master's one token file (`--auth_token_file`), shared by every port: the rpc
//! port's challenge-response, the admin port and the metadata server's bearer checks.
//!
//! [`MasterAuth::open`] reads the file at start (a bad file stops the master, naming
//! it); [`MasterAuth::run_reloader`] re-reads it when it changes, so tokens rotate
//! without a restart (list old and new together for the overlap, then drop the old).
//! A file that turns unreadable or empty keeps the last good set and is logged.

use crate::config::MasterConfig;
use mooncake_common::auth::{TokenFile, TokenSet, CLUSTER_TENANT};
use mooncake_http::auth::{BearerAuth, Lookup};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often the token file is checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The accepted tokens, each naming a tenant.
pub struct MasterAuth {
    file: TokenFile,
}

impl MasterAuth {
    /// The token file of `cfg`, or None when authentication is off.
    pub fn open(cfg: &MasterConfig) -> Result<Option<Arc<MasterAuth>>, String> {
        let path = cfg.auth_token_file.trim();
        if path.is_empty() {
            return Ok(None);
        }
        let file =
            TokenFile::open(Path::new(path)).map_err(|e| format!("--auth_token_file: {e}"))?;
        let set = file.current();
        tracing::info!(
            "authentication on: {} token(s) for tenant(s) {} from {path}",
            set.len(),
            set.tenants().join(", ")
        );
        Ok(Some(Arc::new(MasterAuth { file })))
    }

    /// The tokens in force.
    pub fn tokens(&self) -> Arc<TokenSet> {
        self.file.current()
    }

    /// The tenant of an `Authorization` header value, if its token is accepted.
    pub fn tenant_of_bearer(&self, header: &str) -> Option<Arc<str>> {
        self.file.current().tenant_of_bearer(header)
    }

    /// A bearer check for an HTTP port named `surface`, leaving `open` paths open.
    pub fn bearer(
        self: &Arc<Self>,
        surface: &'static str,
        open: &[&'static str],
    ) -> Arc<BearerAuth> {
        let me = self.clone();
        let lookup: Lookup = Arc::new(move |h: &str| me.tenant_of_bearer(h));
        BearerAuth::new(surface, open, lookup)
    }

    /// Re-reads the file whenever it changes, until `stop` resolves.
    pub async fn run_reloader(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The last error logged, so that a file broken for an hour is logged once.
        let mut last_err: Option<String> = None;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            match self.file.reload_if_changed() {
                Ok(true) => {
                    last_err = None;
                    let set = self.file.current();
                    tracing::info!(
                        "token file {} re-read: {} token(s) for tenant(s) {}",
                        self.file.path().display(),
                        set.len(),
                        set.tenants().join(", ")
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    let e = e.to_string();
                    if last_err.as_deref() != Some(e.as_str()) {
                        tracing::error!("{e}; the tokens read before stay in force");
                        last_err = Some(e);
                    }
                }
            }
        }
    }
}

/// Whether `tenant` is the infrastructure's (reaches every tenant, sets quotas).
pub fn is_cluster(tenant: &str) -> bool {
    tenant == CLUSTER_TENANT
}

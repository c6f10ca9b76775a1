//! Finding the master leader in HA mode (`MOONCAKE_MASTER=etcd://h1:2379;h2:2379`,
//! CONTRACT §7): the leader's `rpc_address:rpc_port` is the value of
//! `mooncake-store/<cluster_id>/master_view` (`ClientTuning::cluster_id`:
//! `MOONCAKE_CLUSTER_ID`, default `mooncake_cluster`). A background task reads the
//! key, watches it, re-reads it every second anyway and whenever a call fails, and
//! swaps the gRPC channel when the leader changes. Calls never wait on etcd (except the very first lookup, at most
//! [`FIRST_LOOKUP`]): with no leader known they fail at once with `RPC_FAIL`.

use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::master_client::MasterClient;
use parking_lot::RwLock;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tonic::transport::Channel;

pub use crate::config::{CLUSTER_ID_ENV, DEFAULT_CLUSTER_ID};

/// How long the first call waits for the first lookup of the leader.
pub const FIRST_LOOKUP: Duration = Duration::from_secs(2);
/// Re-read period when no watch event arrives.
const RECHECK: Duration = Duration::from_secs(1);
/// Bound on each etcd request.
const ETCD_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after an etcd error.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The etcd endpoints of an `etcd://` master address (`;` or `,` separated), or None
/// when `addr` is not one. An `etcd://` address without endpoints is an error.
pub fn parse_etcd_address(addr: &str) -> Option<Result<Vec<String>>> {
    let rest = addr.trim().strip_prefix("etcd://")?;
    let eps: Vec<String> = rest
        .split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('/').to_string())
        .collect();
    if eps.is_empty() {
        return Some(Err(MooncakeError::invalid(format!(
            "master address {addr:?}: etcd:// needs at least one endpoint (etcd://h1:2379;h2:2379)"
        ))));
    }
    Some(Ok(eps))
}

/// The etcd key the masters campaign for.
pub fn view_key(cluster_id: &str) -> String {
    format!("mooncake-store/{cluster_id}/master_view")
}

type MakeClient = Box<dyn Fn(&str) -> Result<MasterClient<Channel>> + Send + Sync>;

/// The leader as last seen, shared by every call.
pub(crate) struct Leader {
    current: RwLock<Option<(String, MasterClient<Channel>)>>,
    /// Becomes true after the first lookup finished (found or not).
    looked_up: watch::Sender<bool>,
    nudge: Notify,
    etcd: String,
    key: String,
}

impl Leader {
    /// Starts following the leader key; needs a tokio runtime.
    pub fn start(
        endpoints: Vec<String>,
        cluster_id: &str,
        make: MakeClient,
    ) -> Result<Arc<Leader>> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            MooncakeError::invalid("an etcd:// master address needs a tokio runtime")
        })?;
        let leader = Arc::new(Leader {
            current: RwLock::new(None),
            looked_up: watch::channel(false).0,
            nudge: Notify::new(),
            etcd: endpoints.join(";"),
            key: view_key(cluster_id),
        });
        rt.spawn(follow(Arc::downgrade(&leader), endpoints, make));
        Ok(leader)
    }

    /// The current leader's address and client; RPC_FAIL while none is known.
    pub async fn current(&self) -> Result<(String, MasterClient<Channel>)> {
        if !*self.looked_up.borrow() {
            let mut rx = self.looked_up.subscribe();
            let _ = tokio::time::timeout(FIRST_LOOKUP, rx.wait_for(|v| *v)).await;
        }
        self.current.read().clone().ok_or_else(|| {
            MooncakeError::new(
                ErrorCode::RpcFail,
                format!(
                    "no master leader registered at {} in etcd {}",
                    self.key, self.etcd
                ),
            )
        })
    }

    /// A call failed: look the leader up again now.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    fn set(&self, addr: Option<&str>, make: &MakeClient) {
        let mut cur = self.current.write();
        let same = match (&*cur, addr) {
            (Some((a, _)), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        *cur = match addr.map(|a| (a, make(a))) {
            Some((a, Ok(c))) => {
                tracing::info!("master leader is now {a} (from etcd {})", self.key);
                Some((a.to_string(), c))
            }
            Some((a, Err(e))) => {
                tracing::warn!("etcd names master leader {a:?}, which is unusable: {e}");
                None
            }
            None => {
                tracing::warn!("no master leader registered at {}", self.key);
                None
            }
        };
    }
}

async fn bounded<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(ETCD_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {ETCD_TIMEOUT:?}")),
    }
}

/// The background task: ends when the last `Arc<Leader>` is dropped. It talks to one
/// etcd member at a time and moves to the next on any error: a client given every
/// endpoint would balance over them and keep sending some requests to a dead member.
async fn follow(weak: Weak<Leader>, endpoints: Vec<String>, make: MakeClient) {
    let mut logged = String::new();
    let mut at = 0usize;
    loop {
        let Some(key) = weak.upgrade().map(|l| l.key.clone()) else {
            return;
        };
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(ETCD_TIMEOUT)
            .with_timeout(ETCD_TIMEOUT);
        let member = std::slice::from_ref(&endpoints[at % endpoints.len()]);
        let r = match bounded(etcd_client::Client::connect(member, Some(opts))).await {
            Ok(mut c) => follow_with(&weak, &mut c, &key, &make).await,
            Err(e) => Err(e),
        };
        let Some(l) = weak.upgrade() else { return };
        at = (at + 1) % endpoints.len();
        if at == 0 {
            // Every member was tried: the first call stops waiting (and fails).
            let _ = l.looked_up.send_replace(true);
        }
        if let Err(e) = r {
            if e != logged {
                tracing::warn!("etcd {}: {e}; retrying", l.etcd);
                logged = e;
            }
        }
        drop(l);
        // Straight to the next member; pause once every member has failed in turn.
        let pause = if at == 0 {
            RETRY_AFTER
        } else {
            Duration::from_millis(10)
        };
        tokio::time::sleep(pause).await;
    }
}

/// Reads the key, then waits for a watch event, a nudge or the re-check period.
async fn follow_with(
    weak: &Weak<Leader>,
    c: &mut etcd_client::Client,
    key: &str,
    make: &MakeClient,
) -> std::result::Result<(), String> {
    let mut watch = bounded(c.watch(key, None)).await?;
    loop {
        let got = bounded(c.get(key, None)).await?;
        let value = got
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).trim().to_string());
        let Some(l) = weak.upgrade() else {
            return Ok(());
        };
        l.set(value.as_deref(), make);
        let _ = l.looked_up.send_replace(true);
        tokio::select! {
            m = watch.message() => {
                if !matches!(m, Ok(Some(_))) {
                    return Err("the watch on the leader key ended".into());
                }
            }
            _ = l.nudge.notified() => {}
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_rejects_empty() {
        assert!(parse_etcd_address("127.0.0.1:50051").is_none());
        let eps = parse_etcd_address("etcd://h1:2379;h2:2379")
            .unwrap()
            .unwrap();
        assert_eq!(eps, ["h1:2379", "h2:2379"]);
        let eps = parse_etcd_address(" etcd://h1:2379, h2:2379/ ")
            .unwrap()
            .unwrap();
        assert_eq!(eps, ["h1:2379", "h2:2379"]);
        assert!(parse_etcd_address("etcd://").unwrap().is_err());
        assert!(parse_etcd_address("etcd://;,").unwrap().is_err());
    }

    #[test]
    fn key_matches_the_masters() {
        assert_eq!(view_key("c1"), "mooncake-store/c1/master_view");
    }

    #[tokio::test]
    async fn no_etcd_fails_fast_with_rpc_fail() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let make: MakeClient = Box::new(|_| Err(MooncakeError::invalid("unused")));
        let l = Leader::start(vec![format!("127.0.0.1:{port}")], "x", make).unwrap();
        let e = l.current().await.unwrap_err();
        assert_eq!(e.code, ErrorCode::RpcFail, "{e}");
        // After the first lookup, calls do not wait.
        let t = std::time::Instant::now();
        assert!(l.current().await.is_err());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }
}

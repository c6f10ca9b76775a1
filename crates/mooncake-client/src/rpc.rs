//! The control-plane connection to the master: lazily dialled framed connections
//! (`framed::FramedChannel`), or with `ClientTuning::master_protocol` gRPC one HTTP/2
//! connection (`transport::DirectChannel`), with a tight connect timeout and a deadline
//! on every call. A broken
//! connection is re-dialled by the next call, so the client reconnects by itself once
//! the master is back; meanwhile every call fails fast with `RPC_FAIL` (or
//! `RPC_TIMEOUT` when a connected master does not answer in time).

use crate::calls::MasterCalls;
use crate::config::{ClientTuning, CONNECT_TIMEOUT};
use crate::discovery::{parse_etcd_address, Leader};
use crate::errors::status_error;
use crate::framed::CallMode;
use crate::transport::{DirectConfig, MasterChannel};
use bytes::Bytes;
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::master_client::MasterClient;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// What every call gets: typed calls on one master connection.
pub(crate) type Rpc = MasterCalls;

/// One master connection.
type Conn = MasterCalls;

/// Where calls go: one fixed address, or the leader etcd names (HA).
#[derive(Clone)]
enum Target {
    Fixed(Conn),
    /// The leader, and a connection to the last leader address seen (re-made when
    /// etcd names another one).
    Leader(Arc<Leader>, Arc<parking_lot::Mutex<Option<(String, Conn)>>>),
}

/// Calls to the master. Cheap to clone; clones share connections.
#[derive(Clone)]
pub(crate) struct MasterRpc {
    target: Target,
    timeout: Duration,
    addr: Arc<str>,
    /// How this handle's framed calls do their I/O.
    mode: CallMode,
    /// The tuning connections to a (new) leader are made with.
    tuning: Arc<ClientTuning>,
}

fn check_addr(addr: &str) -> Result<()> {
    let (host, port) = mooncake_common::hostname::split_host_port(addr);
    if host.is_empty() || port.is_none() {
        return Err(MooncakeError::invalid(format!(
            "master address {addr:?} is not host:port"
        )));
    }
    Ok(())
}

/// A lazily connected client for `host:port`, in [`CallMode::Async`].
fn client_for(addr: &str, timeout: Duration, tuning: &ClientTuning) -> Result<Conn> {
    check_addr(addr)?;
    let ch = MasterChannel::new(
        addr,
        DirectConfig {
            connect_timeout: CONNECT_TIMEOUT,
            timeout: Some(timeout),
            keep_alive: Some(Duration::from_secs(5)),
            auth: tuning.client_auth(),
        },
        tuning.master_protocol,
    )
    .with_spin(tuning.master_spin);
    MasterCalls::new(ch).map_err(MooncakeError::invalid)
}

/// What `discovery` builds per leader address. Only its address is used: calls go
/// through [`client_for`]'s connection (a lazy `Channel` never dials).
fn channel_for(addr: &str) -> Result<MasterClient<Channel>> {
    check_addr(addr)?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| MooncakeError::invalid(format!("master address {addr:?}: {e}")))?;
    Ok(MasterClient::new(endpoint.connect_lazy()))
}

impl MasterRpc {
    /// Prepares the channel; nothing is dialled until the first call. An
    /// `etcd://h1:2379;h2:2379` address follows the HA leader of `tuning.cluster_id`
    /// (`discovery`). Calls are made in `tuning.master_call_mode`.
    pub fn new(addr: &str, timeout: Duration, tuning: &ClientTuning) -> Result<Self> {
        let addr = addr.trim();
        // Unusable TLS settings stop the client here, naming the file.
        mooncake_tls::config::client().map_err(|e| MooncakeError::invalid(e.to_string()))?;
        let target = match parse_etcd_address(addr) {
            Some(endpoints) => Target::Leader(
                Leader::start(endpoints?, &tuning.cluster_id, Box::new(channel_for))?,
                Arc::default(),
            ),
            None => Target::Fixed(client_for(addr, timeout, tuning)?),
        };
        Ok(Self {
            target,
            timeout,
            addr: addr.into(),
            mode: tuning.master_call_mode,
            tuning: Arc::new(tuning.clone()),
        })
    }

    /// The master address this handle was made for (`host:port`, or an `etcd://`
    /// address under HA).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The master address calls go to now: the fixed one, or the HA leader etcd names
    /// (`RPC_FAIL` while none is known).
    pub async fn current_addr(&self) -> Result<String> {
        match &self.target {
            Target::Fixed(_) => Ok(self.addr.to_string()),
            Target::Leader(l, _) => l.current().await.map(|(a, _)| a),
        }
    }

    /// A call made elsewhere to [`Self::current_addr`] failed: under HA the leader is
    /// looked up again at once.
    pub fn nudge(&self) {
        if let Target::Leader(l, _) = &self.target {
            l.nudge();
        }
    }

    /// This handle with its calls made in [`CallMode::Async`], sharing its
    /// connections: for tasks on runtime workers and for futures that overlap calls.
    pub fn asynchronous(&self) -> Self {
        Self {
            mode: CallMode::Async,
            ..self.clone()
        }
    }

    /// Runs one call with the deadline; `what` names it in errors.
    pub async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: FnOnce(Rpc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_conn(what, f).await
    }

    /// Sends `body`, a request message encoded beforehand, to the unary method `path`
    /// (e.g. `/mooncake.v1.Master/BatchExist`) and decodes the answer as `U`.
    pub async fn call_encoded<U>(&self, what: &str, path: &'static str, body: Bytes) -> Result<U>
    where
        U: prost::Message + Default + Send + 'static,
    {
        self.call_conn(what, |mut c| async move {
            c.unary_encoded(path, body).await.map(tonic::Response::new)
        })
        .await
    }

    async fn call_conn<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let (client, leader) = match &self.target {
            Target::Fixed(c) => (c.clone().with_mode(self.mode), None),
            Target::Leader(l, conn) => {
                let (a, _) = l
                    .current()
                    .await
                    .map_err(|e| MooncakeError::new(e.code, format!("{what}: {}", e.message)))?;
                (self.leader_client(conn, &a)?.with_mode(self.mode), Some(a))
            }
        };
        let addr = leader.as_deref().unwrap_or(&*self.addr);
        let r = self.call_on(what, addr, client, f).await;
        if let (Err(e), Target::Leader(l, _)) = (&r, &self.target) {
            if matches!(
                e.code,
                ErrorCode::RpcFail | ErrorCode::RpcTimeout | ErrorCode::UnavailableInCurrentMode
            ) {
                l.nudge();
            }
        }
        r
    }

    /// The connection to leader `addr`, made on first use.
    fn leader_client(
        &self,
        conn: &parking_lot::Mutex<Option<(String, Conn)>>,
        addr: &str,
    ) -> Result<Conn> {
        let mut cur = conn.lock();
        match &*cur {
            Some((a, c)) if a == addr => Ok(c.clone()),
            _ => {
                let c = client_for(addr, self.timeout, &self.tuning)?;
                *cur = Some((addr.to_string(), c.clone()));
                Ok(c)
            }
        }
    }

    async fn call_on<T, F, Fut>(&self, what: &str, addr: &str, client: Conn, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout + CONNECT_TIMEOUT, f(client)).await {
            Err(_) => Err(MooncakeError::new(
                ErrorCode::RpcTimeout,
                format!(
                    "{what}: master {addr} did not answer within {:?}",
                    self.timeout
                ),
            )),
            Ok(Err(status)) => {
                let mut e = status_error(&status, what);
                if e.code == ErrorCode::RpcFail {
                    e.message = format!("{} (master {addr})", e.message);
                }
                Err(e)
            }
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_addresses() {
        let t = ClientTuning::default();
        assert!(MasterRpc::new("etcd://", Duration::from_secs(1), &t).is_err());
        assert!(MasterRpc::new("nohost", Duration::from_secs(1), &t).is_err());
    }

    #[tokio::test]
    async fn unreachable_master_fails_fast_with_rpc_fail() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let rpc = MasterRpc::new(&addr, Duration::from_secs(2), &ClientTuning::default()).unwrap();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let e = rpc
                .call("get_stats", |mut c| async move {
                    c.get_stats(mooncake_proto::GetStatsRequest {}).await
                })
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::RpcFail, "{e}");
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        }
    }
}

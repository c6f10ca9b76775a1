//! The channel a segment owner's background loop (its SSD tier's work) calls the
//! master's owner services on. With a fixed master address that is one channel for
//! the process's life. With an `etcd://` address (HA) it is a channel to the leader
//! etcd names now, learnt through the client's own leader follower (`discovery`), and
//! made again when the leader changes: the loop's next call reaches the master that
//! took over, which learns the owner's state from that call.

use crate::auth::{master_service_channel, ClientAuth};
use crate::client::Client;
use crate::rpc::MasterRpc;
use crate::transport::DirectChannel;
use std::time::Duration;
use tonic::codegen::http::Uri;

pub(crate) struct OwnerLink {
    rpc: MasterRpc,
    /// An `etcd://` address: calls follow the leader.
    ha: bool,
    auth: Option<ClientAuth>,
    connect_timeout: Duration,
    timeout: Duration,
    /// The master the last channel reaches, and that channel.
    current: Option<(String, DirectChannel, Uri)>,
    /// Whether a channel was handed out yet.
    handed_out: bool,
}

/// A channel for the next call, and whether it reaches another master than the
/// previous one did (the first channel does).
pub(crate) struct Link {
    pub channel: DirectChannel,
    pub origin: Uri,
    pub moved: bool,
    /// The master the channel reaches.
    pub addr: String,
}

/// How often a call in flight under HA looks whether etcd names another leader.
const LEADER_CHECK: Duration = Duration::from_millis(100);

impl OwnerLink {
    /// Calls go where `rpc`'s calls go. A fixed address that cannot be used is an
    /// error now, naming it; an HA leader is looked up at each call.
    pub fn new(
        rpc: MasterRpc,
        auth: Option<ClientAuth>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let ha = crate::discovery::parse_etcd_address(rpc.addr()).is_some();
        let mut link = OwnerLink {
            rpc,
            ha,
            auth,
            connect_timeout,
            timeout,
            current: None,
            handed_out: false,
        };
        if !ha {
            let addr = link.rpc.addr().to_string();
            link.make(&addr)?;
        }
        Ok(link)
    }

    fn make(&mut self, addr: &str) -> Result<(), String> {
        let (ch, origin) =
            master_service_channel(addr, self.connect_timeout, self.timeout, self.auth.clone())?;
        self.current = Some((addr.to_string(), ch, origin));
        Ok(())
    }

    /// The channel to the master to call now (under HA, the leader etcd names).
    pub async fn link(&mut self) -> Result<Link, String> {
        let addr = self.rpc.current_addr().await.map_err(|e| e.message)?;
        let other = !matches!(&self.current, Some((a, _, _)) if *a == addr);
        if other {
            self.make(&addr)?;
        }
        let first = !std::mem::replace(&mut self.handed_out, true);
        let Some((_, channel, origin)) = self.current.as_ref() else {
            return Err(format!("no channel to the master at {addr}"));
        };
        Ok(Link {
            channel: channel.clone(),
            origin: origin.clone(),
            moved: other || first,
            addr,
        })
    }

    /// `call`'s answer, or `None` when etcd names another leader than `addr` first
    /// ([`Self::moved_from`]): the call is then given up.
    pub async fn answer<T>(
        &self,
        addr: &str,
        call: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            r = call => Some(r),
            _ = self.moved_from(addr) => None,
        }
    }

    /// Sleeps `d`, less when etcd names another leader than `addr` meanwhile.
    pub async fn pause(&self, addr: &str, d: Duration) {
        let _ = self.answer(addr, tokio::time::sleep(d)).await;
    }

    /// Resolves once calls should go to another master than `addr`: under HA, when
    /// etcd names another leader. A call in flight at a leader that stopped (a hung
    /// host, a partition) answers nothing and closes nothing, so the loop races its
    /// call against this and gives the call up at once instead of waiting for its
    /// timeout. Never resolves with a fixed address.
    pub async fn moved_from(&self, addr: &str) {
        if !self.ha {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(LEADER_CHECK).await;
            if matches!(self.rpc.current_addr().await, Ok(a) if a != addr) {
                return;
            }
        }
    }

    /// A call on the last channel failed: under HA, look the leader up again now.
    pub fn failed(&self) {
        self.rpc.nudge();
    }
}

impl Client {
    /// The link an owner's loop calls the master at `master_addr` on: this client's
    /// own connection when that is its master (so under HA the same leader follower),
    /// a new one otherwise.
    pub(crate) fn owner_link(&self, master_addr: &str) -> Result<OwnerLink, String> {
        let rpc = if master_addr.trim() == self.inner.rpc.addr() {
            self.inner.rpc.clone()
        } else {
            MasterRpc::new(master_addr, Duration::from_secs(30), &self.inner.tuning)
                .map_err(|e| e.message)?
        };
        OwnerLink::new(
            rpc,
            self.inner.tuning.client_auth(),
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
    }
}

//! The engine's view of the RDMA transport: an object-safe [`RdmaPath`] so the engine
//! holds `Arc<dyn RdmaPath>` whether the verbs are libibverbs or the test fake. Peers
//! are connected on first use through the Control frame of their TCP listener.

use futures::future::BoxFuture;
use mooncake_common::auth::Credential;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::transport::{ConnectRequest, ConnectResponse, RdmaPeer, RdmaTransport};
use super::verbs::Verbs;
use crate::errors::TransferError;
use crate::Opcode;

/// What the engine needs from an RDMA transport.
pub trait RdmaPath: Send + Sync {
    /// Registers a region on every NIC; returns one rkey per NIC.
    fn register(&self, addr: u64, len: u64) -> Result<Vec<u32>, TransferError>;
    fn deregister(&self, addr: u64) -> Result<(), TransferError>;
    /// The token proved to peers' listeners before a queue-pair handshake.
    fn set_credential(&self, credential: Option<Credential>);
    /// TLS for the queue-pair exchange on a data port with `MOONCAKE_TRANSFER_TLS=1`
    /// (the RDMA transfers themselves are not encrypted).
    fn set_tls(&self, tls: Option<crate::tcp::tls::DataTls>);
    /// Whether `[addr, addr+len)` is registered locally (RDMA needs both ends registered).
    fn covers_local(&self, addr: u64, len: u64) -> bool;
    /// Answers a peer's queue-pair handshake (JSON in, JSON out).
    fn accept(&self, req: &[u8]) -> Result<Vec<u8>, String>;
    /// Moves bytes to/from `target`, connecting through `endpoint` on first use.
    #[allow(clippy::too_many_arguments)]
    fn transfer<'a>(
        &'a self,
        target: &'a str,
        endpoint: &'a str,
        remote_nics: usize,
        op: Opcode,
        local: u64,
        remote: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<(), TransferError>>;
}

/// [`RdmaPath`] over an [`RdmaTransport`] with a per-target peer cache.
pub struct RdmaEngine<V: Verbs> {
    transport: RdmaTransport<V>,
    peers: tokio::sync::Mutex<HashMap<String, Arc<RdmaPeer>>>,
    /// Proved to a peer's listener before its queue-pair handshake (`tcp::auth`):
    /// the handshake hands out keys to registered memory.
    credential: parking_lot::Mutex<Option<Credential>>,
    tls: parking_lot::Mutex<Option<crate::tcp::tls::DataTls>>,
}

impl<V: Verbs> RdmaEngine<V> {
    pub fn new(transport: RdmaTransport<V>) -> Self {
        Self {
            transport,
            peers: tokio::sync::Mutex::default(),
            credential: parking_lot::Mutex::new(None),
            tls: parking_lot::Mutex::new(None),
        }
    }

    async fn peer(
        &self,
        target: &str,
        endpoint: &str,
        remote_nics: usize,
    ) -> Result<Arc<RdmaPeer>, TransferError> {
        let mut peers = self.peers.lock().await;
        if let Some(p) = peers.get(target) {
            return Ok(p.clone());
        }
        let ep = endpoint.to_string();
        let cred = self.credential.lock().clone();
        let tls = self.tls.lock().clone();
        let peer = self
            .transport
            .connect(target, remote_nics, |req| async move {
                let body =
                    serde_json::to_vec(&req).map_err(|e| TransferError::Rdma(e.to_string()))?;
                let resp = crate::tcp::describe::control_with(
                    &ep,
                    &body,
                    Duration::from_secs(5),
                    cred.as_ref(),
                    tls.as_ref(),
                )
                .await?;
                serde_json::from_slice::<ConnectResponse>(&resp)
                    .map_err(|e| TransferError::Rdma(format!("bad handshake answer: {e}")))
            })
            .await?;
        let peer = Arc::new(peer);
        peers.insert(target.to_string(), peer.clone());
        Ok(peer)
    }
}

impl<V: Verbs> RdmaPath for RdmaEngine<V> {
    fn register(&self, addr: u64, len: u64) -> Result<Vec<u32>, TransferError> {
        Ok(self
            .transport
            .register(addr, len)?
            .into_iter()
            .map(|k| k.rkey)
            .collect())
    }

    fn deregister(&self, addr: u64) -> Result<(), TransferError> {
        self.transport.deregister(addr)
    }

    fn set_tls(&self, tls: Option<crate::tcp::tls::DataTls>) {
        *self.tls.lock() = tls;
    }

    fn set_credential(&self, credential: Option<Credential>) {
        *self.credential.lock() = credential;
    }

    fn covers_local(&self, addr: u64, len: u64) -> bool {
        self.transport
            .buffers()
            .iter()
            .any(|b| addr >= b.addr && addr + len <= b.addr + b.length)
    }

    fn accept(&self, req: &[u8]) -> Result<Vec<u8>, String> {
        let req: ConnectRequest =
            serde_json::from_slice(req).map_err(|e| format!("bad handshake request: {e}"))?;
        let resp = self.transport.accept(&req).map_err(|e| e.to_string())?;
        serde_json::to_vec(&resp).map_err(|e| e.to_string())
    }

    fn transfer<'a>(
        &'a self,
        target: &'a str,
        endpoint: &'a str,
        remote_nics: usize,
        op: Opcode,
        local: u64,
        remote: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let peer = self.peer(target, endpoint, remote_nics).await?;
            self.transport.transfer(&peer, op, local, remote, len).await
        })
    }
}

//! Authentication on this process's transfer engine data port (`mooncake_transfer::tcp::auth`).
//!
//! With a credential (`MOONCAKE_AUTH_TOKEN_FILE` / `MOONCAKE_AUTH_TOKEN`), the engine
//! proves it to every peer's listener and its own listener serves only peers that
//! prove a token too. This process does not hold the master's token file, so it asks
//! the master whose token a peer's proof proves (`VerifyProof`): one call per new
//! data connection, none per transfer (connections are pooled and stay proved).
//! Without a credential nothing changes: no challenge, no proof, no master call.

use crate::rpc::MasterRpc;
use bytes::Bytes;
use mooncake_common::auth::{Challenge, CLUSTER_TENANT};
use mooncake_proto::{VerifyProofRequest, VerifyProofResponse};
use mooncake_transfer::tcp::auth::{DataAuth, ProofVerifier, Verdict, PURPOSE};
use prost::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Checks a peer's proof by asking the master.
struct MasterVerifier {
    rpc: MasterRpc,
    /// The master answered that it has no token file: said once in the log.
    warned_disabled: Arc<AtomicBool>,
}

impl ProofVerifier for MasterVerifier {
    fn verify(
        &self,
        challenge: Challenge,
        nonce: Vec<u8>,
        proof: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'static>> {
        let rpc = self.rpc.clone();
        let warned = self.warned_disabled.clone();
        Box::pin(async move {
            let req = VerifyProofRequest {
                purpose: PURPOSE.to_string(),
                challenge: challenge.0.to_vec(),
                peer_nonce: nonce,
                proof,
            };
            let body = Bytes::from(req.encode_to_vec());
            let r: VerifyProofResponse = rpc
                .call_encoded(
                    "verify a data-port proof",
                    "/mooncake.v1.Master/VerifyProof",
                    body,
                )
                .await
                .map_err(|e| format!("cannot ask the master: {}", e.message))?;
            if r.disabled {
                // Nothing is authenticated on a master without a token file, so the
                // data port gains nothing by refusing what its master cannot check.
                if !warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("a token is configured here (MOONCAKE_AUTH_TOKEN_FILE/MOONCAKE_AUTH_TOKEN) but the master runs without --auth_token_file: the data port accepts every peer that answers its challenge");
                }
                return Ok(CLUSTER_TENANT.into());
            }
            if r.code == 0 {
                Ok(r.tenant.into())
            } else {
                Err("the proof matches no token the master accepts".to_string())
            }
        })
    }
}

/// The data port's authentication for a process that proves `credential` (none:
/// off) and talks to the master through `rpc`.
pub(crate) fn data_auth(
    credential: Option<&mooncake_common::auth::Credential>,
    rpc: &MasterRpc,
) -> DataAuth {
    match credential {
        None => DataAuth::default(),
        Some(c) => DataAuth::new(
            c.clone(),
            Arc::new(MasterVerifier {
                rpc: rpc.clone(),
                warned_disabled: Arc::default(),
            }),
        ),
    }
}

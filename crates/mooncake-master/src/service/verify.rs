//! `VerifyProof`: whose token a challenge-response proof proves, for the servers that
//! do not hold the token file (a store's or client's transfer engine verifying a peer
//! on its data port). One call per new data connection; the answer names the tenant.
//!
//! The accepted tokens come from `--auth_token_file`, read when first needed and again
//! whenever the file changes (rotation without a restart; a file that turns bad keeps
//! the last good set). Without the flag the answer says `disabled`: nothing is
//! authenticated on such a cluster, and the asking server says so in its log.

use crate::master::Master;
use mooncake_common::auth::{Challenge, TokenFile, CHALLENGE_LEN, PROOF_LEN};
use mooncake_common::ErrorCode;
use mooncake_proto::{VerifyProofRequest, VerifyProofResponse};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tonic::Status;

/// The longest purpose and nonce a peer may send (what the master hashes).
const MAX_PURPOSE: usize = 64;
const MAX_NONCE: usize = 64;

/// Opened token files by path: one per master in a process (tests run several).
fn token_file(path: &Path) -> Result<Arc<TokenFile>, String> {
    static FILES: OnceLock<Mutex<HashMap<PathBuf, Arc<TokenFile>>>> = OnceLock::new();
    let mut files = FILES.get_or_init(Default::default).lock();
    if let Some(f) = files.get(path) {
        if let Err(e) = f.reload_if_changed() {
            tracing::warn!("{e}; the tokens read before stay in force");
        }
        return Ok(f.clone());
    }
    let f = Arc::new(TokenFile::open(path).map_err(|e| e.0)?);
    files.insert(path.to_path_buf(), f.clone());
    Ok(f)
}

fn answer(code: ErrorCode, tenant: &str) -> VerifyProofResponse {
    VerifyProofResponse {
        code: code as i32,
        tenant: tenant.to_string(),
        disabled: false,
    }
}

pub(crate) fn verify_proof(
    m: &Master,
    r: VerifyProofRequest,
) -> Result<VerifyProofResponse, Status> {
    let path = m.config().auth_token_file.trim();
    if path.is_empty() {
        return Ok(VerifyProofResponse {
            disabled: true,
            ..answer(ErrorCode::Unauthenticated, "")
        });
    }
    if r.purpose.len() > MAX_PURPOSE
        || r.peer_nonce.len() > MAX_NONCE
        || r.challenge.len() != CHALLENGE_LEN
        || r.proof.len() != PROOF_LEN
    {
        return Ok(answer(ErrorCode::Unauthenticated, ""));
    }
    let file = match token_file(Path::new(path)) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("VerifyProof: {e}");
            return Ok(answer(ErrorCode::Unauthenticated, ""));
        }
    };
    let mut c = [0u8; CHALLENGE_LEN];
    c.copy_from_slice(&r.challenge);
    match file
        .current()
        .verify(&r.purpose, &Challenge(c), &r.peer_nonce, &r.proof)
    {
        Some(tenant) => Ok(answer(ErrorCode::Ok, &tenant)),
        None => Ok(answer(ErrorCode::Unauthenticated, "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MasterConfig;
    use mooncake_common::auth::Credential;

    fn request(token: &str, purpose: &str) -> VerifyProofRequest {
        let c = Challenge::random();
        let proof = Credential::from_token(token, "t")
            .unwrap()
            .prove(purpose, &c, b"nonce");
        VerifyProofRequest {
            purpose: purpose.into(),
            challenge: c.0.to_vec(),
            peer_nonce: b"nonce".to_vec(),
            proof: proof.to_vec(),
        }
    }

    #[test]
    fn proofs_name_their_tenant_and_others_are_refused() {
        let dir = std::env::temp_dir().join(format!("mc-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tokens");
        std::fs::write(&p, "alpha:tok-a\ntok-root\n").unwrap();
        let m = Master::new(MasterConfig {
            auth_token_file: p.display().to_string(),
            ..Default::default()
        });
        let ok = verify_proof(&m, request("tok-a", "data")).unwrap();
        assert_eq!((ok.code, ok.tenant.as_str()), (0, "alpha"));
        let root = verify_proof(&m, request("tok-root", "data")).unwrap();
        assert_eq!(root.tenant, "cluster");
        let bad = verify_proof(&m, request("tok-b", "data")).unwrap();
        assert_eq!(bad.code, ErrorCode::Unauthenticated as i32);
        let mut short = request("tok-a", "data");
        short.proof.truncate(16);
        assert_eq!(
            verify_proof(&m, short).unwrap().code,
            ErrorCode::Unauthenticated as i32
        );
        let off = Master::new(MasterConfig::default());
        assert!(
            verify_proof(&off, request("tok-a", "data"))
                .unwrap()
                .disabled
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

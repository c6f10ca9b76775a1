//! Authentication at the start of a framed connection (a master started with
//! `--auth_token_file`). The token never crosses the wire: the master sends a fresh
//! challenge, the peer answers with an HMAC proof over it and a nonce of its own
//! (`mooncake_common::auth`), and the master answers which tenant the proof names.
//!
//! ```text
//! peer   -> master  AUTH_MAGIC                                   8 bytes
//! master -> peer    version (1), required (0|1), challenge       2 + 32 bytes
//! peer   -> master  peer nonce, proof, tenant length, tenant     32 + 32 + 1 + n bytes
//! master -> peer    code (i32 LE), text length (u16 LE), text    6 + n bytes
//! ```
//!
//! `code` 0: the connection is bound to the tenant named by `text`, and request frames
//! follow as after [`MAGIC`](crate::frame::MAGIC). Otherwise the contract code
//! (-1800 UNAUTHENTICATED, -1801 PERMISSION_DENIED: the declared tenant is not the
//! token's) and a message, and the master closes the connection. `required` 0 means the
//! master has no token file: the proof is not checked and the tenant is `cluster`.
//!
//! A peer without a token starts with `MAGIC` instead; a master with a token file
//! answers its first request with UNAUTHENTICATED and closes.

use crate::frame::FrameError;
use mooncake_common::auth::{CHALLENGE_LEN, MAX_TENANT_LEN, PROOF_LEN};

/// What an authenticating framed connection starts with (the plain protocol's magic
/// with version byte 2).
pub const AUTH_MAGIC: [u8; 8] = *b"MCRPC\x00\x00\x02";

/// The purpose string of proofs on the rpc port (both protocols).
pub const PURPOSE: &str = "rpc";

/// Length of a peer's nonce.
pub const NONCE_LEN: usize = 32;

const VERSION: u8 = 1;

/// The master's first message.
pub const HELLO_LEN: usize = 2 + CHALLENGE_LEN;

/// The fixed part of the peer's answer (the declared tenant follows).
pub const PROOF_HEAD_LEN: usize = NONCE_LEN + PROOF_LEN + 1;

/// The fixed part of the master's verdict (its text follows).
pub const VERDICT_HEAD_LEN: usize = 6;

/// The master's hello: whether a proof is required, and the challenge.
pub fn encode_hello(required: bool, challenge: &[u8; CHALLENGE_LEN]) -> [u8; HELLO_LEN] {
    let mut b = [0u8; HELLO_LEN];
    b[0] = VERSION;
    b[1] = u8::from(required);
    b[2..].copy_from_slice(challenge);
    b
}

/// `(required, challenge)` of a hello.
pub fn decode_hello(b: &[u8; HELLO_LEN]) -> Result<(bool, [u8; CHALLENGE_LEN]), FrameError> {
    if b[0] != VERSION {
        return Err(FrameError::Malformed("unknown authentication version"));
    }
    let required = match b[1] {
        0 => false,
        1 => true,
        _ => return Err(FrameError::Malformed("bad authentication hello")),
    };
    let mut c = [0u8; CHALLENGE_LEN];
    c.copy_from_slice(&b[2..]);
    Ok((required, c))
}

/// The peer's answer: its nonce, its proof and the tenant it declares ("" for none).
pub fn encode_proof(
    nonce: &[u8; NONCE_LEN],
    proof: &[u8; PROOF_LEN],
    tenant: &str,
) -> Result<Vec<u8>, FrameError> {
    if tenant.len() > MAX_TENANT_LEN {
        return Err(FrameError::Malformed("tenant name too long"));
    }
    let mut b = Vec::with_capacity(PROOF_HEAD_LEN + tenant.len());
    b.extend_from_slice(nonce);
    b.extend_from_slice(proof);
    b.push(tenant.len() as u8);
    b.extend_from_slice(tenant.as_bytes());
    Ok(b)
}

/// The fixed part of a peer's answer: `(nonce, proof, declared tenant's length)`.
pub fn decode_proof_head(
    b: &[u8; PROOF_HEAD_LEN],
) -> Result<([u8; NONCE_LEN], [u8; PROOF_LEN], usize), FrameError> {
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&b[..NONCE_LEN]);
    let mut proof = [0u8; PROOF_LEN];
    proof.copy_from_slice(&b[NONCE_LEN..NONCE_LEN + PROOF_LEN]);
    let n = b[NONCE_LEN + PROOF_LEN] as usize;
    if n > MAX_TENANT_LEN {
        return Err(FrameError::Malformed("tenant name too long"));
    }
    Ok((nonce, proof, n))
}

/// The master's verdict: 0 and the tenant, or a contract code and why.
pub fn encode_verdict(code: i32, text: &str) -> Vec<u8> {
    let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    let mut b = Vec::with_capacity(VERDICT_HEAD_LEN + text.len());
    b.extend_from_slice(&code.to_le_bytes());
    b.extend_from_slice(&(text.len() as u16).to_le_bytes());
    b.extend_from_slice(text);
    b
}

/// `(code, text length)` of a verdict's fixed part.
pub fn decode_verdict_head(b: &[u8; VERDICT_HEAD_LEN]) -> (i32, usize) {
    let code = i32::from_le_bytes(b[..4].try_into().expect("four bytes"));
    let n = u16::from_le_bytes(b[4..].try_into().expect("two bytes")) as usize;
    (code, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let c = [7u8; CHALLENGE_LEN];
        assert_eq!(decode_hello(&encode_hello(true, &c)).unwrap(), (true, c));
        assert_eq!(decode_hello(&encode_hello(false, &c)).unwrap(), (false, c));
        let mut bad = encode_hello(true, &c);
        bad[1] = 9;
        assert!(decode_hello(&bad).is_err());
        let p = encode_proof(&[1; NONCE_LEN], &[2; PROOF_LEN], "alpha").unwrap();
        let head: [u8; PROOF_HEAD_LEN] = p[..PROOF_HEAD_LEN].try_into().unwrap();
        assert_eq!(
            decode_proof_head(&head).unwrap(),
            ([1; NONCE_LEN], [2; PROOF_LEN], 5)
        );
        assert_eq!(&p[PROOF_HEAD_LEN..], b"alpha");
        assert!(encode_proof(&[0; NONCE_LEN], &[0; PROOF_LEN], &"t".repeat(200)).is_err());
        let v = encode_verdict(-1800, "no");
        let head: [u8; VERDICT_HEAD_LEN] = v[..VERDICT_HEAD_LEN].try_into().unwrap();
        assert_eq!(decode_verdict_head(&head), (-1800, 2));
        assert_eq!(AUTH_MAGIC[..7], crate::frame::MAGIC[..7]);
    }
}

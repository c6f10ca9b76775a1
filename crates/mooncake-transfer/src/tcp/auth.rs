//! Authentication on the data port: a peer proves a token before the listener serves
//! it anything (no read, no write, no descriptor, no RDMA handshake).
//!
//! The exchange, when the listener has a [`ProofVerifier`] (a token is configured):
//! ```text
//! listener, at accept:  Challenge (32 random bytes)
//! peer, at connect:     its first request (Hello, Describe or Control), as without auth
//! peer, on Challenge:   Proof = nonce (16 bytes) || HMAC(token, "data", challenge, nonce)
//! listener:             verifies (the store asks the master, which holds the tokens),
//!                       then answers the first request; refused: the answer carries
//!                       status UNAUTHENTICATED and the connection closes
//! ```
//! The challenge travels while the peer sends its first request, so authentication
//! costs one round trip to the listener (plus the verifier's own, one master call) per
//! new connection and nothing per transfer: connections are pooled, and the tenant
//! proved stays with the connection. Without a verifier the listener sends nothing
//! first and the exchange is exactly the unauthenticated one; a peer that holds a
//! credential simply never sees a challenge.
//!
//! A connection that has not proved itself holds at most one early request of
//! [`MAX_EARLY_LEN`] bytes and is closed after [`crate::TcpTuning::auth_timeout`]; it
//! gives way first when the listener is at its connection cap (`tcp::admit`). Reads
//! and writes before the proof are refused and close the connection.

use mooncake_common::auth::{
    random_bytes, Challenge, Credential, TokenSet, CHALLENGE_LEN, PROOF_LEN,
};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{status, Header, Op};
use super::io::{drain, flush, read_control, read_header, write_frame};
use crate::errors::TransferError;

/// The purpose proofs on the data port are made for (a proof made for another
/// surface, say the master's rpc port, is worth nothing here).
pub const PURPOSE: &str = "data";
/// Length of the peer's own nonce.
pub const NONCE_LEN: usize = 16;
/// Payload of a Proof frame: nonce then proof.
pub const PROOF_FRAME_LEN: u64 = (NONCE_LEN + PROOF_LEN) as u64;
/// Largest request a peer may send before its proof (a Hello's name, an RDMA
/// handshake's JSON); the listener holds it until the proof is checked.
pub const MAX_EARLY_LEN: u64 = 16 << 10;

/// What a verifier answers: the tenant the proof names, or why it was refused.
pub type Verdict = Result<Arc<str>, String>;

/// Checks a peer's proof. A store or client asks its master (`VerifyProof`), which
/// holds the token file; tests and benchmarks may check against tokens they hold.
pub trait ProofVerifier: Send + Sync {
    fn verify(
        &self,
        challenge: Challenge,
        nonce: Vec<u8>,
        proof: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'static>>;
}

/// Verifies against tokens held in this process.
pub struct LocalVerifier(pub TokenSet);

impl ProofVerifier for LocalVerifier {
    fn verify(
        &self,
        challenge: Challenge,
        nonce: Vec<u8>,
        proof: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'static>> {
        let r = self
            .0
            .verify(PURPOSE, &challenge, &nonce, &proof)
            .ok_or_else(|| "the proof matches no accepted token".to_string());
        Box::pin(async move { r })
    }
}

/// The data port's authentication settings of an engine: the credential it proves to
/// peers, and the verifier its listener checks peers with. Both unset: no
/// authentication (the default).
#[derive(Clone, Default)]
pub struct DataAuth {
    pub credential: Option<Credential>,
    pub verifier: Option<Arc<dyn ProofVerifier>>,
}

impl fmt::Debug for DataAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataAuth")
            .field("credential", &self.credential)
            .field("verifier", &self.verifier.is_some())
            .finish()
    }
}

impl DataAuth {
    /// Proves `credential` to peers and checks peers with `verifier`.
    pub fn new(credential: Credential, verifier: Arc<dyn ProofVerifier>) -> Self {
        Self {
            credential: Some(credential),
            verifier: Some(verifier),
        }
    }
}

/// Writes a frame and flushes it (what a TLS stream buffered goes out; a no-op in
/// plaintext).
async fn send<W: AsyncWrite + Unpin>(w: &mut W, h: &Header, payload: &[u8]) -> std::io::Result<()> {
    write_frame(w, h, payload).await?;
    flush(w).await
}

/// The answer opcode to a request opcode (where a refusal is sent).
fn answer_op(op: Op) -> Op {
    match op {
        Op::Describe => Op::DescribeData,
        Op::Control => Op::ControlData,
        Op::Read => Op::ReadData,
        Op::Write => Op::WriteAck,
        _ => Op::HelloAck,
    }
}

/// A request that arrived before the proof, answered once the proof is checked.
#[derive(Debug)]
pub(super) struct Early {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// The listener's side: sends the challenge, holds the first request, checks the
/// proof. `Ok`: the tenant and the early request to answer. `Err`: refused (the peer
/// was told when it can be) or the peer failed; the connection must close.
pub(super) async fn accept<R, W>(
    rd: &mut R,
    wr: &mut W,
    verifier: &dyn ProofVerifier,
    timeout: Duration,
) -> Result<(Arc<str>, Option<Early>), TransferError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let challenge = Challenge::random();
    let run = async {
        let h = Header::new(Op::Challenge, 0, 0, CHALLENGE_LEN as u64);
        send(wr, &h, &challenge.0)
            .await
            .map_err(|e| TransferError::io("sending the challenge", e))?;
        let mut early: Option<Early> = None;
        loop {
            let h = read_header(rd)
                .await?
                .ok_or_else(|| TransferError::Io("closed before proving a token".into()))?;
            match h.op {
                Op::Proof if h.len == PROOF_FRAME_LEN => {
                    let b = read_control(rd, h.len, PROOF_FRAME_LEN, None)
                        .await
                        .map_err(|e| TransferError::io("reading the proof", e))?;
                    let (nonce, proof) = b.split_at(NONCE_LEN);
                    let verdict = verifier
                        .verify(challenge, nonce.to_vec(), proof.to_vec())
                        .await;
                    return Ok(match verdict {
                        Ok(tenant) => Ok((tenant, early)),
                        Err(why) => Err((early.map(|e| e.header), why)),
                    });
                }
                Op::Hello | Op::Describe | Op::Control
                    if early.is_none() && h.len <= MAX_EARLY_LEN =>
                {
                    let payload = read_control(rd, h.payload_len(), MAX_EARLY_LEN, None)
                        .await
                        .map_err(|e| TransferError::io("reading a request", e))?;
                    early = Some(Early { header: h, payload });
                }
                _ => {
                    return Ok(Err((
                        Some(h),
                        format!("{:?} before a proof of a token", h.op),
                    )))
                }
            }
        }
    };
    let refused = match tokio::time::timeout(timeout, run).await {
        Err(_) => {
            return Err(TransferError::Unauthenticated(format!(
                "no proof of a token within {timeout:?}"
            )))
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Ok(done))) => return Ok(done),
        Ok(Ok(Err(refused))) => refused,
    };
    let (req, why) = refused;
    let (op, id) = req.map_or((Op::HelloAck, 0), |h| (answer_op(h.op), h.id));
    let msg = format!("unauthenticated: {why}");
    let body: &[u8] = if op == Op::ControlData || op == Op::DescribeData {
        msg.as_bytes()
    } else {
        &[]
    };
    let h = Header::new(op, id, 0, body.len() as u64).with_status(status::UNAUTHENTICATED);
    let _ = tokio::time::timeout(Duration::from_secs(1), send(wr, &h, body)).await;
    Err(TransferError::Unauthenticated(why))
}

/// The peer's side: sends `first` (a Hello, Describe or Control request), answers the
/// listener's challenge if one comes, and returns the header of the answer to `first`
/// (its payload still to read). `remote` names the listener in errors.
pub(super) async fn request<S>(
    s: &mut S,
    first: &Header,
    payload: &[u8],
    credential: Option<&Credential>,
    remote: &str,
) -> Result<Header, TransferError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send(s, first, payload)
        .await
        .map_err(|e| TransferError::io(&format!("sending {:?} to {remote}", first.op), e))?;
    let closed = || TransferError::Io(format!("{remote} closed the connection"));
    let mut h = read_header(s).await?.ok_or_else(closed)?;
    if h.op == Op::Challenge {
        if h.len != CHALLENGE_LEN as u64 {
            return Err(TransferError::Frame(format!(
                "{remote} sent a {}-byte challenge",
                h.len
            )));
        }
        let c = read_control(s, h.len, CHALLENGE_LEN as u64, None)
            .await
            .map_err(|e| TransferError::io("reading the challenge", e))?;
        let Some(cred) = credential else {
            return Err(TransferError::Unauthenticated(format!(
                "the data port at {remote} requires authentication and this process has no token (set MOONCAKE_AUTH_TOKEN_FILE or MOONCAKE_AUTH_TOKEN)"
            )));
        };
        let mut challenge = [0u8; CHALLENGE_LEN];
        challenge.copy_from_slice(&c);
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let cred = cred.reload();
        let proof = cred.prove(PURPOSE, &Challenge(challenge), &nonce);
        let mut body = Vec::with_capacity(PROOF_FRAME_LEN as usize);
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&proof);
        let ph = Header::new(Op::Proof, 0, 0, PROOF_FRAME_LEN);
        send(s, &ph, &body)
            .await
            .map_err(|e| TransferError::io(&format!("sending a proof to {remote}"), e))?;
        h = read_header(s).await?.ok_or_else(closed)?;
        if h.status == status::UNAUTHENTICATED {
            let _ = drain(s, h.payload_len().min(MAX_EARLY_LEN), None).await;
            return Err(TransferError::Unauthenticated(format!(
                "the data port at {remote} refused the token from {} (not a token the master accepts)",
                cred.source
            )));
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_proof_passes_a_wrong_one_and_none_are_refused() {
        let tokens = TokenSet::parse("alpha:tok-a\n", "t").unwrap();
        let verifier = LocalVerifier(tokens);
        let hello = Header::new(Op::Hello, 0, 0, 3);
        for (cred, ok) in [(Some("tok-a"), true), (Some("tok-b"), false), (None, false)] {
            let (mut a, b) = tokio::io::duplex(1 << 16);
            let (mut brd, mut bwr) = tokio::io::split(b);
            let v = &verifier;
            let server = async move {
                let r = accept(&mut brd, &mut bwr, v, Duration::from_secs(5)).await;
                drop((brd, bwr));
                r
            };
            let cred = cred.map(|t| Credential::from_token(t, "test").unwrap());
            let client = async {
                let r = request(&mut a, &hello, b"seg", cred.as_ref(), "peer").await;
                drop(a);
                r
            };
            let (s, c) = tokio::join!(server, client);
            if ok {
                let (tenant, early) = s.unwrap();
                assert_eq!(&*tenant, "alpha");
                let early = early.unwrap();
                assert_eq!(
                    (early.header.op, early.payload.as_slice()),
                    (Op::Hello, &b"seg"[..])
                );
                // the serve loop would answer the Hello now; here the listener closed
                assert!(c.is_err());
            } else {
                // A peer without a token gives up (the listener sees it close); a
                // wrong proof is refused by the listener.
                assert!(s.is_err(), "{s:?}");
                if cred.is_some() {
                    assert!(matches!(s, Err(TransferError::Unauthenticated(_))), "{s:?}");
                }
                let e = c.unwrap_err();
                assert!(matches!(e, TransferError::Unauthenticated(_)), "{e}");
                assert!(e.to_string().contains("peer"), "{e}");
            }
        }
    }

    #[tokio::test]
    async fn a_silent_peer_is_dropped_after_the_timeout() {
        let verifier = LocalVerifier(TokenSet::parse("tok\n", "t").unwrap());
        let (_a, b) = tokio::io::duplex(1 << 16);
        let (mut brd, mut bwr) = tokio::io::split(b);
        let e = accept(&mut brd, &mut bwr, &verifier, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no proof"), "{e}");
    }
}

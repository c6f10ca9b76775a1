//! Proving this process's token to the master (a master with `--auth_token_file`).
//!
//! Every new connection proves it before its first call: a framed one with the
//! handshake of `mooncake_proto::handshake`, an HTTP/2 one with `Auth.Challenge` then
//! `Auth.Authenticate`. The token never crosses the wire (an HMAC proof over the
//! master's fresh challenge and a nonce of our own). The credential is read again from
//! its file at each proof, so a rotated token is used by the next connection, and a
//! connection re-made to a restarted or new master proves itself again.
//!
//! A refusal becomes the status the master sent (UNAUTHENTICATED -1800, or
//! PERMISSION_DENIED -1801 when the declared tenant is not the token's), so calls fail
//! with a code and a message that name authentication.

use mooncake_common::auth::{random_bytes, Challenge, Credential};
use mooncake_common::ErrorCode;
use mooncake_proto::handshake::{self as hs, NONCE_LEN, PURPOSE};
use mooncake_proto::status::to_status;
use std::io::{Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::Status;

/// What a connection proves: the credential, and the tenant this process declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub credential: Credential,
    /// The tenant the application says it is (`tenant_id`): the master refuses the
    /// connection when it is not the token's.
    pub tenant_id: Option<String>,
}

fn malformed(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("authentication handshake: {e}"))
}

impl ClientAuth {
    pub fn new(credential: Credential, tenant_id: Option<String>) -> Self {
        Self {
            credential,
            tenant_id: tenant_id.filter(|t| !t.is_empty()),
        }
    }

    fn declared(&self) -> &str {
        self.tenant_id.as_deref().unwrap_or("")
    }

    /// The answer to a master's challenge: our nonce and proof (the credential read
    /// again from its file first), and the declared tenant.
    pub fn answer(&self, challenge: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Status> {
        let c: [u8; 32] = challenge
            .try_into()
            .map_err(|_| malformed("the master's challenge is not 32 bytes"))?;
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let proof = self
            .credential
            .reload()
            .prove(PURPOSE, &Challenge(c), &nonce);
        Ok((nonce.to_vec(), proof.to_vec()))
    }

    fn framed_answer(&self, hello: &[u8; hs::HELLO_LEN]) -> Result<Vec<u8>, Status> {
        let (_required, c) = hs::decode_hello(hello).map_err(malformed)?;
        let (nonce, proof) = self.answer(&c)?;
        hs::encode_proof(
            nonce.as_slice().try_into().expect("nonce"),
            proof.as_slice().try_into().expect("proof"),
            self.declared(),
        )
        .map_err(malformed)
    }

    /// Proves the token on a fresh framed connection (before any request frame).
    pub async fn framed_async<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut S,
    ) -> Result<(), Status> {
        let io = |e: std::io::Error| refused_or_gone(&e);
        s.write_all(&hs::AUTH_MAGIC).await.map_err(io)?;
        let mut hello = [0u8; hs::HELLO_LEN];
        s.read_exact(&mut hello).await.map_err(io)?;
        s.write_all(&self.framed_answer(&hello)?)
            .await
            .map_err(io)?;
        let mut head = [0u8; hs::VERDICT_HEAD_LEN];
        s.read_exact(&mut head).await.map_err(io)?;
        let (code, n) = hs::decode_verdict_head(&head);
        let mut text = vec![0u8; n];
        s.read_exact(&mut text).await.map_err(io)?;
        verdict(code, &text)
    }

    /// [`ClientAuth::framed_async`] on a blocking socket.
    pub fn framed_blocking(&self, s: &mut std::net::TcpStream) -> Result<(), Status> {
        let io = |e: std::io::Error| refused_or_gone(&e);
        s.write_all(&hs::AUTH_MAGIC).map_err(io)?;
        let mut hello = [0u8; hs::HELLO_LEN];
        s.read_exact(&mut hello).map_err(io)?;
        s.write_all(&self.framed_answer(&hello)?).map_err(io)?;
        let mut head = [0u8; hs::VERDICT_HEAD_LEN];
        s.read_exact(&mut head).map_err(io)?;
        let (code, n) = hs::decode_verdict_head(&head);
        let mut text = vec![0u8; n];
        s.read_exact(&mut text).map_err(io)?;
        verdict(code, &text)
    }
}

/// The handshake's outcome: Ok, or the master's refusal as a status.
fn verdict(code: i32, text: &[u8]) -> Result<(), Status> {
    if code == 0 {
        return Ok(());
    }
    let text = String::from_utf8_lossy(text);
    Err(to_status(ErrorCode::from_code(code), text.into_owned()))
}

fn refused_or_gone(e: &std::io::Error) -> Status {
    Status::unavailable(format!("authentication handshake: {e}"))
}

/// A lazily dialled HTTP/2 channel to the master at `addr` for its services besides
/// `Master` (a segment owner's drain and tier work, copy tasks, leaving to restart),
/// proving `auth` on each new connection like the calls' own channel; with its origin.
pub fn master_service_channel(
    addr: &str,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
    auth: Option<ClientAuth>,
) -> Result<(crate::transport::DirectChannel, tonic::codegen::http::Uri), String> {
    let ch = crate::transport::DirectChannel::new(
        addr.trim(),
        crate::transport::DirectConfig {
            connect_timeout,
            timeout: Some(timeout),
            auth,
            ..Default::default()
        },
    );
    let origin = ch.origin()?;
    Ok((ch, origin))
}

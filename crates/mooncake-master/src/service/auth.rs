//! Authentication on the rpc port, and the tenant every call runs as.
//!
//! With `--auth_token_file` nothing is served to a peer that has not proved a token:
//! - a framed connection proves it at its start (`mooncake_proto::handshake`): the
//!   master sends a fresh challenge, the peer its nonce and HMAC proof; a connection
//!   that starts with the plain magic gets UNAUTHENTICATED for its first request and
//!   is closed;
//! - an HTTP/2 connection calls `Auth.Challenge` then `Auth.Authenticate` (the same
//!   proof); the connection's state ([`ConnAuth`]) remembers the tenant, and every other
//!   call on a connection without one is refused with UNAUTHENTICATED.
//!
//! Either way the proof binds the connection to a [`Tenant`], which travels with every
//! call into the handlers (keys are namespaced by it). A removed token stops new
//! connections at once; connections already proven keep their tenant until they close.
//! Without a token file every connection is the `cluster` tenant, whose keys carry no
//! prefix: the master behaves exactly as without authentication.

use mooncake_common::auth::{
    namespaced_key, random_bytes, visible_key, Challenge, TokenSet, CHALLENGE_LEN, CLUSTER_TENANT,
    PROOF_LEN,
};
use mooncake_common::ErrorCode;
use mooncake_proto::auth_server::{self, AuthServer};
use mooncake_proto::frame;
use mooncake_proto::handshake::{self as hs, PURPOSE};
use mooncake_proto::status::to_status;
use mooncake_proto::{
    AuthenticateRequest, AuthenticateResponse, ChallengeRequest, ChallengeResponse,
};
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::{Request, Response, Status};

/// Where the tokens in force come from (the master's token file, re-read when it
/// changes).
pub type TokenSource = Arc<dyn Fn() -> Arc<TokenSet> + Send + Sync>;

/// The tokens the rpc port checks proofs against; `None`: authentication off.
#[derive(Clone, Default)]
pub struct RpcAuth(pub Option<TokenSource>);

impl RpcAuth {
    /// Authentication against the tokens `source` gives at each check.
    pub fn new(source: impl Fn() -> Arc<TokenSet> + Send + Sync + 'static) -> RpcAuth {
        RpcAuth(Some(Arc::new(source)))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for RpcAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "RpcAuth(on)"
        } else {
            "RpcAuth(off)"
        })
    }
}

impl PartialEq for RpcAuth {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// The tenant a call runs as: the one its connection proved, or `cluster` without
/// authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Tenant {
    name: Arc<str>,
    cluster: bool,
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({})", self.name)
    }
}

impl Tenant {
    /// The infrastructure's tenant (and everyone's without authentication).
    pub fn cluster() -> Tenant {
        static CLUSTER: OnceLock<Arc<str>> = OnceLock::new();
        Tenant {
            name: CLUSTER.get_or_init(|| CLUSTER_TENANT.into()).clone(),
            cluster: true,
        }
    }

    pub fn named(name: Arc<str>) -> Tenant {
        let cluster = &*name == CLUSTER_TENANT;
        Tenant { name, cluster }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is the `cluster` tenant (keys unprefixed, sees every tenant).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The key the master stores for this tenant's `key` (an empty key stays empty,
    /// so that it is refused as before).
    pub fn key<'a>(&self, key: &'a str) -> Cow<'a, str> {
        if self.cluster || key.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(namespaced_key(&self.name, key))
        }
    }

    /// [`Tenant::key`] of each key, in one buffer (a batch of 1024 keys is two
    /// allocations, not 1024).
    pub fn keys<K: AsRef<str>>(&self, keys: &[K]) -> TenantKeys {
        let total: usize = keys
            .iter()
            .map(|k| self.name.len() + 1 + k.as_ref().len())
            .sum();
        let mut buf = String::with_capacity(total);
        let mut ends = Vec::with_capacity(keys.len());
        for k in keys {
            let k = k.as_ref();
            if !k.is_empty() {
                buf.push_str(&self.name);
                buf.push(mooncake_common::auth::TENANT_SEPARATOR);
                buf.push_str(k);
            }
            ends.push(buf.len());
        }
        TenantKeys { buf, ends }
    }

    /// How this tenant sees an internal key: `None` for another tenant's.
    pub fn shows<'a>(&self, internal: &'a str) -> Option<&'a str> {
        visible_key(&self.name, internal)
    }

    /// Whether a segment mounted by `owner` may hold this tenant's objects: the
    /// cluster's segments serve everyone, a tenant's own only that tenant.
    pub fn may_use_segment_of(&self, owner: &str) -> bool {
        owner == CLUSTER_TENANT || owner == &*self.name
    }
}

/// A batch's keys as the master stores them for one tenant ([`Tenant::keys`]).
pub struct TenantKeys {
    buf: String,
    ends: Vec<usize>,
}

impl TenantKeys {
    /// Each key, borrowed from the buffer.
    pub fn strs(&self) -> Vec<&str> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let k = &self.buf[start..end];
                start = end;
                k
            })
            .collect()
    }
}

/// The refusal of a call on a connection that proved no token.
pub fn unauthenticated() -> Status {
    to_status(
        ErrorCode::Unauthenticated,
        "authentication required: this master has --auth_token_file; prove a token \
         (MOONCAKE_AUTH_TOKEN_FILE or MOONCAKE_AUTH_TOKEN) first",
    )
}

/// Logs a refused peer (at most a line per refusal; the message names the cause).
fn log_refusal(peer: Option<SocketAddr>, why: &str) {
    match peer {
        Some(p) => tracing::warn!("rpc port: refused {p}: {why}"),
        None => tracing::warn!("rpc port: refused a peer: {why}"),
    }
}

/// Checks a proof against the tokens in force, and the tenant the peer declares.
fn check_proof(
    auth: &TokenSource,
    challenge: &Challenge,
    nonce: &[u8],
    proof: &[u8],
    declared: &str,
) -> Result<Tenant, (ErrorCode, String)> {
    let Some(tenant) = auth().verify(PURPOSE, challenge, nonce, proof) else {
        return Err((
            ErrorCode::Unauthenticated,
            "authentication failed: the token is not accepted by this master".into(),
        ));
    };
    if !declared.is_empty() && declared != &*tenant {
        return Err((
            ErrorCode::PermissionDenied,
            format!(
                "permission denied: tenant_id {declared:?} is not the tenant of the token ({tenant:?})"
            ),
        ));
    }
    Ok(Tenant::named(tenant))
}

/// Pre-authentication input is small: a request frame from a peer that skipped the
/// handshake is read (and dropped) up to this size before the refusal is answered.
const UNPROVEN_FRAME: usize = 64 * 1024;

/// Admits a framed connection whose first bytes were `magic`: its tenant, or `None`
/// (refused and answered; close it). `timeout` bounds the handshake.
pub(crate) async fn admit_framed<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    magic: [u8; 8],
    auth: &RpcAuth,
    timeout: Duration,
    peer: Option<SocketAddr>,
) -> Option<Tenant> {
    if magic == frame::MAGIC {
        let Some(_) = &auth.0 else {
            return Some(Tenant::cluster());
        };
        let _ = tokio::time::timeout(timeout, refuse_unproven(stream)).await;
        log_refusal(peer, "a framed request without authentication");
        return None;
    }
    if magic != hs::AUTH_MAGIC {
        return None;
    }
    match tokio::time::timeout(timeout, handshake(stream, auth)).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(why)) => {
            log_refusal(peer, &why);
            None
        }
        Err(_) => {
            log_refusal(peer, "the authentication handshake did not finish in time");
            None
        }
    }
}

/// Reads the unauthenticated peer's first request frame (dropping it) and answers it
/// with UNAUTHENTICATED. A frame announced larger than [`UNPROVEN_FRAME`] is answered
/// at once.
async fn refuse_unproven<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> std::io::Result<()> {
    let mut head = [0u8; frame::LEN_BYTES];
    stream.read_exact(&mut head).await?;
    let len = u32::from_le_bytes(head) as usize;
    if len <= UNPROVEN_FRAME {
        let mut sink = [0u8; 4096];
        let mut left = len;
        while left > 0 {
            let n = stream.read(&mut sink[..left.min(4096)]).await?;
            if n == 0 {
                break;
            }
            left -= n;
        }
    }
    let s = unauthenticated();
    let mut out = Vec::new();
    frame::encode_answer(
        s.code() as u32,
        ErrorCode::Unauthenticated.code(),
        s.message(),
        b"",
        &mut out,
    )
    .map_err(std::io::Error::from)?;
    stream.write_all(&out).await?;
    stream.flush().await
}

/// The handshake after [`hs::AUTH_MAGIC`]: the tenant, or why the peer was refused
/// (the verdict already sent).
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    auth: &RpcAuth,
) -> Result<Tenant, String> {
    let io = |e: std::io::Error| format!("authentication handshake: {e}");
    let challenge = Challenge::random();
    stream
        .write_all(&hs::encode_hello(auth.0.is_some(), &challenge.0))
        .await
        .map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut head = [0u8; hs::PROOF_HEAD_LEN];
    stream.read_exact(&mut head).await.map_err(io)?;
    let (nonce, proof, n) = hs::decode_proof_head(&head).map_err(|e| e.to_string())?;
    let mut declared = vec![0u8; n];
    stream.read_exact(&mut declared).await.map_err(io)?;
    let declared = String::from_utf8_lossy(&declared);
    let verdict = match &auth.0 {
        None => Ok(Tenant::cluster()),
        Some(a) => check_proof(a, &challenge, &nonce, &proof, &declared),
    };
    let (out, result) = match verdict {
        Ok(t) => (hs::encode_verdict(0, t.name()), Ok(t)),
        Err((code, why)) => (hs::encode_verdict(code.code(), &why), Err(why)),
    };
    stream.write_all(&out).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    result
}

/// One HTTP/2 connection's authentication: the challenge it was sent and the tenant
/// it proved.
#[derive(Default)]
pub struct ConnAuth {
    challenge: parking_lot::Mutex<Option<[u8; CHALLENGE_LEN]>>,
    tenant: OnceLock<Tenant>,
}

impl ConnAuth {
    /// The tenant of a call on this connection, or `None` (refuse it).
    pub fn tenant(&self, auth: &RpcAuth) -> Option<Tenant> {
        match &auth.0 {
            None => Some(Tenant::cluster()),
            Some(_) => self.tenant.get().cloned(),
        }
    }
}

/// The path prefix of the `Auth` service.
pub const AUTH_PREFIX: &str = "/mooncake.v1.Auth/";

/// The `Auth` service of one HTTP/2 connection.
pub fn grpc_service(
    conn: Arc<ConnAuth>,
    auth: RpcAuth,
    peer: Option<SocketAddr>,
) -> AuthServer<AuthService> {
    AuthServer::new(AuthService { conn, auth, peer })
}

pub struct AuthService {
    conn: Arc<ConnAuth>,
    auth: RpcAuth,
    peer: Option<SocketAddr>,
}

#[tonic::async_trait]
impl auth_server::Auth for AuthService {
    async fn challenge(
        &self,
        _: Request<ChallengeRequest>,
    ) -> Result<Response<ChallengeResponse>, Status> {
        let c: [u8; CHALLENGE_LEN] = random_bytes();
        *self.conn.challenge.lock() = Some(c);
        Ok(Response::new(ChallengeResponse {
            required: self.auth.0.is_some(),
            challenge: c.to_vec(),
        }))
    }

    async fn authenticate(
        &self,
        r: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let r = r.into_inner();
        let Some(auth) = &self.auth.0 else {
            return Ok(Response::new(AuthenticateResponse {
                tenant: CLUSTER_TENANT.into(),
            }));
        };
        // A challenge answers one attempt.
        let Some(c) = self.conn.challenge.lock().take() else {
            return Err(to_status(
                ErrorCode::Unauthenticated,
                "authentication failed: call Challenge first on this connection",
            ));
        };
        if r.peer_nonce.len() > 64 || r.proof.len() != PROOF_LEN {
            log_refusal(self.peer, "a malformed proof");
            return Err(to_status(
                ErrorCode::Unauthenticated,
                "authentication failed: malformed proof",
            ));
        }
        match check_proof(auth, &Challenge(c), &r.peer_nonce, &r.proof, &r.tenant_id) {
            Ok(t) => {
                let name = t.name().to_string();
                if let Err(now) = self.conn.tenant.set(t) {
                    if now.name() != self.conn.tenant.get().map_or("", |t| t.name()) {
                        return Err(to_status(
                            ErrorCode::PermissionDenied,
                            "permission denied: this connection already runs as another tenant",
                        ));
                    }
                }
                Ok(Response::new(AuthenticateResponse { tenant: name }))
            }
            Err((code, why)) => {
                log_refusal(self.peer, &why);
                Err(to_status(code, why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_namespace_keys_and_segments() {
        let c = Tenant::cluster();
        assert!(c.is_cluster());
        assert!(matches!(c.key("k"), Cow::Borrowed("k")));
        let a = Tenant::named("alpha".into());
        let b = Tenant::named("beta".into());
        assert_ne!(a.key("k"), b.key("k"));
        assert_eq!(a.key(""), "");
        let ks = a.keys(&["k", "", "l"]);
        assert_eq!(ks.strs(), vec![&*a.key("k"), "", &*a.key("l")]);
        assert_eq!(a.shows(&a.key("k")), Some("k"));
        assert_eq!(b.shows(&a.key("k")), None);
        assert_eq!(
            c.shows(&a.key("k")).map(str::to_string),
            Some(a.key("k").into_owned())
        );
        assert!(a.may_use_segment_of("cluster") && a.may_use_segment_of("alpha"));
        assert!(!a.may_use_segment_of("beta"));
        assert!(Tenant::named("cluster".into()).is_cluster());
    }
}

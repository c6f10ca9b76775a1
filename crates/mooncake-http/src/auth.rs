//! Bearer-token authentication for an HTTP port: every request except the port's
//! open paths (health checks, Prometheus scrapes) must carry
//! `Authorization: Bearer <token>` with a token the port accepts. What a token is
//! worth is the port's business ([`Lookup`]: a token file's tenant, or the one token a
//! store was started with); this module only checks and refuses.
//!
//! A refusal answers 401 with a plain-text body naming authentication and a
//! `WWW-Authenticate: Bearer` header. It is logged once per peer address (the
//! listener records each connection's peer as `ConnectInfo<SocketAddr>`), not once per
//! request: a scanner hammering the port must not flood the log. The set of addresses
//! already logged is bounded; past the bound, refusals are counted but not logged.
//!
//! An accepted request carries its tenant as the [`Tenant`] extension, for handlers
//! that scope what they show or refuse what the tenant may not do (403).

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The tenant a bearer header value (`Bearer <token>`) proves, if any.
pub type Lookup = Arc<dyn Fn(&str) -> Option<Arc<str>> + Send + Sync>;

/// The tenant an accepted request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub Arc<str>);

/// Peer addresses remembered as already logged; beyond this, refusals are not logged.
const MAX_LOGGED_PEERS: usize = 4096;

/// One port's token check.
pub struct BearerAuth {
    lookup: Lookup,
    /// The port's name in log lines ("admin port", "metadata server", "store REST").
    surface: &'static str,
    /// Paths served without a token.
    open: Vec<&'static str>,
    logged: Mutex<HashSet<Option<IpAddr>>>,
    refused: AtomicU64,
}

impl BearerAuth {
    pub fn new(surface: &'static str, open: &[&'static str], lookup: Lookup) -> Arc<Self> {
        Arc::new(Self {
            lookup,
            surface,
            open: open.to_vec(),
            logged: Mutex::new(HashSet::new()),
            refused: AtomicU64::new(0),
        })
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Logs a refusal unless this peer's address was logged before.
    fn note(&self, peer: Option<SocketAddr>, why: &str, path: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let ip = peer.map(|p| p.ip());
        let first = {
            let mut l = self.logged.lock();
            l.len() < MAX_LOGGED_PEERS && l.insert(ip)
        };
        if first {
            let peer = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
            tracing::warn!(
                "{}: refused {path} from {peer}: {why} (logged once per peer address)",
                self.surface
            );
        }
    }
}

/// `router` with every request outside `auth`'s open paths checked.
pub fn protect(router: Router, auth: Arc<BearerAuth>) -> Router {
    router.layer(middleware::from_fn_with_state(auth, check))
}

/// `router` as is without `auth`, protected with it.
pub fn protect_if(router: Router, auth: Option<Arc<BearerAuth>>) -> Router {
    match auth {
        Some(a) => protect(router, a),
        None => router,
    }
}

/// The 401 every refusal answers.
pub fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
        ],
        format!("authentication required: {why}\n"),
    )
        .into_response()
}

/// The 403 for a tenant that may not do what it asked.
pub fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("permission denied: {why}\n"),
    )
        .into_response()
}

async fn check(State(auth): State<Arc<BearerAuth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if auth.open.contains(&path) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let tenant = match req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().ok())
    {
        None => Err("no Authorization header; send `Authorization: Bearer <token>`"),
        Some(None) => Err("the Authorization header is not text"),
        Some(Some(h)) => (auth.lookup)(h).ok_or("the bearer token is not accepted"),
    };
    match tenant {
        Ok(t) => {
            req.extensions_mut().insert(Tenant(t));
            next.run(req).await
        }
        Err(why) => {
            let path = path.to_string();
            auth.note(peer, why, &path);
            unauthorized(why)
        }
    }
}

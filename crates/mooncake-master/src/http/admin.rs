//! The admin port (`--metrics_host:--metrics_port`, CONTRACT §6).
//!
//! - `/metrics`: Prometheus text, refreshed from the master at scrape time.
//! - `/health`: `{"status":"ok","role":"leader","leader":"addr:port"}`; 503 on a standby.
//! - `/get_all_segments`: segment names, one per line, and an EMPTY body while none is
//!   mounted: SGLang's readiness poll waits for `resp.text != ""`, so a JSON `[]` would
//!   declare an empty cluster ready. `?format=json` gives the details as JSON.
//! - `/get_all_keys`: keys one per line (the reference's format), or `?format=json`.
//! - `/query_key?key=K`: the object as JSON; 404 JSON on a miss, 400 without `key`.
//! - `/workers`: background workers and what each last did.
//!
//! With `--auth_token_file` ([`protect`]), everything but `/health` and `/metrics`
//! takes `Authorization: Bearer <token>` (401 without an accepted one). A tenant other
//! than `cluster` sees its own keys only (as it named them) and may not start or
//! cancel drains or set quotas (403); the `cluster` tenant sees and reaches every key.

use super::{json, text};
use crate::master::Master;
use crate::metrics::MasterMetrics;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use mooncake_common::auth::{namespaced_key, visible_key, CLUSTER_TENANT};
use mooncake_http::auth::{forbidden, Tenant};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who serves: the leader answers everything; a standby answers 503 (CONTRACT §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleInfo {
    /// `leader` or `standby`.
    pub role: String,
    /// The leader's `rpc_address:rpc_port`, or "" while unknown.
    pub leader: String,
}

impl RoleInfo {
    pub fn leader(addr: impl Into<String>) -> Self {
        Self {
            role: "leader".into(),
            leader: addr.into(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

/// Reports the current role; HA swaps in one that follows the election.
pub type RoleSource = Arc<dyn Fn() -> RoleInfo + Send + Sync>;

/// The master the admin port shows; HA swaps in the current term's.
pub type MasterSource = Arc<dyn Fn() -> Arc<Master> + Send + Sync>;

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    master: MasterSource,
    metrics: Arc<MasterMetrics>,
    role: RoleSource,
}

impl AdminState {
    /// A single master that always leads, advertising `leader` (`rpc_address:port`).
    pub fn new(master: Arc<Master>, metrics: Arc<MasterMetrics>, leader: String) -> Self {
        let info = RoleInfo::leader(leader);
        Self::with_role(master, metrics, Arc::new(move || info.clone()))
    }

    pub fn with_role(master: Arc<Master>, metrics: Arc<MasterMetrics>, role: RoleSource) -> Self {
        Self::with_sources(Arc::new(move || master.clone()), metrics, role)
    }

    /// Both the master and the role follow the caller (HA: the election's current term).
    pub fn with_sources(
        master: MasterSource,
        metrics: Arc<MasterMetrics>,
        role: RoleSource,
    ) -> Self {
        Self {
            master,
            metrics,
            role,
        }
    }

    pub(crate) fn master(&self) -> Arc<Master> {
        (self.master)()
    }

    /// The 503 a standby answers with, or None on the leader.
    pub(crate) fn standby(&self) -> Option<Response> {
        let info = (self.role)();
        (!info.is_leader()).then(|| {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &Health {
                    status: "standby",
                    role: info.role,
                    leader: info.leader,
                },
            )
        })
    }
}

/// Paths of the admin port served without a token: probes and scrapes.
pub const OPEN_PATHS: &[&str] = &["/health", "/metrics"];

/// The whole admin `app` behind `auth`'s bearer check (unchanged without one), with
/// the drain API kept to the `cluster` tenant.
pub fn protect(app: Router, auth: Option<&Arc<crate::auth::MasterAuth>>) -> Router {
    let Some(auth) = auth else {
        return app;
    };
    // Layers run outside in: the bearer check first, then the tenant check.
    let app = app.layer(middleware::from_fn(cluster_only_drains));
    mooncake_http::auth::protect(app, auth.bearer("admin port", OPEN_PATHS))
}

async fn cluster_only_drains(req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/api/v1/drain_jobs") {
        let who = req.extensions().get::<Tenant>().map(|t| t.0.clone());
        if let Some(who) = who.filter(|t| &**t != CLUSTER_TENANT) {
            return forbidden(&format!(
                "drains reach every tenant's objects: only the {CLUSTER_TENANT} tenant may use them (this token is tenant {who}'s)"
            ));
        }
    }
    next.run(req).await
}

/// The caller's tenant: the one its bearer token proved, `cluster` without
/// authentication.
fn caller(t: &Option<Extension<Tenant>>) -> &str {
    t.as_ref().map_or(CLUSTER_TENANT, |e| &e.0 .0)
}

/// The admin app's routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/get_all_segments", get(all_segments))
        .route("/get_all_keys", get(all_keys))
        .route("/query_key", get(query_key))
        .route("/workers", get(workers))
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    role: String,
    leader: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

#[derive(Deserialize)]
struct ListParams {
    format: Option<String>,
}

impl ListParams {
    fn wants_json(&self) -> bool {
        self.format.as_deref() == Some("json")
    }
}

#[derive(Deserialize)]
struct KeyParams {
    key: Option<String>,
}

async fn metrics(State(s): State<AdminState>) -> Response {
    match s.metrics.render(&s.master()) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            body,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render metrics: {e}"),
        ),
    }
}

async fn health(State(s): State<AdminState>) -> Response {
    if let Some(r) = s.standby() {
        return r;
    }
    let info = (s.role)();
    json(
        StatusCode::OK,
        &Health {
            status: "ok",
            role: info.role,
            leader: info.leader,
        },
    )
}

/// One name per line, each ending in a newline; empty when there are none.
fn lines<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.fold(String::new(), |mut out, s| {
        out.push_str(s);
        out.push('\n');
        out
    })
}

async fn all_segments(State(s): State<AdminState>, Query(p): Query<ListParams>) -> Response {
    if let Some(r) = s.standby() {
        return r;
    }
    let segments = s.master().segments();
    if p.wants_json() {
        return json(StatusCode::OK, &segments);
    }
    text(
        StatusCode::OK,
        lines(segments.iter().map(|x| x.name.as_str())),
    )
}

async fn all_keys(
    State(s): State<AdminState>,
    t: Option<Extension<Tenant>>,
    Query(p): Query<ListParams>,
) -> Response {
    if let Some(r) = s.standby() {
        return r;
    }
    let who = caller(&t);
    let mut keys = s.master().all_keys();
    if who != CLUSTER_TENANT {
        keys = keys
            .iter()
            .filter_map(|k| visible_key(who, k).map(str::to_string))
            .collect();
    }
    if p.wants_json() {
        return json(StatusCode::OK, &keys);
    }
    text(StatusCode::OK, lines(keys.iter().map(String::as_str)))
}

#[derive(Serialize)]
struct KeyAnswer<'a, T: Serialize> {
    key: &'a str,
    #[serde(flatten)]
    info: T,
}

async fn query_key(
    State(s): State<AdminState>,
    t: Option<Extension<Tenant>>,
    Query(p): Query<KeyParams>,
) -> Response {
    if let Some(r) = s.standby() {
        return r;
    }
    let key = match p.key.as_deref() {
        Some(k) if !k.is_empty() => k,
        _ => {
            return json(
                StatusCode::BAD_REQUEST,
                &ErrorBody {
                    error: "missing key: use /query_key?key=<key>",
                    key: None,
                },
            )
        }
    };
    // A tenant names its own keys; the cluster tenant names any key whole.
    let internal = namespaced_key(caller(&t), key);
    match s.master().query_key(&internal) {
        Some(info) => json(StatusCode::OK, &KeyAnswer { key, info }),
        None => json(
            StatusCode::NOT_FOUND,
            &ErrorBody {
                error: "key not found",
                key: Some(key),
            },
        ),
    }
}

#[derive(Serialize)]
struct Worker {
    name: String,
    status: String,
}

async fn workers(State(s): State<AdminState>) -> Response {
    let list: Vec<Worker> = s
        .master()
        .workers_status()
        .into_iter()
        .map(|(name, status)| Worker { name, status })
        .collect();
    json(StatusCode::OK, &list)
}

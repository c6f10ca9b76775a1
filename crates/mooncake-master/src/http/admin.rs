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

use super::{json, text};
use crate::master::Master;
use crate::metrics::MasterMetrics;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
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

    fn master(&self) -> Arc<Master> {
        (self.master)()
    }

    /// The 503 a standby answers with, or None on the leader.
    fn standby(&self) -> Option<Response> {
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

async fn all_keys(State(s): State<AdminState>, Query(p): Query<ListParams>) -> Response {
    if let Some(r) = s.standby() {
        return r;
    }
    let keys = s.master().all_keys();
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

async fn query_key(State(s): State<AdminState>, Query(p): Query<KeyParams>) -> Response {
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
    match s.master().query_key(key) {
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

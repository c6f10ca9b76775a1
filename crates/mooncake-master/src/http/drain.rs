//! The drain jobs' admin API on the admin port (the reference's):
//!
//! - `POST /api/v1/drain_jobs` with `{"segments": ["<name>", ...], "target_segments":
//!   [], "max_concurrency": 4}` → `{"success": true, "job_id", "status": "CREATED", ...}`
//!   (the job plans at once, so its status may already be further on);
//! - `GET /api/v1/drain_jobs/query?job_id=<id>` → the job (`status_name`,
//!   `succeeded_units`, `failed_units`, `migrated_bytes`, `message`, ...);
//! - `GET /api/v1/drain_jobs` → every job, newest first;
//! - `POST /api/v1/drain_jobs/cancel?job_id=<id>`.
//!
//! Errors are `{"success": false, "error": "..."}` with 400 (bad request), 404
//! (unknown job), 409 (another drain running, nothing else to hold the objects) or,
//! under HA, 503 from a master that is not the leader (jobs live in the leader's
//! term).

use super::json;
use crate::drain::{DrainRequest, Drains};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the routes find the drain jobs: the master's, or under HA the serving
/// term's (`None` while this master does not lead).
pub type DrainSource = Arc<dyn Fn() -> Option<Arc<Drains>> + Send + Sync>;

/// The drain routes, to merge into the admin app.
pub fn router(drains: DrainSource) -> Router {
    Router::new()
        .route("/api/v1/drain_jobs", post(create).get(list))
        .route("/api/v1/drain_jobs/query", get(query))
        .route("/api/v1/drain_jobs/cancel", post(cancel))
        .with_state(drains)
}

/// The answer of a master that does not lead.
fn not_leader() -> Response {
    fail(
        StatusCode::SERVICE_UNAVAILABLE,
        "this master is not the leader: drain jobs run on the leader (see /health on each master)",
    )
}

#[derive(Deserialize)]
struct Body {
    segments: Option<Vec<String>>,
    #[serde(default)]
    target_segments: Vec<String>,
    max_concurrency: Option<usize>,
}

#[derive(Deserialize)]
struct JobParam {
    job_id: Option<String>,
}

#[derive(Serialize)]
struct Failure {
    success: bool,
    error: String,
}

fn fail(status: StatusCode, error: impl Into<String>) -> Response {
    json(
        status,
        &Failure {
            success: false,
            error: error.into(),
        },
    )
}

async fn create(State(source): State<DrainSource>, body: Bytes) -> Response {
    let Some(d) = source() else {
        return not_leader();
    };
    let b: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("the body is not a drain request ({e}); expected {{\"segments\": [\"<segment name>\"], \"target_segments\": [], \"max_concurrency\": 4}}"),
            )
        }
    };
    let req = DrainRequest {
        segments: b.segments.unwrap_or_default(),
        target_segments: b.target_segments,
        max_concurrency: b.max_concurrency.unwrap_or(4),
    };
    match d.create(req) {
        // The answer to a creation says what happened (the job was created), as the
        // reference's does; the job plans at once, and its progress is in
        // `status_name` here and in /query.
        Ok(mut v) => {
            v.status = "CREATED";
            json(StatusCode::OK, &v)
        }
        Err(e) if e.contains("one drain at a time") || e.contains("would lose") => {
            fail(StatusCode::CONFLICT, e)
        }
        Err(e) => fail(StatusCode::BAD_REQUEST, e),
    }
}

async fn list(State(source): State<DrainSource>) -> Response {
    match source() {
        Some(d) => json(StatusCode::OK, &d.list()),
        None => not_leader(),
    }
}

async fn query(State(source): State<DrainSource>, Query(p): Query<JobParam>) -> Response {
    let Some(d) = source() else {
        return not_leader();
    };
    let Some(id) = p.job_id else {
        return fail(StatusCode::BAD_REQUEST, "missing job_id");
    };
    match d.query(&id) {
        Some(v) => json(StatusCode::OK, &v),
        None => fail(StatusCode::NOT_FOUND, format!("unknown drain job {id}")),
    }
}

async fn cancel(State(source): State<DrainSource>, Query(p): Query<JobParam>) -> Response {
    let Some(d) = source() else {
        return not_leader();
    };
    let Some(id) = p.job_id else {
        return fail(StatusCode::BAD_REQUEST, "missing job_id");
    };
    match d.cancel(&id) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) if e.starts_with("unknown") => fail(StatusCode::NOT_FOUND, e),
        Err(e) => fail(StatusCode::CONFLICT, e),
    }
}

//! Tenant quotas on the admin port (the reference's path and shapes):
//!
//! - `GET /api/v1/tenant_quotas` → `{"success": true, "data": [snapshot, ...]}`: every
//!   tenant that holds objects or has a quota (a tenant other than `cluster` sees its
//!   own only);
//! - `GET /api/v1/tenant_quotas?tenant_id=T` → `{"success": true, "data": snapshot}`;
//! - `PUT /api/v1/tenant_quotas?tenant_id=T` with `{"requested_quota_bytes": N}`
//!   (1 to 2^63 - 1) sets T's quota → the new snapshot. Only the `cluster` tenant may
//!   (403 for others). A quota below what T holds is accepted: nothing is removed,
//!   `over_quota` and `admission_closed` turn true and T's puts are refused with
//!   TENANT_QUOTA_EXCEEDED (-1700) until removals and eviction bring it under;
//! - `DELETE /api/v1/tenant_quotas?tenant_id=T` removes T's quota (its puts are
//!   limited by capacity only) → `{"success": true, "data": the last snapshot}`; 404
//!   when T had none. Only `cluster` may.
//!
//! A snapshot: `tenant_id`, `requested_quota_bytes` and `effective_quota_bytes` (the
//! quota, 0 without one), `charged_bytes` (memory replicas, complete and in flight),
//! `inflight_puts`, `refused_puts`, `admission_closed`, `over_quota`,
//! `has_explicit_policy`. Errors are `{"success": false, "error": "..."}` with 400
//! (bad tenant_id or body), 403 or 404.

use super::admin::AdminState;
use super::json;
use crate::index::usage::{TenantView, MAX_QUOTA_BYTES};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use mooncake_common::auth::{valid_tenant, CLUSTER_TENANT};
use mooncake_http::auth::Tenant;
use serde::{Deserialize, Serialize};

/// The quota routes, to merge into the admin app (they share its state).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route(
            "/api/v1/tenant_quotas",
            get(list_or_get).put(upsert).delete(remove),
        )
        .with_state(state)
}

#[derive(Deserialize)]
struct TenantParam {
    tenant_id: Option<String>,
}

#[derive(Deserialize)]
struct PolicyBody {
    requested_quota_bytes: u64,
}

#[derive(Serialize)]
struct Snapshot {
    tenant_id: String,
    requested_quota_bytes: u64,
    effective_quota_bytes: u64,
    charged_bytes: u64,
    inflight_puts: u64,
    refused_puts: u64,
    /// Bytes of the tenant's records on SSD tiers: reported, not charged to the quota.
    disk_bytes: u64,
    admission_closed: bool,
    over_quota: bool,
    has_explicit_policy: bool,
}

impl From<TenantView> for Snapshot {
    fn from(v: TenantView) -> Self {
        let q = v.quota.unwrap_or(0);
        let over = v.quota.is_some_and(|q| v.bytes > q);
        Snapshot {
            tenant_id: v.tenant,
            requested_quota_bytes: q,
            effective_quota_bytes: q,
            charged_bytes: v.bytes,
            inflight_puts: v.inflight,
            refused_puts: v.refused,
            disk_bytes: v.disk_bytes,
            admission_closed: v.quota.is_some_and(|q| v.bytes >= q),
            over_quota: over,
            has_explicit_policy: v.quota.is_some(),
        }
    }
}

#[derive(Serialize)]
struct Answer<T: Serialize> {
    success: bool,
    data: T,
}

#[derive(Serialize)]
struct Failure {
    success: bool,
    error: String,
}

fn ok<T: Serialize>(data: T) -> Response {
    json(
        StatusCode::OK,
        &Answer {
            success: true,
            data,
        },
    )
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

/// The caller's tenant: the one its bearer token proved, `cluster` without
/// authentication.
fn caller(t: &Option<Extension<Tenant>>) -> &str {
    t.as_ref().map_or(CLUSTER_TENANT, |e| &e.0 .0)
}

/// The `tenant_id` parameter, checked; `Ok(None)` when absent, the 400's message
/// when invalid.
fn tenant_param(p: &TenantParam) -> Result<Option<&str>, String> {
    match p.tenant_id.as_deref() {
        None | Some("") => Ok(None),
        Some(t) if valid_tenant(t) => Ok(Some(t)),
        Some(t) => Err(format!(
            "invalid tenant_id {t:?}: 1 to 128 of A-Z a-z 0-9 . _ -"
        )),
    }
}

fn only_cluster(who: &str, what: &str) -> Option<Response> {
    (who != CLUSTER_TENANT).then(|| {
        fail(
            StatusCode::FORBIDDEN,
            format!("permission denied: only the {CLUSTER_TENANT} tenant may {what} (this token is tenant {who}'s)"),
        )
    })
}

async fn list_or_get(
    State(s): State<AdminState>,
    t: Option<Extension<Tenant>>,
    Query(p): Query<TenantParam>,
) -> Response {
    if let Some(r) = s.standby() {
        return r;
    }
    let who = caller(&t);
    let usage = s.master().index.usage().clone();
    match tenant_param(&p) {
        Err(e) => fail(StatusCode::BAD_REQUEST, e),
        Ok(None) if who == CLUSTER_TENANT => ok(usage
            .all()
            .into_iter()
            .map(Snapshot::from)
            .collect::<Vec<_>>()),
        Ok(None) => ok(vec![Snapshot::from(usage.view(who))]),
        Ok(Some(tenant)) if who != CLUSTER_TENANT && tenant != who => fail(
            StatusCode::FORBIDDEN,
            format!("permission denied: tenant {who} may read its own quota only"),
        ),
        Ok(Some(tenant)) => ok(Snapshot::from(usage.view(tenant))),
    }
}

async fn upsert(
    State(s): State<AdminState>,
    t: Option<Extension<Tenant>>,
    Query(p): Query<TenantParam>,
    body: Bytes,
) -> Response {
    if let Some(r) = only_cluster(caller(&t), "set quotas") {
        return r;
    }
    if let Some(r) = s.standby() {
        return r;
    }
    let tenant = match tenant_param(&p) {
        Err(e) => return fail(StatusCode::BAD_REQUEST, e),
        Ok(None) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "missing tenant_id: use /api/v1/tenant_quotas?tenant_id=<tenant>",
            )
        }
        Ok(Some(t)) => t.to_string(),
    };
    let b: PolicyBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON body ({e}); expected {{\"requested_quota_bytes\": <bytes>}}"),
            )
        }
    };
    if b.requested_quota_bytes == 0 || b.requested_quota_bytes > MAX_QUOTA_BYTES {
        return fail(
            StatusCode::BAD_REQUEST,
            "tenant quota must be in [1, 2^63 - 1] bytes",
        );
    }
    let m = s.master();
    crate::quota::change(&m, &tenant, Some(b.requested_quota_bytes));
    synced(&m).await;
    let v = m.index.usage().view(&tenant);
    if v.bytes > b.requested_quota_bytes {
        tracing::warn!(
            "tenant {tenant}'s quota set to {} bytes, below the {} it holds: its puts are refused until it is under",
            b.requested_quota_bytes,
            v.bytes
        );
    }
    ok(Snapshot::from(v))
}

async fn remove(
    State(s): State<AdminState>,
    t: Option<Extension<Tenant>>,
    Query(p): Query<TenantParam>,
) -> Response {
    if let Some(r) = only_cluster(caller(&t), "remove quotas") {
        return r;
    }
    if let Some(r) = s.standby() {
        return r;
    }
    let tenant = match tenant_param(&p) {
        Err(e) => return fail(StatusCode::BAD_REQUEST, e),
        Ok(None) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "missing tenant_id: use /api/v1/tenant_quotas?tenant_id=<tenant>",
            )
        }
        Ok(Some(t)) => t.to_string(),
    };
    let m = s.master();
    let before = m.index.usage().view(&tenant);
    if before.quota.is_none() || crate::quota::change(&m, &tenant, None).is_none() {
        return fail(
            StatusCode::NOT_FOUND,
            format!("tenant {tenant} has no quota"),
        );
    }
    synced(&m).await;
    ok(Snapshot::from(before))
}

/// With an HA standby following (or the on-disk index), the answer waits until it
/// has the change, as for every other mutation.
async fn synced(m: &crate::master::Master) {
    let log = m.index.log();
    if log.is_active() {
        log.wait_synced(log.head(), crate::ha::replication::log::SYNC_BOUND)
            .await;
    }
}

//! `--enable_http_server`: the reference's health and metrics port of a real client
//! (`--http_port`, 9300 by default), so a node's sidecar can be probed and scraped
//! like the store daemon. Nothing on it reads or changes objects, so it asks for no
//! token: `/health` and `/metrics` are the paths every other port leaves open too.
//!
//! - `GET /health`: 200 `OK` while the segment is mounted, else 503 naming why.
//! - `GET /metrics`: Prometheus text, the store daemon's figures named `client_*`.
//! - `GET /metrics/summary`: the same figures as a few readable lines.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use mooncake_client::Client;
use mooncake_store::http::{health, metrics_route};
use mooncake_store::metrics::StoreMetrics;

/// The port's routes over `client` (health and metrics as the store daemon serves them).
pub fn router(client: Client) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/metrics",
            metrics_route(StoreMetrics::with_prefix("client")),
        )
        .route("/metrics/summary", get(summary))
        .with_state(client)
}

async fn summary(State(c): State<Client>) -> String {
    let size = c.segment_desc().map_or(0, |s| s.size);
    let t = c.transfer_metrics();
    let lc = c.location_cache_stats();
    let looked_up = lc.hits + lc.misses + lc.stale;
    let hit_pct = if looked_up == 0 {
        0.0
    } else {
        100.0 * lc.hits as f64 / looked_up as f64
    };
    format!(
        "segment: {size} bytes, {}\n\
         transfers served: {} bytes in, {} bytes out; {} requests failed\n\
         heartbeats that did not reach the master: {}\n\
         location cache: {} entries; {} hits ({hit_pct:.1}%), {} misses, {} stale\n",
        if c.is_mounted() {
            "mounted"
        } else {
            "not mounted"
        },
        t.bytes_served_in,
        t.bytes_served_out,
        t.requests_failed,
        c.heartbeat_failures(),
        lc.entries,
        lc.hits,
        lc.misses,
        lc.stale,
    )
}

//! The periodic summary line operators grep for (CONTRACT §1):
//! `Storage: 26.96 GB / 30.00 GB (89.87%) | Keys: 1234 (soft-pinned: 5)`.
//!
//! Logged once at start and then every `--enable_metric_reporting` interval (10 s),
//! so a freshly started master shows its state without waiting a full period.

use crate::master::{Master, MasterStats};
use mooncake_common::size::format_size;
use std::sync::Arc;
use std::time::Duration;

/// How often the line is logged.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The summary line for `stats`.
pub fn storage_line(stats: &MasterStats) -> String {
    let pct = if stats.total_capacity_bytes == 0 {
        0.0
    } else {
        stats.allocated_bytes as f64 * 100.0 / stats.total_capacity_bytes as f64
    };
    format!(
        "Storage: {} / {} ({pct:.2}%) | Keys: {} (soft-pinned: {})",
        format_size(stats.allocated_bytes),
        format_size(stats.total_capacity_bytes),
        stats.key_count,
        stats.soft_pin_key_count
    )
}

/// Logs the line every `every` until `shutdown` resolves; the first one right away.
pub async fn run(
    master: Arc<Master>,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => tracing::info!("{}", storage_line(&master.stats())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_reference() {
        let s = MasterStats {
            allocated_bytes: 28_948_000_000,
            total_capacity_bytes: 30 << 30,
            key_count: 1234,
            soft_pin_key_count: 5,
            ..Default::default()
        };
        assert_eq!(
            storage_line(&s),
            "Storage: 26.96 GB / 30.00 GB (89.87%) | Keys: 1234 (soft-pinned: 5)"
        );
    }

    #[test]
    fn empty_cluster_is_zero_percent() {
        assert_eq!(
            storage_line(&MasterStats::default()),
            "Storage: 0.00 B / 0.00 B (0.00%) | Keys: 0 (soft-pinned: 0)"
        );
    }
}

//! Prometheus export of one master (CONTRACT §6 names).
//!
//! The master keeps plain atomics and computes its stats on demand; this module owns
//! an injected `Registry` (never the process-global one, so two masters in one test
//! process never mix) and refreshes it from the master at scrape time. Nothing here
//! sits on the request path.

use crate::master::{Master, MasterStats, SegmentInfo};
use parking_lot::Mutex;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Counters that are not per-operation requests: exported as `master_<name>_total`.
const STANDALONE: &[(&str, &str)] = &[
    ("failures", "requests of any kind that failed"),
    ("eviction_runs", "eviction rounds run"),
    ("evicted_objects", "objects evicted"),
    ("evicted_bytes", "bytes freed by eviction"),
    (
        "sync_evictions",
        "puts that found no space and evicted at once",
    ),
    (
        "limit_evictions",
        "objects evicted to keep the index within --index_memory_limit",
    ),
    (
        "expired_clients",
        "clients unmounted for missing heartbeats",
    ),
    (
        "resumed_segments",
        "segments whose owner came back with the same memory and got its objects back",
    ),
];

/// The registry and the handles registered in it.
pub struct MasterMetrics {
    registry: Registry,
    gauges: Vec<(IntGauge, StatFn)>,
    segment_allocated: IntGaugeVec,
    segment_capacity: IntGaugeVec,
    requests: IntCounterVec,
    request_failures: IntCounterVec,
    standalone: Vec<(&'static str, IntCounter)>,
    /// The SSD tiers' figures (`tier::metrics`).
    tier: crate::tier::metrics::TierExport,
    /// Per tenant (label `tenant`): bytes held, quota, writes in flight, refused puts.
    tenant_bytes: IntGaugeVec,
    tenant_quota: IntGaugeVec,
    tenant_inflight: IntGaugeVec,
    tenant_refused: IntCounterVec,
    tenant_disk_bytes: IntGaugeVec,
    /// Serialises refreshes: counters advance by the difference to the master's atomics,
    /// which two concurrent scrapes would otherwise both add.
    refresh: Mutex<()>,
}

impl std::fmt::Debug for MasterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterMetrics").finish_non_exhaustive()
    }
}

/// Reads one number out of the master's stats.
type StatFn = fn(&MasterStats) -> u64;

type GaugeDef = (&'static str, &'static str, StatFn);

const GAUGES: &[GaugeDef] = &[
    (
        "master_allocated_bytes",
        "bytes allocated to objects across all segments",
        |s| s.allocated_bytes,
    ),
    (
        "master_total_capacity_bytes",
        "bytes of all mounted segments",
        |s| s.total_capacity_bytes,
    ),
    ("master_key_count", "objects in the index", |s| s.key_count),
    (
        "master_index_memory_bytes",
        "estimated bytes of the object index (tables and keys)",
        |s| s.index_memory_bytes,
    ),
    (
        "master_index_memory_limit_bytes",
        "--index_memory_limit (0 = no limit)",
        |s| s.index_memory_limit_bytes,
    ),
    (
        "master_object_count_limit",
        "objects the index memory limit allows (0 = no limit)",
        |s| s.object_count_limit,
    ),
    (
        "master_soft_pin_key_count",
        "objects with a live soft pin",
        |s| s.soft_pin_key_count,
    ),
    (
        "master_active_clients",
        "clients with live heartbeats",
        |s| s.active_clients,
    ),
    ("master_segment_count", "mounted segments", |s| {
        s.segment_count
    }),
    (
        "master_view_id",
        "identity of this master's view; changes on restart or failover",
        |s| s.view_id,
    ),
];

impl MasterMetrics {
    /// Registers every metric in `registry` (a fresh one per master).
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let mut gauges = Vec::new();
        for (name, help, get) in GAUGES {
            let g = IntGauge::new(*name, *help)?;
            registry.register(Box::new(g.clone()))?;
            gauges.push((g, *get));
        }
        let vec_gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["segment"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let segment_allocated =
            vec_gauge("segment_allocated_bytes", "bytes allocated in a segment")?;
        let segment_capacity = vec_gauge("segment_capacity_bytes", "size of a segment")?;
        let vec_counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["op"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let requests = vec_counter(
            "master_requests_total",
            "requests by operation (batch items count one each)",
        )?;
        let request_failures = vec_counter(
            "master_request_failures_total",
            "failed requests by operation",
        )?;
        let mut standalone = Vec::new();
        for (name, help) in STANDALONE {
            let c = IntCounter::new(format!("master_{name}_total"), *help)?;
            registry.register(Box::new(c.clone()))?;
            standalone.push((*name, c));
        }
        let tier = crate::tier::metrics::TierExport::new(&registry)?;
        let tenant_gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["tenant"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let tenant_bytes = tenant_gauge(
            "master_tenant_bytes",
            "bytes a tenant's objects hold (memory replicas, complete and in flight)",
        )?;
        let tenant_quota = tenant_gauge(
            "master_tenant_quota_bytes",
            "a tenant's byte quota (absent without one)",
        )?;
        let tenant_disk_bytes = tenant_gauge(
            "master_tenant_disk_bytes",
            "bytes of a tenant's records on SSD tiers (not charged to its quota)",
        )?;
        let tenant_inflight = tenant_gauge(
            "master_tenant_inflight_puts",
            "a tenant's writes started and not yet ended or revoked",
        )?;
        let tenant_refused = IntCounterVec::new(
            Opts::new(
                "master_tenant_refused_puts_total",
                "puts refused with TENANT_QUOTA_EXCEEDED (quota or writes in flight)",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(tenant_refused.clone()))?;
        Ok(Self {
            tier,
            tenant_bytes,
            tenant_quota,
            tenant_inflight,
            tenant_refused,
            tenant_disk_bytes,
            registry,
            gauges,
            segment_allocated,
            segment_capacity,
            requests,
            request_failures,
            standalone,
            refresh: Mutex::new(()),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Brings every metric up to date with `master`.
    pub fn refresh(&self, master: &Master) {
        let _one_at_a_time = self.refresh.lock();
        let stats = master.stats();
        for (g, get) in &self.gauges {
            g.set(clamp(get(&stats)));
        }
        self.refresh_segments(&master.segments());
        self.tier.refresh(master.tiers());
        self.refresh_tenants(master);
        for (name, value) in master.counters().snapshot() {
            let counter = if let Some((_, c)) = self.standalone.iter().find(|(n, _)| *n == name) {
                c.clone()
            } else if let Some(op) = name.strip_suffix("_failures") {
                self.request_failures.with_label_values(&[op])
            } else {
                self.requests.with_label_values(&[name])
            };
            advance(&counter, value);
        }
    }

    fn refresh_tenants(&self, master: &Master) {
        self.tenant_quota.reset();
        for t in master.index.usage().all() {
            let l = [t.tenant.as_str()];
            self.tenant_bytes.with_label_values(&l).set(clamp(t.bytes));
            self.tenant_disk_bytes
                .with_label_values(&l)
                .set(clamp(t.disk_bytes));
            self.tenant_inflight
                .with_label_values(&l)
                .set(clamp(t.inflight));
            if let Some(q) = t.quota {
                self.tenant_quota.with_label_values(&l).set(clamp(q));
            }
            advance(&self.tenant_refused.with_label_values(&l), t.refused);
        }
    }

    fn refresh_segments(&self, segments: &[SegmentInfo]) {
        // Unmounted segments must disappear from the export, not linger at their last value.
        self.segment_allocated.reset();
        self.segment_capacity.reset();
        for s in segments {
            self.segment_allocated
                .with_label_values(&[s.name.as_str()])
                .set(clamp(s.used));
            self.segment_capacity
                .with_label_values(&[s.name.as_str()])
                .set(clamp(s.size));
        }
    }

    /// Refreshes from `master` and renders the Prometheus text format.
    pub fn render(&self, master: &Master) -> Result<String, prometheus::Error> {
        self.refresh(master);
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Moves a counter up to `target` (the master's atomics only grow).
fn advance(c: &IntCounter, target: u64) {
    let now = c.get();
    if target > now {
        c.inc_by(target - now);
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MasterConfig;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_masters_keep_separate_counts() {
        let (a, b) = (
            Master::new(MasterConfig::default()),
            Master::new(MasterConfig::default()),
        );
        let (ma, mb) = (
            MasterMetrics::new(Registry::new()).unwrap(),
            MasterMetrics::new(Registry::new()).unwrap(),
        );
        a.counters().exist.fetch_add(7, Ordering::Relaxed);
        a.counters().exist_failures.fetch_add(2, Ordering::Relaxed);
        a.counters().evicted_objects.fetch_add(3, Ordering::Relaxed);
        let ta = ma.render(&a).unwrap();
        let tb = mb.render(&b).unwrap();
        assert!(ta.contains("master_requests_total{op=\"exist\"} 7"), "{ta}");
        assert!(
            ta.contains("master_request_failures_total{op=\"exist\"} 2"),
            "{ta}"
        );
        assert!(ta.contains("master_evicted_objects_total 3"), "{ta}");
        assert!(tb.contains("master_requests_total{op=\"exist\"} 0"), "{tb}");
        // A second scrape does not double-count.
        a.counters().exist.fetch_add(1, Ordering::Relaxed);
        let ta = ma.render(&a).unwrap();
        assert!(ta.contains("master_requests_total{op=\"exist\"} 8"), "{ta}");
        for name in [
            "master_allocated_bytes",
            "master_total_capacity_bytes",
            "master_key_count",
            "master_soft_pin_key_count",
            "master_active_clients",
        ] {
            assert!(ta.contains(&format!("\n{name} 0")), "{name} missing: {ta}");
        }
    }
}

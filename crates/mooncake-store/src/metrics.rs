//! `GET /metrics`: a segment owner's Prometheus text, from a registry owned by it
//! (never the process-global one, so several stores in one process do not collide).
//! The store daemon's names start with `store_`; `mooncake_client` serves the same
//! figures as `client_*` (its own segment, transfers, heartbeats and location cache).
//!
//! Gauges are set and counters are brought up to the client's cumulative snapshots on
//! every scrape: the transfer engine and the heartbeat task keep plain atomics, this
//! module only mirrors them.

use mooncake_client::Client;
use parking_lot::Mutex;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct StoreMetrics {
    registry: Registry,
    segment_bytes: IntGauge,
    mounted: IntGauge,
    transfer_bytes: IntCounterVec,
    requests_failed: IntCounter,
    heartbeat_failures: IntCounter,
    /// The SSD tier's gauges and counters (0 without a tier).
    tier_gauges: Vec<(IntGauge, TierField)>,
    tier_counters: Vec<(IntCounter, TierField)>,
    /// The location cache of this store's client (the REST gets): a low hit rate
    /// means gets pay two round trips.
    cache_entries: IntGauge,
    cache_counters: Vec<(IntCounter, CacheField)>,
    /// Serialises scrapes so two of them never add the same delta twice.
    update: Mutex<()>,
}

type TierField = fn(&mooncake_client::TierStats) -> u64;
type CacheField = fn(&mooncake_client::LocationCacheStats) -> u64;

const CACHE_COUNTERS: &[(&str, &str, CacheField)] = &[
    (
        "location_cache_hits_total",
        "Gets served by a speculative read from a remembered location (one round trip)",
        |s| s.hits,
    ),
    (
        "location_cache_misses_total",
        "Gets with no remembered location, read after their lookup (two round trips)",
        |s| s.misses,
    ),
    (
        "location_cache_stale_total",
        "Speculative reads thrown away: the lookup named another allocation or none",
        |s| s.stale,
    ),
];

const TIER_GAUGES: &[(&str, &str, TierField)] = &[
    ("tier_objects", "Records in this store's SSD tier", |s| {
        s.objects
    }),
    ("tier_bytes", "Value bytes in this store's SSD tier", |s| {
        s.bytes
    }),
    (
        "tier_capacity_bytes",
        "Capacity of this store's SSD tier",
        |s| s.capacity,
    ),
];

const TIER_COUNTERS: &[(&str, &str, TierField)] = &[
    ("tier_reads_total", "Reads served from the SSD tier", |s| {
        s.reads
    }),
    (
        "tier_read_bytes_total",
        "Bytes read from the SSD tier",
        |s| s.read_bytes,
    ),
    (
        "tier_writes_total",
        "Records written to the SSD tier",
        |s| s.writes,
    ),
    (
        "tier_write_bytes_total",
        "Value bytes written to the SSD tier",
        |s| s.write_bytes,
    ),
    (
        "tier_direct_writes_total",
        "Records written around the page cache (O_DIRECT) while writeback lagged",
        |s| s.direct_writes,
    ),
    (
        "tier_write_failures_total",
        "Records the SSD tier failed to write",
        |s| s.write_failures,
    ),
    (
        "tier_checksum_failures_total",
        "Records found torn or changed on disk (never returned)",
        |s| s.checksum_failures,
    ),
    (
        "tier_demotions_total",
        "Objects written to the SSD tier on their way out of DRAM",
        |s| s.demotions,
    ),
    (
        "tier_promotions_total",
        "Objects copied from the SSD tier back into DRAM",
        |s| s.promotions,
    ),
];

/// Raises `c` to the cumulative value `v` (counters only go up).
fn catch_up(c: &IntCounter, v: u64) {
    let cur = c.get();
    if v > cur {
        c.inc_by(v - cur);
    }
}

impl StoreMetrics {
    /// The store daemon's metrics (`store_*`).
    pub fn new() -> Self {
        Self::with_prefix("store")
    }

    /// The same metrics named `<prefix>_*`.
    pub fn with_prefix(prefix: &str) -> Self {
        let n = |suffix: &str| format!("{prefix}_{suffix}");
        let registry = Registry::new();
        let segment_bytes =
            IntGauge::new(n("segment_bytes"), "Size of this store's global segment").unwrap();
        let mounted = IntGauge::new(
            n("mounted"),
            "1 while the segment is mounted at the master, else 0",
        )
        .unwrap();
        let transfer_bytes = IntCounterVec::new(
            Opts::new(
                n("transfer_bytes_total"),
                "Bytes peers moved through the transfer engine into (in) or out of (out) this store's segment",
            ),
            &["direction"],
        )
        .unwrap();
        let requests_failed = IntCounter::new(
            n("transfer_requests_failed_total"),
            "Transfer requests of this process that failed",
        )
        .unwrap();
        let heartbeat_failures = IntCounter::new(
            n("heartbeat_failures_total"),
            "Heartbeats that did not reach the master",
        )
        .unwrap();
        for c in [
            Box::new(segment_bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(mounted.clone()),
            Box::new(transfer_bytes.clone()),
            Box::new(requests_failed.clone()),
            Box::new(heartbeat_failures.clone()),
        ] {
            registry.register(c).expect("distinct metric names");
        }
        let tier_gauges: Vec<(IntGauge, TierField)> = TIER_GAUGES
            .iter()
            .map(|(name, help, f)| (IntGauge::new(n(name), *help).unwrap(), *f))
            .collect();
        let tier_counters: Vec<(IntCounter, TierField)> = TIER_COUNTERS
            .iter()
            .map(|(name, help, f)| (IntCounter::new(n(name), *help).unwrap(), *f))
            .collect();
        for (g, _) in &tier_gauges {
            registry
                .register(Box::new(g.clone()))
                .expect("distinct metric names");
        }
        for (c, _) in &tier_counters {
            registry
                .register(Box::new(c.clone()))
                .expect("distinct metric names");
        }
        let cache_entries = IntGauge::new(
            n("location_cache_entries"),
            "Object locations this store's client remembers",
        )
        .unwrap();
        registry
            .register(Box::new(cache_entries.clone()))
            .expect("distinct metric names");
        let cache_counters: Vec<(IntCounter, CacheField)> = CACHE_COUNTERS
            .iter()
            .map(|(name, help, f)| (IntCounter::new(n(name), *help).unwrap(), *f))
            .collect();
        for (c, _) in &cache_counters {
            registry
                .register(Box::new(c.clone()))
                .expect("distinct metric names");
        }
        // Both directions exist from the first scrape on, at 0.
        transfer_bytes.with_label_values(&["in"]);
        transfer_bytes.with_label_values(&["out"]);
        Self {
            registry,
            segment_bytes,
            mounted,
            transfer_bytes,
            requests_failed,
            heartbeat_failures,
            tier_gauges,
            tier_counters,
            cache_entries,
            cache_counters,
            update: Mutex::new(()),
        }
    }

    /// The Prometheus text exposition of this store's current state.
    pub fn render(&self, c: &Client) -> String {
        {
            let _g = self.update.lock();
            let size = c.segment_desc().map_or(0, |s| s.size);
            self.segment_bytes
                .set(i64::try_from(size).unwrap_or(i64::MAX));
            self.mounted.set(i64::from(c.is_mounted()));
            let t = c.transfer_metrics();
            catch_up(
                &self.transfer_bytes.with_label_values(&["in"]),
                t.bytes_served_in,
            );
            catch_up(
                &self.transfer_bytes.with_label_values(&["out"]),
                t.bytes_served_out,
            );
            catch_up(&self.requests_failed, t.requests_failed);
            catch_up(&self.heartbeat_failures, c.heartbeat_failures());
            let lc = c.location_cache_stats();
            self.cache_entries
                .set(i64::try_from(lc.entries).unwrap_or(i64::MAX));
            for (ctr, f) in &self.cache_counters {
                catch_up(ctr, f(&lc));
            }
            if let Some(s) = c.tier_stats() {
                for (g, f) in &self.tier_gauges {
                    g.set(i64::try_from(f(&s)).unwrap_or(i64::MAX));
                }
                for (ctr, f) in &self.tier_counters {
                    catch_up(ctr, f(&s));
                }
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

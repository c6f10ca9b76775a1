//! The tier's Prometheus export, registered in the master's registry: the control
//! plane's counters (`master_tier_*_total`), totals over all tiers, and per tier the
//! figures its owner reports (`tier_*{segment}`, since that owner process started).

use super::Tiers;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::atomic::{AtomicU64, Ordering};

type CounterFn = fn(&Tiers) -> &AtomicU64;

const COUNTERS: &[(&str, &str, CounterFn)] = &[
    (
        "persists_started",
        "writes to an SSD tier handed to owners",
        |t| &t.stats.persists_started,
    ),
    ("persisted", "objects written to an SSD tier", |t| {
        &t.stats.persisted
    }),
    ("persisted_bytes", "value bytes written to SSD tiers", |t| {
        &t.stats.persisted_bytes
    }),
    (
        "persist_failures",
        "writes to an SSD tier that failed (the object stayed in DRAM)",
        |t| &t.stats.persist_failures,
    ),
    (
        "skipped_full",
        "objects not written because their tier had no room left",
        |t| &t.stats.skipped_full,
    ),
    (
        "hits",
        "reads answered from an SSD tier (keys not in DRAM)",
        |t| &t.stats.disk_hits,
    ),
    (
        "hit_bytes",
        "value bytes of reads answered from an SSD tier",
        |t| &t.stats.disk_hit_bytes,
    ),
    (
        "evictions",
        "records an SSD tier evicted to make room",
        |t| &t.stats.disk_evictions,
    ),
    (
        "demotions",
        "objects written to an SSD tier on their way out of DRAM",
        |t| &t.stats.demotions,
    ),
    (
        "demoting_hits",
        "reads of a key being demoted, answered with the memory replica its owner is writing from",
        |t| &t.stats.demoting_hits,
    ),
    (
        "evict_drops",
        "objects evicted from DRAM without a demotion under --offload_on_evict (their tier was full, or their owner has none)",
        |t| &t.stats.evict_drops,
    ),
    (
        "promotions",
        "objects copied from an SSD tier back into DRAM",
        |t| &t.stats.promotions,
    ),
    (
        "promotions_skipped",
        "reads from an SSD tier that started no promotion (too many in flight)",
        |t| &t.stats.promotions_skipped,
    ),
    (
        "promotion_failures",
        "promotions that ended without a memory replica (no free DRAM in the owner's segment, the key written meanwhile, a failed read)",
        |t| &t.stats.promotion_failures,
    ),
    (
        "discards",
        "records owners were told to discard (removed, replaced, evicted)",
        |t| &t.stats.discards,
    ),
];

pub struct TierExport {
    counters: Vec<(IntCounter, CounterFn)>,
    capacity: IntGauge,
    used: IntGauge,
    objects: IntGauge,
    demoting: IntGauge,
    promoting: IntGauge,
    per_tier: Vec<(&'static str, IntGaugeVec)>,
}

const PER_TIER: &[(&str, &str)] = &[
    (
        "tier_capacity_bytes",
        "capacity of a segment owner's SSD tier",
    ),
    (
        "tier_used_bytes",
        "bytes allocated in a segment owner's SSD tier",
    ),
    (
        "tier_objects",
        "objects written to a segment owner's SSD tier",
    ),
    (
        "tier_reads",
        "reads the owner served from its tier (since it started)",
    ),
    (
        "tier_read_bytes",
        "bytes the owner read from its tier (since it started)",
    ),
    ("tier_writes", "records the owner wrote (since it started)"),
    (
        "tier_write_bytes",
        "value bytes the owner wrote (since it started)",
    ),
    (
        "tier_write_failures",
        "records the owner failed to write (since it started)",
    ),
    (
        "tier_checksum_failures",
        "records found torn or changed on disk, never returned (since the owner started)",
    ),
    (
        "tier_demotions",
        "objects the owner wrote on their way out of DRAM (since it started)",
    ),
    (
        "tier_promotions",
        "objects the owner copied from its tier back into DRAM (since it started)",
    ),
];

impl TierExport {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let mut counters = Vec::new();
        for (name, help, get) in COUNTERS {
            let c = IntCounter::new(format!("master_tier_{name}_total"), *help)?;
            registry.register(Box::new(c.clone()))?;
            counters.push((c, *get));
        }
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let mut per_tier = Vec::new();
        for (name, help) in PER_TIER {
            let g = IntGaugeVec::new(Opts::new(*name, *help), &["segment"])?;
            registry.register(Box::new(g.clone()))?;
            per_tier.push((*name, g));
        }
        Ok(Self {
            counters,
            capacity: gauge("master_tier_capacity_bytes", "capacity of all SSD tiers")?,
            used: gauge("master_tier_used_bytes", "bytes allocated in all SSD tiers")?,
            objects: gauge("master_tier_objects", "objects written to SSD tiers")?,
            demoting: gauge(
                "master_tier_demoting_bytes",
                "bytes of DRAM being written to SSD tiers by demotions (freed when they end)",
            )?,
            promoting: gauge(
                "master_tier_promotions_in_flight",
                "promotions asked for or running",
            )?,
            per_tier,
        })
    }

    pub fn refresh(&self, tiers: &Tiers) {
        for (c, get) in &self.counters {
            let target = get(tiers).load(Ordering::Relaxed);
            let now = c.get();
            if target > now {
                c.inc_by(target - now);
            }
        }
        let views = tiers.views();
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.capacity.set(n(views.iter().map(|v| v.capacity).sum()));
        self.used.set(n(views.iter().map(|v| v.used).sum()));
        self.objects.set(n(views.iter().map(|v| v.objects).sum()));
        self.demoting.set(n(tiers.demoting_bytes()));
        self.promoting.set(n(tiers.promoting() as u64));
        for (name, g) in &self.per_tier {
            g.reset();
            for v in &views {
                let x = match *name {
                    "tier_capacity_bytes" => v.capacity,
                    "tier_used_bytes" => v.used,
                    "tier_objects" => v.objects,
                    "tier_reads" => v.reads,
                    "tier_read_bytes" => v.read_bytes,
                    "tier_writes" => v.writes,
                    "tier_write_bytes" => v.write_bytes,
                    "tier_write_failures" => v.write_failures,
                    "tier_demotions" => v.demotions,
                    "tier_promotions" => v.promotions,
                    _ => v.checksum_failures,
                };
                g.with_label_values(&[v.name.as_str()]).set(n(x));
            }
        }
    }
}

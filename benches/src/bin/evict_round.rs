//! How long one eviction round takes on a large index: fills an in-process master
//! with N objects (1 KiB each, segments exactly that large in all, so usage is above the
//! high watermark), reads a tenth of them (so both of the default policy's classes
//! are populated), then times `run_eviction`, which frees `eviction_ratio` (5%) of
//! the pool.
//!
//! ```text
//! cargo run --release -p mooncake-benches --bin evict_round -- [objects, default 10000000] [lru|2q]
//! ```

use mooncake_common::SegmentDesc;
use mooncake_master::config::MasterConfig;
use mooncake_master::eviction::PolicyKind;
use mooncake_master::index::IndexMemoryLimit;
use mooncake_master::master::{Master, WriteKind};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|v| v.parse().expect("objects: a number"))
        .unwrap_or(10_000_000);
    let policy = args
        .next()
        .map(|v| PolicyKind::parse("policy", &v).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_default();
    let size = 1024u64;
    let m = Master::new(MasterConfig {
        eviction_policy: policy,
        index_memory_limit: IndexMemoryLimit::Unlimited,
        default_kv_lease_ttl: std::time::Duration::ZERO,
        ..Default::default()
    });
    // A segment's allocator holds at most 2^21 objects: enough segments for n.
    let segments = n.div_ceil(1 << 20).max(1);
    for i in 0..segments {
        let desc = SegmentDesc {
            name: format!("pool-{i}"),
            owner: format!("store-{i}"),
            size: n.div_ceil(segments) * size,
            base: 0x1000_0000 + (i << 40),
            protocol: "tcp".into(),
            transport_endpoint: "127.0.0.1:1".into(),
            ..Default::default()
        };
        m.mount_segment(&format!("store-{i}"), desc).expect("mount");
    }
    let t0 = Instant::now();
    let rc = Default::default();
    let batch = 1000u64;
    for b in 0..n.div_ceil(batch) {
        let keys: Vec<String> = (b * batch..((b + 1) * batch).min(n))
            .map(|i| format!("key-{i:016}"))
            .collect();
        let sizes = vec![size; keys.len()];
        let started = m.batch_write_start(WriteKind::Put, "c", &keys, &sizes, &rc);
        let ids: Vec<u64> = started
            .iter()
            .map(|r| r.as_ref().expect("put").put_id)
            .collect();
        m.batch_write_finish("c", &keys, &ids, false);
        if b % 10 == 0 {
            let read: Vec<String> = keys.iter().step_by(10).cloned().collect();
            m.batch_get_replica_list(&read);
        }
    }
    let filled = t0.elapsed();
    let s = m.stats();
    println!(
        "{} objects ({} policy) filled in {:.1} s; index {} B/object",
        s.key_count,
        policy.as_str(),
        filled.as_secs_f64(),
        s.index_memory_bytes / s.key_count.max(1)
    );
    for round in 0..3 {
        // Refill what the last round freed, so each round starts above the watermark.
        let t = Instant::now();
        let r = m.run_eviction();
        println!(
            "round {round}: evicted {} objects ({} MiB) in {:.1} ms",
            r.objects,
            r.bytes >> 20,
            t.elapsed().as_secs_f64() * 1e3
        );
        let keys: Vec<String> = (0..r.objects)
            .map(|i| format!("new-{round}-{i:016}"))
            .collect();
        for chunk in keys.chunks(batch as usize) {
            let sizes = vec![size; chunk.len()];
            let started = m.batch_write_start(WriteKind::Put, "c", chunk, &sizes, &rc);
            let (ok, ids): (Vec<&String>, Vec<u64>) = chunk
                .iter()
                .zip(&started)
                .filter_map(|(k, r)| r.as_ref().ok().map(|w| (k, w.put_id)))
                .unzip();
            m.batch_write_finish("c", &ok, &ids, false);
        }
    }
}

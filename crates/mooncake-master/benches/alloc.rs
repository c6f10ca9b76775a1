//! Allocation micro-benchmarks (goal: allocate + free median <= 200 ns).
//!
//! `alloc_free/segment` is one allocate and one free through `Segment` (the
//! allocator plus its lock and the cached numbers placement reads), on a 3.2 GB
//! segment that already holds 10k live allocations, so the free lists are not trivial.
//! `alloc_free/raw` is the bare `SegmentAllocator`. `put_start_end` is a whole
//! master-side put (index, placement over 8 segments, allocate, end, remove).

use criterion::{criterion_group, Criterion};
use mooncake_common::{ReplicateConfig, SegmentDesc};
use mooncake_master::alloc::SegmentAllocator;
use mooncake_master::config::MasterConfig;
use mooncake_master::segments::{Mounted, SegmentRegistry};
use mooncake_master::Master;
use std::hint::black_box;

const SEGMENT: u64 = 3_355_443_200;

fn desc(name: &str) -> SegmentDesc {
    SegmentDesc {
        name: name.into(),
        owner: name.into(),
        size: SEGMENT,
        ..Default::default()
    }
}

fn alloc_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free");
    let mut raw = SegmentAllocator::new(SEGMENT).unwrap();
    let _live: Vec<_> = (0..10_000)
        .map(|i| raw.allocate(4096 + i * 64).unwrap())
        .collect();
    g.bench_function("raw", |b| {
        b.iter(|| {
            let h = raw.allocate(black_box(1 << 20)).unwrap();
            raw.free(h, 1 << 20);
        })
    });
    let reg = SegmentRegistry::default();
    let Ok(Mounted::New(seg)) = reg.mount("c", desc("a:1")) else {
        panic!("mount")
    };
    let _live: Vec<_> = (0..10_000)
        .map(|i| seg.allocate(4096 + i * 64).unwrap())
        .collect();
    g.bench_function("segment", |b| {
        b.iter(|| {
            let h = seg.allocate(black_box(1 << 20)).unwrap();
            seg.free(h, 1 << 20);
        })
    });
    g.finish();
}

fn put_start_end(c: &mut Criterion) {
    let m = Master::new(MasterConfig::default());
    let rc = ReplicateConfig::default();
    for i in 0..8 {
        assert_eq!(m.mount_segment("c", desc(&format!("s{i}:1"))), Ok(()));
    }
    c.bench_function("put_start_end_remove", |b| {
        b.iter(|| {
            let r = m
                .put_start("c", black_box("bench-key-0000000001"), 1 << 20, &rc)
                .unwrap();
            m.write_end("c", "bench-key-0000000001", r.put_id).unwrap();
            m.remove("bench-key-0000000001", true).unwrap();
        })
    });
}

fn batch_exist(c: &mut Criterion) {
    let m = Master::new(MasterConfig::default());
    let rc = ReplicateConfig::default();
    assert_eq!(m.mount_segment("c", desc("s0:1")), Ok(()));
    let keys: Vec<String> = (0..1024).map(|i| format!("sglang-page-{i:08x}")).collect();
    for k in &keys {
        let r = m.put_start("c", k, 4096, &rc).unwrap();
        m.write_end("c", k, r.put_id).unwrap();
    }
    c.bench_function("batch_exist_1024_in_process", |b| {
        b.iter(|| black_box(m.batch_exist(black_box(&keys))))
    });
}

/// Resident set size of this process, in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Not a timing: the index's memory per object (1M complete 4 KiB objects with
/// 20-byte keys, one replica each), printed before the criterion runs. Run only
/// when `MC_MEMORY_REPORT=1` (it allocates a few hundred MB).
fn memory_report() {
    if std::env::var("MC_MEMORY_REPORT").as_deref() != Ok("1") {
        return;
    }
    const N: u64 = 1_000_000;
    let m = Master::new(MasterConfig::default());
    let rc = ReplicateConfig::default();
    let mut d = desc("mem:1");
    d.size = 64 << 30;
    assert_eq!(m.mount_segment("c", d), Ok(()));
    let before = rss_bytes();
    for i in 0..N {
        let key = format!("key-{i:015}");
        let r = m.put_start("c", &key, 4096, &rc).unwrap();
        assert_eq!(m.write_end("c", &key, r.put_id), Ok(()));
    }
    let after = rss_bytes();
    println!(
        "memory: {} objects, {:.1} bytes/object (RSS growth after mount; allocator nodes preallocated at mount)",
        m.stats().key_count,
        (after - before) as f64 / N as f64
    );
}

criterion_group!(benches, alloc_free, put_start_end, batch_exist);

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

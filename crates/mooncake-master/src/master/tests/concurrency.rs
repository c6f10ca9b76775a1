//! Real threads hammering one master: afterwards no two live replicas overlap and the
//! allocators account for exactly the live replicas, even while a segment is
//! unmounted and remounted underneath.

use super::*;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

#[test]
fn concurrent_writers_keep_space_accounting_exact() {
    let m = master(MasterConfig::default());
    for s in ["a:1", "b:1", "c:1"] {
        mount(&m, s, s, 4 << 20);
    }
    std::thread::scope(|scope| {
        // Meanwhile one store keeps leaving and coming back (races put starts).
        let mm = &m;
        scope.spawn(move || {
            for _ in 0..50 {
                assert!(mm.unmount_segment("c:1", "c:1").is_ok());
                mount(mm, "c:1", "c:1", 4 << 20);
                std::thread::yield_now();
            }
        });
        for t in 0..4u64 {
            let m = &m;
            scope.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                let mut open: Vec<(String, u64)> = Vec::new();
                for _ in 0..3000 {
                    let key = format!("k{}", rng.random_range(0..200));
                    match rng.random_range(0..6) {
                        0 | 1 => {
                            let r =
                                m.put_start("c", &key, rng.random_range(1..40_000), &replicas(2));
                            if let Ok(r) = r {
                                open.push((key, r.put_id));
                            }
                        }
                        2 => {
                            let r =
                                m.upsert_start("c", &key, rng.random_range(1..40_000), &no_rc());
                            if let Ok(r) = r {
                                open.push((key, r.put_id));
                            }
                        }
                        3 if !open.is_empty() => {
                            let (k, id) = open.swap_remove(rng.random_range(0..open.len()));
                            let _ = m.write_end("c", &k, id);
                        }
                        4 if !open.is_empty() => {
                            let (k, id) = open.swap_remove(rng.random_range(0..open.len()));
                            let _ = m.write_revoke("c", &k, id);
                        }
                        _ => {
                            let _ = m.remove(&key, true);
                        }
                    }
                }
                for (k, id) in open {
                    let _ = m.write_end("c", &k, id);
                }
            });
        }
    });
    // Every object is complete now; nothing was leased, so nothing is deferred.
    let mut by_seg: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    let mut live_units = 0u64;
    for k in m.all_keys() {
        let info = m.query_key(&k).unwrap();
        assert!(info.complete, "{k} left in progress");
        for r in info.replicas {
            live_units += r.size.div_ceil(64) * 64;
            by_seg
                .entry(r.segment)
                .or_default()
                .push((r.offset, r.offset + r.size));
        }
    }
    for (seg, mut ranges) in by_seg {
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlap in {seg}: {:?}", w);
        }
    }
    assert_eq!(m.stats().allocated_bytes, live_units);
}

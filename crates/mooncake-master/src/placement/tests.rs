//! `place` against a naive oracle over random inputs (seeded, so failures reproduce).

use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn random_views(rng: &mut StdRng) -> Vec<SegmentView> {
    let n = rng.random_range(0..12u32);
    (0..n)
        .map(|id| {
            let capacity = rng.random_range(1..100u64) * 1000;
            let free = rng.random_range(0..=capacity);
            SegmentView {
                id: id * 3 + 1,
                owner: rng.random_range(0..6),
                capacity,
                free,
                largest_free: rng.random_range(0..=free),
            }
        })
        .collect()
}

/// The obvious, slow way: walk preferred in order, then repeatedly take the best (or,
/// for random, check only the invariants).
fn oracle_preferred(views: &[SegmentView], req: &PlacementRequest<'_>) -> Vec<u32> {
    let mut out = Vec::new();
    let mut owners = req.used_owners.to_vec();
    for p in req.preferred {
        if out.len() == req.replicas.max(1) {
            break;
        }
        for v in views {
            if v.id == *p
                && v.largest_free >= req.size
                && !owners.contains(&v.owner)
                && !req.excluded.contains(&v.id)
                && !out.contains(&v.id)
            {
                out.push(v.id);
                owners.push(v.owner);
            }
        }
    }
    out
}

fn oracle_free_ratio(views: &[SegmentView], req: &PlacementRequest<'_>) -> Vec<u32> {
    let mut out = oracle_preferred(views, req);
    let mut owners: Vec<u32> = req.used_owners.to_vec();
    for id in &out {
        owners.push(views.iter().find(|v| v.id == *id).unwrap().owner);
    }
    while out.len() < req.replicas.max(1) {
        let mut best: Option<&SegmentView> = None;
        for v in views {
            let ok = v.largest_free >= req.size
                && !owners.contains(&v.owner)
                && !req.excluded.contains(&v.id)
                && !out.contains(&v.id);
            if !ok {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let (rv, rb) = (
                        v.free as f64 / v.capacity as f64,
                        b.free as f64 / b.capacity as f64,
                    );
                    rv > rb || (rv == rb && v.id < b.id)
                }
            };
            if better {
                best = Some(v);
            }
        }
        match best {
            Some(b) => {
                out.push(b.id);
                owners.push(b.owner);
            }
            None => break,
        }
    }
    out
}

fn distinct_eligible_owners(views: &[SegmentView], req: &PlacementRequest<'_>) -> usize {
    let mut owners: Vec<u32> = views
        .iter()
        .filter(|v| {
            v.largest_free >= req.size
                && !req.used_owners.contains(&v.owner)
                && !req.excluded.contains(&v.id)
        })
        .map(|v| v.owner)
        .collect();
    owners.sort();
    owners.dedup();
    owners.len()
}

#[test]
fn matches_the_oracle_on_random_inputs() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for case in 0..20_000 {
        let views = random_views(&mut rng);
        let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
        let pick = |rng: &mut StdRng, n: usize| -> Vec<u32> {
            (0..n)
                .map(|_| {
                    if ids.is_empty() || rng.random_bool(0.2) {
                        rng.random_range(0..40) // unknown ids are ignored
                    } else {
                        ids[rng.random_range(0..ids.len())]
                    }
                })
                .collect()
        };
        let np = rng.random_range(0..3);
        let preferred = pick(&mut rng, np);
        let ne = rng.random_range(0..2);
        let excluded = pick(&mut rng, ne);
        let used_owners: Vec<u32> = (0..rng.random_range(0..2))
            .map(|_| rng.random_range(0..6))
            .collect();
        let strategy = if rng.random_bool(0.5) {
            AllocationStrategy::Random
        } else {
            AllocationStrategy::FreeRatioFirst
        };
        let req = PlacementRequest {
            size: rng.random_range(1..60_000),
            replicas: rng.random_range(0..5),
            preferred: &preferred,
            used_owners: &used_owners,
            excluded: &excluded,
            strategy,
        };
        let got = place(&views, &req, &mut rng);

        // Invariants every strategy keeps.
        let mut owners = used_owners.clone();
        for id in &got {
            let v = views.iter().find(|v| v.id == *id).expect("known segment");
            assert!(v.largest_free >= req.size, "case {case}: {id} does not fit");
            assert!(!excluded.contains(id), "case {case}: excluded {id} chosen");
            assert!(!owners.contains(&v.owner), "case {case}: owner reused");
            owners.push(v.owner);
        }
        let expect_n = req
            .replicas
            .max(1)
            .min(distinct_eligible_owners(&views, &req));
        assert_eq!(got.len(), expect_n, "case {case}: best-effort count");
        let pref = oracle_preferred(&views, &req);
        assert_eq!(
            &got[..pref.len()],
            &pref[..],
            "case {case}: preferred first"
        );
        if strategy == AllocationStrategy::FreeRatioFirst {
            assert_eq!(got, oracle_free_ratio(&views, &req), "case {case}");
        }
    }
}

#[test]
fn random_strategy_spreads_over_all_fitting_segments() {
    let views: Vec<SegmentView> = (0..5)
        .map(|id| SegmentView {
            id,
            owner: id,
            capacity: 100,
            free: 100,
            largest_free: 100,
        })
        .collect();
    let req = PlacementRequest {
        size: 10,
        replicas: 1,
        preferred: &[],
        used_owners: &[],
        excluded: &[],
        strategy: AllocationStrategy::Random,
    };
    let mut rng = StdRng::seed_from_u64(1);
    let mut hits = [0u32; 5];
    for _ in 0..5000 {
        hits[place(&views, &req, &mut rng)[0] as usize] += 1;
    }
    for h in hits {
        assert!(h > 700, "uneven random placement: {hits:?}");
    }
}

#[test]
fn nothing_fits_gives_nothing() {
    let views = [SegmentView {
        id: 0,
        owner: 0,
        capacity: 100,
        free: 50,
        largest_free: 50,
    }];
    let req = PlacementRequest {
        size: 51,
        replicas: 2,
        preferred: &[0],
        used_owners: &[],
        excluded: &[],
        strategy: AllocationStrategy::FreeRatioFirst,
    };
    assert!(place(&views, &req, &mut StdRng::seed_from_u64(0)).is_empty());
}

#[test]
fn random_strategy_is_uniform_among_the_fitting_few_of_many() {
    // 1,000 segments, only 4 fit (drawing mostly misses, then the full scan decides),
    // and two replicas on distinct owners: every fitting segment is chosen about as
    // often, and never one that does not fit.
    let views: Vec<SegmentView> = (0..1000)
        .map(|id| SegmentView {
            id,
            owner: id,
            capacity: 100,
            free: 100,
            largest_free: if id % 250 == 7 { 100 } else { 5 },
        })
        .collect();
    let req = PlacementRequest {
        size: 10,
        replicas: 2,
        preferred: &[],
        used_owners: &[],
        excluded: &[],
        strategy: AllocationStrategy::Random,
    };
    let mut rng = StdRng::seed_from_u64(7);
    let mut hits = std::collections::HashMap::<u32, u32>::new();
    for _ in 0..4000 {
        let got = place(&views, &req, &mut rng);
        assert_eq!(got.len(), 2);
        assert_ne!(got[0], got[1]);
        for id in got {
            *hits.entry(id).or_default() += 1;
        }
    }
    assert_eq!(hits.len(), 4, "{hits:?}");
    for h in hits.values() {
        assert!((1700..2300).contains(h), "uneven: {hits:?}");
    }
}

#[test]
fn free_ratio_first_takes_the_best_owners_in_order() {
    // Owners 0..5 with two segments each; the best ratio per owner decides.
    let views: Vec<SegmentView> = (0..10)
        .map(|id| SegmentView {
            id,
            owner: id / 2,
            capacity: 100,
            free: [10, 90, 50, 50, 95, 20, 0, 60, 90, 30][id as usize],
            largest_free: 100,
        })
        .collect();
    let req = PlacementRequest {
        size: 1,
        replicas: 3,
        preferred: &[],
        used_owners: &[],
        excluded: &[4],
        strategy: AllocationStrategy::FreeRatioFirst,
    };
    let got = place(&views, &req, &mut StdRng::seed_from_u64(0));
    assert_eq!(got, vec![1, 8, 7]);
}

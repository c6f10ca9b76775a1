//! Replica placement: a pure function from a snapshot of the segments and a request to
//! the segments that should hold the replicas. No locks, no clock: the master takes the
//! snapshot, calls [`place`], then allocates; if an allocation races and fails it calls
//! again with that segment excluded. Pure so that it can be checked against a naive
//! oracle over random inputs (see the tests).

use crate::config::AllocationStrategy;
use rand::seq::SliceRandom;
use rand::Rng;

/// What placement needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentView {
    pub id: u32,
    /// Interned owner identity: replicas go to distinct owners.
    pub owner: u32,
    pub capacity: u64,
    pub free: u64,
    /// A lower bound of the largest contiguous free range.
    pub largest_free: u64,
}

impl SegmentView {
    fn fits(&self, size: u64) -> bool {
        self.largest_free >= size
    }

    fn free_ratio(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.free as f64 / self.capacity as f64
        }
    }
}

/// One placement question.
#[derive(Debug, Clone, Copy)]
pub struct PlacementRequest<'a> {
    pub size: u64,
    /// Wanted replica count (best effort; >= 1).
    pub replicas: usize,
    /// Segment ids tried first, in order.
    pub preferred: &'a [u32],
    /// Owners that already hold a replica of this object (none may be chosen again).
    pub used_owners: &'a [u32],
    /// Segments that must not be chosen (e.g. an allocation just failed there).
    pub excluded: &'a [u32],
    pub strategy: AllocationStrategy,
}

/// Chooses up to `req.replicas` segments that fit `req.size`, on distinct owners none
/// of which is in `used_owners`: fitting preferred segments first (in the given
/// order), then the rest by strategy (`Random`: uniformly at random, as from a
/// shuffle; `FreeRatioFirst`: highest free ratio first, ties by id). Returns fewer (possibly
/// zero) when not enough distinct owners have room.
pub fn place<R: Rng + ?Sized>(
    views: &[SegmentView],
    req: &PlacementRequest<'_>,
    rng: &mut R,
) -> Vec<u32> {
    let want = req.replicas.max(1);
    let mut chosen: Vec<u32> = Vec::with_capacity(want);
    let mut owners: Vec<u32> = req.used_owners.to_vec();
    let eligible = |v: &SegmentView, owners: &[u32], chosen: &[u32]| {
        v.fits(req.size)
            && !owners.contains(&v.owner)
            && !req.excluded.contains(&v.id)
            && !chosen.contains(&v.id)
    };
    for pid in req.preferred {
        if chosen.len() == want {
            return chosen;
        }
        if let Some(v) = views.iter().find(|v| v.id == *pid) {
            if eligible(v, &owners, &chosen) {
                chosen.push(v.id);
                owners.push(v.owner);
            }
        }
    }
    if chosen.len() == want {
        return chosen;
    }
    match req.strategy {
        AllocationStrategy::Random => {
            // Uniform draws over all segments, keeping the eligible ones: each pick is
            // uniform among the segments still eligible, as a shuffle's prefix would
            // be, without walking every segment (1,000 segments made the walk most of
            // a put's CPU). Few draws: when most segments are ineligible, the full
            // filter and shuffle below finishes the job.
            let mut draws = 4 * (want - chosen.len()) + 8;
            while chosen.len() < want && draws > 0 && !views.is_empty() {
                draws -= 1;
                let v = &views[rng.random_range(0..views.len())];
                if eligible(v, &owners, &chosen) {
                    chosen.push(v.id);
                    owners.push(v.owner);
                }
            }
            if chosen.len() < want {
                let mut rest: Vec<&SegmentView> = views
                    .iter()
                    .filter(|v| eligible(v, &owners, &chosen))
                    .collect();
                rest.shuffle(rng);
                for v in rest {
                    if chosen.len() == want {
                        break;
                    }
                    if !owners.contains(&v.owner) {
                        chosen.push(v.id);
                        owners.push(v.owner);
                    }
                }
            }
        }
        // Highest free ratio first, ties by id: one pass per replica for the best
        // eligible segment (the same order as sorting them all, without the sort).
        AllocationStrategy::FreeRatioFirst => {
            while chosen.len() < want {
                let mut best: Option<&SegmentView> = None;
                for v in views {
                    if !eligible(v, &owners, &chosen) {
                        continue;
                    }
                    let better = best.is_none_or(|b| {
                        v.free_ratio()
                            .total_cmp(&b.free_ratio())
                            .then(b.id.cmp(&v.id))
                            .is_gt()
                    });
                    if better {
                        best = Some(v);
                    }
                }
                let Some(b) = best else { break };
                chosen.push(b.id);
                owners.push(b.owner);
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests;

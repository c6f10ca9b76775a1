//! Belady's MIN on the block stream, as the upper bound beside each policy: every
//! block of a request is referenced in order; on a miss the block whose next use lies
//! furthest in the future leaves (the new block itself, if it is that one). Hits are
//! counted as the replay counts them, the longest present prefix of each request.

use std::collections::{BTreeSet, HashMap};

/// Prefix hit ratio of an ideal cache of `capacity` blocks (`usize::MAX`: unlimited).
pub fn hit_ratio(requests: &[Vec<u64>], capacity: usize) -> f64 {
    let flat: Vec<u64> = requests.iter().flatten().copied().collect();
    // next[i]: where the block referenced at i is referenced again (usize::MAX: never).
    let mut next = vec![usize::MAX; flat.len()];
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for i in (0..flat.len()).rev() {
        if let Some(j) = seen.insert(flat[i], i) {
            next[i] = j;
        }
    }
    drop(seen);
    // Cached blocks by next use; the block -> its next use.
    let mut by_next: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut cached: HashMap<u64, usize> = HashMap::new();
    let (mut hits, mut at) = (0u64, 0usize);
    for r in requests {
        let mut prefix = true;
        for &b in r {
            let nu = next[at];
            at += 1;
            match cached.get_mut(&b) {
                Some(old) => {
                    if prefix {
                        hits += 1;
                    }
                    by_next.remove(&(*old, b));
                    *old = nu;
                    by_next.insert((nu, b));
                }
                None => {
                    prefix = false;
                    if cached.len() >= capacity {
                        let &(far, victim) = by_next.last().expect("full cache");
                        if far <= nu {
                            continue; // the new block is the one used last: bypass
                        }
                        by_next.remove(&(far, victim));
                        cached.remove(&victim);
                    }
                    cached.insert(b, nu);
                    by_next.insert((nu, b));
                }
            }
        }
    }
    hits as f64 / flat.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_keeps_what_comes_back_soonest() {
        // Capacity 2: a, b, then c (never again) must bypass to keep a and b.
        let reqs = vec![vec![1, 2], vec![3], vec![1, 2]];
        assert_eq!(hit_ratio(&reqs, 2), 2.0 / 5.0);
        assert_eq!(hit_ratio(&reqs, usize::MAX), 2.0 / 5.0);
        // Only a prefix counts: block 2 present after a miss on 9 is no hit.
        let reqs = vec![vec![1, 2], vec![9, 2]];
        assert_eq!(hit_ratio(&reqs, 8), 0.0);
    }
}

//! An object's replicas. Almost every object has exactly one, so it is kept inline
//! (12 bytes, no heap block); several live behind one thin pointer so that the type
//! stays 16 bytes, the size of the boxed slice it replaces (saving the slice's heap
//! block, 32 bytes with the allocator's rounding, per single-replica object).

use super::Replica;
use std::ops::Deref;

#[derive(Clone, Default)]
pub enum Replicas {
    #[default]
    None,
    One(Replica),
    /// Two or more (never fewer: the constructors normalise).
    Many(Box<Box<[Replica]>>),
}

impl Deref for Replicas {
    type Target = [Replica];

    fn deref(&self) -> &[Replica] {
        match self {
            Replicas::None => &[],
            Replicas::One(r) => std::slice::from_ref(r),
            Replicas::Many(b) => b,
        }
    }
}

impl From<Vec<Replica>> for Replicas {
    fn from(v: Vec<Replica>) -> Self {
        match v.len() {
            0 => Replicas::None,
            1 => Replicas::One(v[0]),
            _ => Replicas::Many(Box::new(v.into_boxed_slice())),
        }
    }
}

impl From<Box<[Replica]>> for Replicas {
    fn from(b: Box<[Replica]>) -> Self {
        match b.len() {
            0 => Replicas::None,
            1 => Replicas::One(b[0]),
            _ => Replicas::Many(Box::new(b)),
        }
    }
}

impl FromIterator<Replica> for Replicas {
    fn from_iter<I: IntoIterator<Item = Replica>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::SegmentAllocator;

    fn reps(n: u32) -> Vec<Replica> {
        let mut a = SegmentAllocator::new(1 << 20).unwrap();
        (0..n)
            .map(|seg| Replica {
                seg,
                handle: a.allocate(4096).unwrap(),
            })
            .collect()
    }

    #[test]
    fn one_replica_is_inline_and_the_type_stays_16_bytes() {
        assert_eq!(std::mem::size_of::<Replicas>(), 16);
        assert!(matches!(Replicas::from(reps(1)), Replicas::One(_)));
        assert!(matches!(Replicas::from(reps(0)), Replicas::None));
        assert!(matches!(Replicas::from(reps(3)), Replicas::Many(_)));
    }

    #[test]
    fn every_form_reads_back_as_the_same_slice() {
        for n in 0..4 {
            let v = reps(n);
            let segs = |r: &[Replica]| r.iter().map(|r| r.seg).collect::<Vec<_>>();
            let from_vec = Replicas::from(v.clone());
            let from_box = Replicas::from(v.clone().into_boxed_slice());
            let collected: Replicas = v.iter().copied().collect();
            for r in [&from_vec, &from_box, &collected, &from_vec.clone()] {
                assert_eq!(r.len(), n as usize);
                assert_eq!(r.is_empty(), n == 0);
                assert_eq!(segs(r), segs(&v));
            }
        }
        // Filtering a pair down to one goes inline.
        let two: Replicas = reps(2).into();
        let one: Replicas = two.iter().copied().filter(|r| r.seg == 1).collect();
        assert!(matches!(one, Replicas::One(r) if r.seg == 1));
        assert_eq!(format!("{one:?}").matches("Replica(").count(), 1);
    }
}

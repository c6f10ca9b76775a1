//! What the index occupies, for the `master_index_memory_bytes` gauge: the shard
//! tables exactly (hashbrown allocates one block of buckets, each an entry plus one
//! control byte) and every heap block an entry owns at the size the allocator rounds
//! it to (mimalloc's size classes: 8-byte steps up to 64 bytes, then four classes per
//! power of two). It counts the index only, not segment allocator nodes or buffers.

use super::{Object, Replica, Replicas, ShardMap as Map};

/// One map entry: the boxed key's and the boxed object's pointers.
const ENTRY: usize = std::mem::size_of::<(Box<str>, Box<Object>)>();

/// The block an allocation of `n` bytes really takes.
pub fn heap_block(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    if n <= 64 {
        return n.div_ceil(8) * 8;
    }
    // Four size classes per power of two above 64 bytes.
    let step = (n.next_power_of_two() / 8).max(8);
    n.div_ceil(step) * step
}

/// Bytes of one shard's table (without what entries point to).
pub fn table_bytes(shard: &Map) -> usize {
    let cap = shard.capacity();
    if cap == 0 {
        return 0;
    }
    // hashbrown keeps 1/8 of the buckets empty (for 8 or more buckets).
    let buckets = if cap < 8 {
        (cap + 1).next_power_of_two()
    } else {
        (cap * 8 / 7).next_power_of_two()
    };
    buckets * (ENTRY + 1) + 16
}

/// Heap blocks one entry owns besides its slot in the table.
pub fn entry_heap_bytes(key: &str, o: &Object) -> usize {
    let many = |r: &Replicas| match r {
        Replicas::Many(b) => {
            heap_block(std::mem::size_of::<Box<[Replica]>>())
                + heap_block(b.len() * std::mem::size_of::<Replica>())
        }
        _ => 0,
    };
    let pending = o.pending.as_ref().map_or(0, |p| {
        heap_block(std::mem::size_of_val(p.as_ref())) + many(&p.replicas)
    });
    heap_block(key.len()) + heap_block(std::mem::size_of::<Object>()) + many(&o.replicas) + pending
}

/// The whole shard: table plus every entry's heap blocks (one pass over the entries).
pub fn shard_bytes(shard: &Map) -> usize {
    table_bytes(shard)
        + shard
            .iter()
            .map(|(k, o)| entry_heap_bytes(k, o))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Pending, SoftPinChange};

    #[test]
    fn blocks_round_like_the_allocator() {
        assert_eq!(heap_block(0), 0);
        assert_eq!(heap_block(1), 8);
        assert_eq!(heap_block(20), 24);
        assert_eq!(heap_block(64), 64);
        assert_eq!(heap_block(65), 80);
        assert_eq!(heap_block(100), 112);
        assert_eq!(heap_block(129), 160);
    }

    #[test]
    fn a_shard_of_short_keys_costs_about_what_was_measured() {
        let mut shard: Map = Map::with_hasher(crate::index::FastState::default());
        assert_eq!(shard_bytes(&shard), 0);
        let n = 10_000;
        for i in 0..n {
            let p = Box::new(Pending {
                put_id: i,
                client: 0,
                started_ms: 0,
                size: 1,
                replicas: Replicas::None,
                hard_pin: false,
                soft_pin: SoftPinChange::Preserve,
            });
            let mut o = Object::in_progress(p, Default::default());
            o.pending = None;
            shard.insert(format!("key-{i:016}").into(), Box::new(o));
        }
        let per = shard_bytes(&shard) as f64 / n as f64;
        // 25-byte buckets at a load factor between 7/16 and 7/8, plus a 24-byte key
        // and a 56-byte object.
        let heap = 24.0 + 56.0;
        assert!((heap + 25.0 * 8.0 / 7.0..=heap + 25.0 * 16.0 / 7.0 + 1.0).contains(&per));
        assert!(
            per <= crate::index::limit::BYTES_PER_OBJECT_BUDGET as f64,
            "{per}"
        );
    }
}

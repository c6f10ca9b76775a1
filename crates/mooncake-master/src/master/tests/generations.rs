//! Lookups report each replica's allocation generation: the same while the
//! allocation lives, a new one once it was freed (even when a new object lands at the
//! same offset), so a client's remembered location can be checked against a lookup.

use super::*;

fn one(m: &Master, key: &str) -> ((String, u64), u64) {
    let l = m.get_replica_list(key).expect("replica list");
    assert_eq!(l.generations.len(), l.replicas.len());
    (locs(&l.replicas)[0].clone(), l.generations[0])
}

#[tokio::test(start_paused = true)]
async fn the_generation_is_stable_while_the_allocation_lives_and_changes_once_freed() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    put(&m, "k", 4096);
    put(&m, "other", 4096);
    let (at, g) = one(&m, "k");
    assert_eq!(
        one(&m, "k"),
        (at.clone(), g),
        "a second lookup names the same"
    );
    let batch = m.batch_get_replica_list(&["other", "k"]);
    assert_eq!(batch[1].as_ref().unwrap().generations, vec![g]);

    // Removed and put again: the allocator hands the same range out again.
    assert_eq!(m.remove("k", true), Ok(()));
    put(&m, "k", 4096);
    let (again, g2) = one(&m, "k");
    assert_eq!(again, at, "same offset (first fit in a fresh allocator)");
    assert_ne!(g2, g, "a freed allocation's generation never comes back");
    assert_eq!(one(&m, "other").1, one(&m, "other").1);
}

#[tokio::test(start_paused = true)]
async fn a_remount_starts_above_every_earlier_generation() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    put(&m, "k", 4096);
    let (at, g) = one(&m, "k");
    assert!(m.unmount_segment("c", "a:1").is_ok());
    mount(&m, "c", "a:1", 1 << 20);
    put(&m, "k", 4096);
    let (again, g2) = one(&m, "k");
    assert_eq!(again, at);
    assert!(g2 > g);
}

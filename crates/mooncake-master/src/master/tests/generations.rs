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

#[tokio::test(start_paused = true)]
async fn a_write_start_names_the_generations_a_later_lookup_reports() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 1 << 20);
    mount(&m, "d", "b:1", 1 << 20);
    let rc = ReplicateConfig {
        replica_num: 2,
        ..no_rc()
    };
    let w = m.put_start("c", "k", 4096, &rc).unwrap();
    assert_eq!(w.generations.len(), w.replicas.len());
    assert_eq!(w.replicas.len(), 2);
    assert_eq!(m.write_end("c", "k", w.put_id), Ok(()));
    let l = m.get_replica_list("k").unwrap();
    let named: Vec<_> = locs(&w.replicas).into_iter().zip(w.generations).collect();
    let mut looked: Vec<_> = locs(&l.replicas).into_iter().zip(l.generations).collect();
    looked.sort();
    let mut named_sorted = named.clone();
    named_sorted.sort();
    assert_eq!(named_sorted, looked);

    // An upsert's start names its new allocation; once it ends, lookups agree.
    let u = m.upsert_start("c", "k", 4096, &no_rc()).unwrap();
    assert_eq!(m.write_end("c", "k", u.put_id), Ok(()));
    let (at, g) = one(&m, "k");
    assert_eq!((locs(&u.replicas)[0].clone(), u.generations[0]), (at, g));
    // The replaced allocations were freed: their generations changed.
    for (loc, gen) in &named {
        if *loc == locs(&u.replicas)[0] {
            assert_ne!(*gen, g);
        }
    }
}

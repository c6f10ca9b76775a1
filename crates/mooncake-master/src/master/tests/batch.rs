//! Batch calls group their keys by shard (one hash and one lock per shard): answers
//! must still come back in the request's order, duplicates must meet in order, and a
//! bad key in the middle answers its own error without disturbing the others.

use super::*;
use crate::master::WriteKind;
use crate::service::handlers::Replicas;
use mooncake_common::ErrorCode;

const BAD: ErrorCode = ErrorCode::InvalidParams;

/// 300 keys (every shard gets several): even ones stored, odd ones missing, one in
/// progress, an empty key in the middle and a duplicate of an earlier key at the end.
fn keys_and_master() -> (Arc<Master>, Vec<String>) {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 64 << 20);
    let mut keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    for k in keys.iter().step_by(2) {
        put(&m, k, 100);
    }
    m.put_start("c", "in-progress", 100, &no_rc())
        .expect("put_start in-progress");
    keys[150] = String::new();
    keys.insert(77, "in-progress".into());
    keys.push("key-4".into());
    keys.push("key-5".into());
    (m, keys)
}

#[tokio::test(start_paused = true)]
async fn batch_exist_answers_in_request_order() {
    let (m, keys) = keys_and_master();
    let got = m.batch_exist(&keys);
    let want: Vec<Result<bool, ErrorCode>> = keys.iter().map(|k| m.exist(k)).collect();
    assert_eq!(got, want);
    assert_eq!(got[77], Ok(false), "in progress");
    assert_eq!(got[151], Err(BAD), "the empty key answers its own error");
    assert_eq!(&got[got.len() - 2..], &[Ok(true), Ok(false)], "duplicates");
    assert_eq!(got.iter().filter(|&&c| c == Ok(true)).count(), 150);
    assert!(m.batch_exist::<String>(&[]).is_empty());
}

#[tokio::test(start_paused = true)]
async fn batch_replica_lists_answer_in_request_order() {
    let (m, keys) = keys_and_master();
    let got = m.batch_get_replica_list(&keys);
    assert_eq!(got.len(), keys.len());
    for (k, g) in keys.iter().zip(&got) {
        let one = m.get_replica_list(k);
        match (g, &one) {
            (Ok(g), Ok(one)) => {
                assert_eq!(locs(&g.replicas), locs(&one.replicas), "{k}");
                assert_eq!(g.size, one.size, "{k}");
            }
            (g, one) => assert_eq!(g.as_ref().err(), one.as_ref().err(), "{k}"),
        }
    }
    assert_eq!(got[77].as_ref().err(), Some(&ErrorCode::ReplicaIsNotReady));
    assert_eq!(got[151].as_ref().err(), Some(&BAD));
    assert_eq!(got[1].as_ref().err(), Some(&ErrorCode::ObjectNotFound));
    let two = got[2].as_ref().expect("key-2 stored");
    assert_eq!(two.replicas.len(), 1);
    assert_eq!(two.replicas[0].segment.desc.name, "a:1");
    assert!(got[got.len() - 2].is_ok(), "a duplicate is answered again");
}

#[tokio::test(start_paused = true)]
async fn batch_put_end_and_revoke_answer_each_key() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 64 << 20);
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let ids: Vec<u64> = keys
        .iter()
        .map(|k| {
            m.put_start("c", k, 4096, &no_rc())
                .expect("put_start")
                .put_id
        })
        .collect();
    // End the first half; one wrong put id, an empty key, a missing key, and the
    // first key twice (the second end finds no write in flight: -601).
    let mut end_keys: Vec<String> = keys[..100].to_vec();
    let mut end_ids: Vec<u64> = ids[..100].to_vec();
    end_ids[10] += 1_000_000;
    end_keys[20] = String::new();
    end_keys.push("missing".into());
    end_ids.push(1);
    end_keys.push(keys[0].clone());
    end_ids.push(ids[0]);
    let codes = m.batch_write_finish("c", &end_keys, &end_ids, false);
    assert_eq!(codes.len(), end_keys.len());
    for (i, c) in codes.iter().enumerate() {
        let want = match i {
            10 | 101 => Err(ErrorCode::IllegalClient),
            20 => Err(BAD),
            100 => Err(ErrorCode::ObjectNotFound),
            _ => Ok(()),
        };
        assert_eq!(*c, want, "item {i} ({})", end_keys[i]);
    }
    assert_eq!(m.exist(&keys[0]), Ok(true));
    assert_eq!(
        m.exist(&keys[10]),
        Ok(false),
        "wrong put id: still in progress"
    );
    assert_eq!(m.exist(&keys[20]), Ok(false));
    // Revoke the second half: the keys go away and their space comes back.
    let codes = m.batch_write_finish("c", &keys[100..], &ids[100..], true);
    assert!(codes.iter().all(|c| c.is_ok()), "{codes:?}");
    assert!(keys[100..]
        .iter()
        .all(|k| m.get_replica_list(k).err() == Some(ErrorCode::ObjectNotFound)));
    assert_eq!(m.write_revoke("c", &keys[10], ids[10]), Ok(()));
    assert_eq!(m.write_revoke("c", &keys[20], ids[20]), Ok(()));
    assert_eq!(m.stats().key_count, 98);
    let used: u64 = m.segments.list().iter().map(|s| s.used()).sum();
    assert_eq!(used, 98 * 4096);
}

#[tokio::test(start_paused = true)]
async fn batch_put_start_answers_each_key_in_order() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 64 << 20);
    mount(&m, "c2", "b:1", 64 << 20);
    put(&m, "exists", 100);
    let keys = ["k0", "exists", "", "k3", "k0", "k5", "big", "k7"];
    let sizes = [100, 100, 100, 0, 100, 100, 1 << 40, 100];
    let got = m.batch_write_start(WriteKind::Put, "c", &keys, &sizes, &replicas(2));
    let codes: Vec<Option<ErrorCode>> = got.iter().map(|r| r.as_ref().err().copied()).collect();
    use ErrorCode::{NoAvailableHandle, ObjectAlreadyExists};
    assert_eq!(
        codes,
        vec![
            None,
            Some(ObjectAlreadyExists),
            Some(BAD),
            Some(BAD),
            Some(ObjectAlreadyExists),
            None,
            Some(NoAvailableHandle),
            None
        ],
        "a duplicate meets the first start; bad keys and sizes answer their own error"
    );
    for i in [0, 5, 7] {
        let st = got[i].as_ref().unwrap();
        let names: Vec<&str> = st
            .replicas
            .iter()
            .map(|r| r.segment.desc.name.as_str())
            .collect();
        assert_eq!(names.len(), 2, "two replicas on distinct owners");
        assert_ne!(names[0], names[1]);
        assert_eq!(m.write_end("c", keys[i], st.put_id), Ok(()));
    }
    // Upserts of the same keys in one batch: the first takes the key, a second start
    // of the same key in the same batch finds the first one's write in flight.
    let got = m.batch_write_start(WriteKind::Upsert, "c", &["k0", "k0"], &[50, 50], &no_rc());
    assert!(got[0].is_ok());
    assert_eq!(got[1].as_ref().err(), Some(&ErrorCode::ObjectReplicaBusy));
}

#[tokio::test(start_paused = true)]
async fn batch_put_start_with_free_ratio_first_sees_its_own_allocations() {
    // Two equal segments: one batch's puts alternate between them, as single puts do,
    // because the batch's placement snapshot follows its own allocations.
    let cfg = MasterConfig {
        allocation_strategy: crate::config::AllocationStrategy::FreeRatioFirst,
        ..Default::default()
    };
    let m = master(cfg);
    mount(&m, "c", "a:1", 64 << 20);
    mount(&m, "c2", "b:1", 64 << 20);
    let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
    let sizes = vec![1 << 20; keys.len()];
    let got = m.batch_write_start(WriteKind::Put, "c", &keys, &sizes, &no_rc());
    let on_a = got
        .iter()
        .filter(|r| matches!(r, Ok(st) if st.replicas[0].segment.desc.name == "a:1"))
        .count();
    assert!(got.iter().all(|r| r.is_ok()));
    assert_eq!(on_a, 32, "balanced by free ratio");
}

/// The protocol edge's segment table (`service::handlers::Replicas::with_table`) over a
/// batch start's answers.
#[tokio::test(start_paused = true)]
async fn batch_put_start_with_a_segment_table_names_each_segment_once() {
    let m = master(MasterConfig::default());
    mount(&m, "c", "a:1", 64 << 20);
    mount(&m, "c2", "b:1", 64 << 20);
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let mut sizes = vec![100u64; keys.len()];
    sizes[3] = 0;
    let got = m.batch_write_start(WriteKind::Put, "c", &keys, &sizes, &replicas(2));
    assert_eq!(got[3].as_ref().err(), Some(&BAD));
    let mut table = Replicas::with_table();
    let wire: Vec<_> = got
        .iter()
        .map(|st| st.as_ref().ok().map(|st| table.of(&st.replicas, st.size)))
        .collect();
    let segments = table.into_table();
    let mut names: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["a:1", "b:1"], "each segment once");
    for ((k, st), w) in keys.iter().zip(&got).zip(&wire) {
        let (Ok(st), Some(w)) = (st, w) else {
            continue;
        };
        assert_eq!(w.len(), 2);
        let mut seen = Vec::new();
        for r in w {
            assert!(r.segment.is_none(), "no descriptor per replica");
            let seg = &segments[r.segment_index.unwrap() as usize];
            seen.push(seg.name.clone());
        }
        assert_ne!(seen[0], seen[1]);
        // The same offsets as the replica list gives once the put ends.
        assert_eq!(m.write_end("c", k, st.put_id), Ok(()));
        let full = m.get_replica_list(k).expect("replica list");
        for (a, b) in full.replicas.iter().zip(w) {
            assert_eq!(a.offset, b.offset);
            assert_eq!(
                a.segment.desc.name,
                segments[b.segment_index.unwrap() as usize].name
            );
        }
    }
    // Without the table every replica carries its descriptor.
    let got = m.batch_write_start(WriteKind::Put, "c", &["z"], &[10], &no_rc());
    let st = got[0].as_ref().unwrap();
    let w = Replicas::plain().of(&st.replicas, st.size);
    assert!(w[0].segment.is_some());
    assert!(w[0].segment_index.is_none());
}

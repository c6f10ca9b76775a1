//! Master + 3 stores configured only by environment: capacity adds up, replicated
//! objects survive `kill -9` of a store (at once and after `client_ttl`), and SIGTERM
//! unmounts at once.

use mooncake_client::ReplicateConfig;
use mooncake_tests::{client, store_env, value_for, Master, Store};
use std::time::Duration;

const SEG: u64 = 64 << 20;

async fn read_all(c: &mooncake_client::Client, n: usize) -> usize {
    let keys: Vec<String> = (0..n).map(|i| format!("obj-{i}")).collect();
    let mut ok = 0;
    for chunk in keys.chunks(100) {
        for (k, r) in chunk.iter().zip(c.get_batch(chunk).await) {
            match r {
                Ok(v) if v == value_for(k, 4096 + k.len()) => ok += 1,
                Ok(_) => panic!("{k}: WRONG BYTES"),
                Err(e) => eprintln!("{k}: {e}"),
            }
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_kill_and_sigterm_unmounts() {
    let m = Master::start(&["--client_ttl=2"]);
    let mut stores: Vec<Store> = (0..3)
        .map(|_| Store::start(&store_env(&m, "64mb")))
        .collect();
    let cap = m.wait_metric(
        "master_total_capacity_bytes",
        (3 * SEG) as f64,
        Duration::from_secs(5),
    );
    assert_eq!(
        cap,
        Some((3 * SEG) as f64),
        "capacity is the sum of the segments"
    );

    let c = client(&m).await;
    let n = 1000;
    let keys: Vec<String> = (0..n).map(|i| format!("obj-{i}")).collect();
    let values: Vec<Vec<u8>> = keys.iter().map(|k| value_for(k, 4096 + k.len())).collect();
    for (ks, vs) in keys.chunks(100).zip(values.chunks(100)) {
        let refs: Vec<&[u8]> = vs.iter().map(|v| v.as_slice()).collect();
        for (k, r) in ks
            .iter()
            .zip(c.put_batch(ks, &refs, &ReplicateConfig::replicas(2)).await)
        {
            r.unwrap_or_else(|e| panic!("put {k}: {e}"));
        }
    }
    assert_eq!(read_all(&c, n).await, n);

    stores[0].proc.kill9();
    assert_eq!(
        read_all(&c, n).await,
        n,
        "all objects readable right after kill -9"
    );

    let cap = m.wait_metric(
        "master_total_capacity_bytes",
        (2 * SEG) as f64,
        Duration::from_secs(8),
    );
    assert_eq!(
        cap,
        Some((2 * SEG) as f64),
        "dead store's segment leaves after client_ttl"
    );
    assert_eq!(
        read_all(&c, n).await,
        n,
        "all objects intact after the segment left"
    );

    stores[1].proc.signal(libc::SIGTERM);
    let cap = m.wait_metric(
        "master_total_capacity_bytes",
        SEG as f64,
        Duration::from_millis(1500),
    );
    assert_eq!(cap, Some(SEG as f64), "SIGTERM unmounts at once");
    assert_eq!(
        stores[1].proc.wait_exit(Duration::from_secs(5)),
        Some(0),
        "clean exit"
    );
    c.close().await.unwrap();
}

/// Puts made while a killed store is still mounted (its heartbeats have not run out)
/// land on the live stores: a write that cannot reach its segment is put again away
/// from it, single puts and batches alike, and every value reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_right_after_a_kill_go_to_the_live_stores() {
    // A long TTL: the dead store stays in placement for the whole test.
    let m = Master::start(&["--client_ttl=60"]);
    let mut stores: Vec<Store> = (0..2)
        .map(|_| Store::start(&store_env(&m, "64mb")))
        .collect();
    assert_eq!(
        m.wait_metric(
            "master_total_capacity_bytes",
            (2 * SEG) as f64,
            Duration::from_secs(5)
        ),
        Some((2 * SEG) as f64)
    );
    let c = client(&m).await;
    stores[0].proc.kill9();
    let _ = stores[0].proc.wait_exit(Duration::from_secs(5));
    // Half the placements go to the dead store's (equally free) segment: with 64 single
    // puts and 4 batches of 32, a put that was not retried would fail many times over.
    for i in 0..64 {
        let k = format!("single-{i}");
        c.put(&k, &value_for(&k, 4096), &ReplicateConfig::default())
            .await
            .unwrap_or_else(|e| panic!("put {k} with a dead store mounted: {e}"));
    }
    for b in 0..4 {
        let keys: Vec<String> = (0..32).map(|i| format!("batch-{b}-{i}")).collect();
        let values: Vec<Vec<u8>> = keys.iter().map(|k| value_for(k, 8192)).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        for (k, r) in keys
            .iter()
            .zip(c.put_batch(&keys, &refs, &ReplicateConfig::default()).await)
        {
            r.unwrap_or_else(|e| panic!("batch put {k} with a dead store mounted: {e}"));
        }
    }
    for i in 0..64 {
        let k = format!("single-{i}");
        assert_eq!(c.get(&k).await.unwrap(), value_for(&k, 4096), "{k}");
    }
    for b in 0..4 {
        for i in 0..32 {
            let k = format!("batch-{b}-{i}");
            assert_eq!(c.get(&k).await.unwrap(), value_for(&k, 8192), "{k}");
        }
    }
    // The dead store is still mounted: the retries avoided it, nothing removed it.
    assert_eq!(
        m.metric("master_total_capacity_bytes"),
        Some((2 * SEG) as f64)
    );
}

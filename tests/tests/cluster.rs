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

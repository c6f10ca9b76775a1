//! The transfer-engine path (same-host shared memory turned off): puts and gets of
//! several sizes over TCP, and a read falling back to the other replica after a store
//! is killed.

use mooncake_client::ReplicateConfig;
use mooncake_tests::{client, store_env, value_for, Master, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_put_get_and_replica_fallback() {
    // Only this test runs in this process: the switch is read when a client starts.
    std::env::set_var("MOONCAKE_DISABLE_SHM", "1");
    let m = Master::start(&[]);
    let mut a = Store::start(&store_env(&m, "64mb"));
    let _b = Store::start(&store_env(&m, "64mb"));
    let c = client(&m).await;
    let sizes = [1usize, 4096, 100_000, 1 << 20, 5 << 20];
    let keys: Vec<String> = sizes.iter().map(|s| format!("tcp-{s}")).collect();
    let values: Vec<Vec<u8>> = keys
        .iter()
        .zip(sizes)
        .map(|(k, s)| value_for(k, s))
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    for r in c
        .put_batch(&keys, &refs, &ReplicateConfig::replicas(2))
        .await
    {
        r.unwrap();
    }
    for (k, r) in keys.iter().zip(c.get_batch(&keys).await) {
        assert!(r.unwrap() == value_for(k, k[4..].parse().unwrap()), "{k}");
    }
    a.proc.kill9();
    for _ in 0..3 {
        for (k, r) in keys.iter().zip(c.get_batch(&keys).await) {
            let v = r.unwrap_or_else(|e| panic!("{k} after kill: {e}"));
            assert!(
                v == value_for(k, k[4..].parse().unwrap()),
                "{k}: wrong bytes"
            );
        }
    }
}

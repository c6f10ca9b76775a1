//! A full pool keeps accepting puts (the master evicts), and reads never return wrong
//! bytes: every key reads back either exactly its value or as missing.

use mooncake_client::{ErrorCode, ReplicateConfig};
use mooncake_tests::{client, store_env, value_for, Master, Store};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_evicts_and_never_lies() {
    let m = Master::start(&["--default_kv_lease_ttl=50"]);
    let _a = Store::start(&store_env(&m, "16mb"));
    let _b = Store::start(&store_env(&m, "16mb"));
    let c = client(&m).await;
    let rc = ReplicateConfig::default();
    let n = 120; // 120 MiB through a 32 MiB pool
    let mut stored = 0;
    for i in 0..n {
        let k = format!("ev-{i}");
        let v = value_for(&k, 1 << 20);
        let mut ok = false;
        for _ in 0..50 {
            match c.put(&k, &v, &rc).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) if e.code == ErrorCode::NoAvailableHandle => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("put {k}: {e}"),
            }
        }
        assert!(
            ok,
            "put {k} kept failing with no space: eviction does not free room"
        );
        stored += 1;
    }
    assert_eq!(stored, n);
    let mut present = 0;
    for i in 0..n {
        let k = format!("ev-{i}");
        match c.get(&k).await {
            Ok(v) => {
                assert!(v == value_for(&k, 1 << 20), "{k}: wrong bytes");
                present += 1;
            }
            Err(e) => assert!(
                matches!(
                    e.code,
                    ErrorCode::ObjectNotFound | ErrorCode::ReplicaIsNotReady
                ),
                "{k}: {e}"
            ),
        }
    }
    assert!(
        present > 0 && present < n,
        "some evicted, some kept: {present}/{n}"
    );
}

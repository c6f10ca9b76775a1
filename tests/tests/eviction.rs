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

/// A put that would be above the high watermark on its own (15 MiB into a 16 MiB pool
/// at the default 0.9) is refused with -200 and displaces nothing; one just below it is
/// stored, and the round it triggers takes the older key, never the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_eviction_cannot_keep_fails_and_a_put_outlives_its_own_round() {
    let m = Master::start(&[]);
    let _s = Store::start(&store_env(&m, "16mb"));
    let c = client(&m).await;
    let rc = ReplicateConfig::default();
    let small = value_for("small", 1 << 20);
    c.put("small", &small, &rc).await.expect("put small");
    let huge = value_for("huge", 15 << 20);
    let e = c
        .put("huge", &huge, &rc)
        .await
        .expect_err("15 MiB of 16 kept");
    assert_eq!(e.code, ErrorCode::NoAvailableHandle, "{e}");
    assert!(c.get("small").await.expect("small displaced") == small);
    assert!(matches!(
        c.get("huge").await.map_err(|e| e.code),
        Err(ErrorCode::ObjectNotFound)
    ));
    // 14 MiB fits under the watermark (14.4 MiB) but not beside `small`: the round it
    // triggers evicts `small` (its read guard from the get above has run out), and the
    // new object stays readable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let big = value_for("big", 14 << 20);
    c.put("big", &big, &rc).await.expect("put 14 MiB");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        matches!(
            c.get("small").await.map_err(|e| e.code),
            Err(ErrorCode::ObjectNotFound)
        ),
        "the round over the watermark did not take the older key"
    );
    assert!(
        c.get("big").await.expect("evicted by its own round") == big,
        "wrong bytes"
    );
}

//! A store re-mounts its segment by itself when a new master takes over its address
//! (the new master does not know it: `remount_needed`), and serves puts again.

use mooncake_client::ReplicateConfig;
use mooncake_tests::{client, store_env, value_for, Master, Store};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_remounts_on_a_new_master() {
    let mut m = Master::start(&[]);
    let _s = Store::start(&store_env(&m, "16mb"));
    let seg = (16u64 << 20) as f64;
    assert_eq!(
        m.wait_metric("master_total_capacity_bytes", seg, Duration::from_secs(5)),
        Some(seg)
    );
    m.proc.kill9();
    let m2 = Master::start_on(m.rpc_port, &[]);
    assert_eq!(
        m2.wait_metric("master_total_capacity_bytes", seg, Duration::from_secs(10)),
        Some(seg),
        "the store mounted again on the new master"
    );
    let c = client(&m2).await;
    let v = value_for("after-remount", 50_000);
    c.put("after-remount", &v, &ReplicateConfig::default())
        .await
        .unwrap();
    assert_eq!(c.get("after-remount").await.unwrap(), v);
}

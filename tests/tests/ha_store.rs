//! HA end to end with real etcd, two `mooncake_master --enable_ha`, a `mooncake_store`
//! and a client, both given `MOONCAKE_MASTER=etcd://...`: they find the leader; after
//! kill -9 of the leader they follow the standby that takes over (the store re-mounts
//! its segment there) and puts/gets work again, and what was written before the kill
//! still reads back (the standby followed the leader's replication log, docs/ha.md).

use mooncake_client::{Client, ClientConfig};
use mooncake_tests::etcd::{
    etcd_available, ha_master_flags, ha_node, ha_store_env, master_health, put_until_ok,
    wait_one_leader, wait_standby_in_sync, EtcdCluster,
};
use mooncake_tests::{free_port, value_for, Master, Store};
use std::time::Duration;

const LEN: usize = 10_000;
const PAUSE: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_client_follow_the_leader_through_a_kill_9() {
    if !etcd_available() {
        return;
    }
    let etcd = EtcdCluster::start(1, "ha-store");
    let ep = etcd.endpoints();
    let flags = ha_master_flags(&ep, &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut ms = vec![
        Master::start_on(free_port(), &flags),
        Master::start_on(free_port(), &flags),
    ];
    let l = wait_one_leader(&[Some(&ms[0]), Some(&ms[1])], Duration::from_secs(20));
    // Until the standby holds the leader's snapshot, a put is acknowledged by the
    // leader alone and a kill may lose it (docs/ha.md).
    assert!(
        wait_standby_in_sync(&ms[l], Duration::from_secs(30)),
        "the standby never got in sync"
    );
    let _store = Store::start(&ha_store_env(&ep, "16mb"));

    let c = Client::connect(ClientConfig::new(ha_node(&format!("etcd://{ep},"))))
        .await
        .expect("client connects through etcd");
    put_until_ok(&c, "before", LEN, Duration::from_secs(20), PAUSE).await;
    assert_eq!(c.get("before").await.unwrap(), value_for("before", LEN));

    ms[l].proc.kill9();
    let took = put_until_ok(&c, "after", LEN, Duration::from_secs(30), PAUSE).await;
    eprintln!("kill -9 of the leader -> first successful client put: {took:?}");
    assert_eq!(c.get("after").await.unwrap(), value_for("after", LEN));
    assert_eq!(c.get("before").await.unwrap(), value_for("before", LEN));
    assert_eq!(master_health(&ms[1 - l]), Some(200));
    let _ = c.close().await;
    ms.clear();
    drop(etcd);
}

//! HA on a 3-member etcd cluster: two `mooncake_master --enable_ha` and a
//! `mooncake_store` given all three endpoints, a client with
//! `MOONCAKE_MASTER=etcd://a;b;c`. Each etcd member in turn (the raft leader first) is
//! killed with SIGKILL: puts and gets keep working, and the master leader does not
//! change (it rides out the etcd election and reconnects to a live member), so every
//! object written so far still reads back. Then, with one member still down, the
//! master leader is killed: the standby takes over with 2 of 3 members.

use mooncake_client::Client;
use mooncake_tests::etcd::{
    etcd_available, ha_client, ha_store_env, master_health, put_until_ok, running, start_ha_master,
    wait_one_leader, EtcdCluster,
};
use mooncake_tests::{free_port, value_for, Store};
use std::time::{Duration, Instant};

const PAUSE: Duration = Duration::from_millis(50);
const LEN: usize = 8_000;

/// Reads `key` until the master answers; the bytes must be exactly what was written.
async fn get_until_answered(c: &Client, key: &str, within: Duration) {
    let t0 = Instant::now();
    loop {
        match c.get(key).await {
            Ok(v) => {
                assert!(v == value_for(key, LEN), "{key}: wrong bytes");
                return;
            }
            Err(e) => assert!(t0.elapsed() < within, "get {key} never succeeded: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_any_one_etcd_member_keeps_the_store_serving() {
    if !etcd_available() {
        return;
    }
    let mut etcd = EtcdCluster::start(3, "etcd3");
    let eps = etcd.endpoints();
    let mut ms = vec![
        Some(start_ha_master(free_port(), &eps, &[])),
        Some(start_ha_master(free_port(), &eps, &[])),
    ];
    let l = wait_one_leader(&running(&ms), Duration::from_secs(30));
    let _store = Store::start(&ha_store_env(&eps, "32mb"));
    let c = ha_client(&eps).await;
    let window = Duration::from_secs(30);

    let mut written = Vec::new();
    for j in 0..3 {
        let k = format!("start-{j}");
        put_until_ok(&c, &k, LEN, window, PAUSE).await;
        written.push(k);
    }

    // Kill each member in turn, the raft leader first (the one every write goes
    // through), then the others; restart it before the next.
    let raft_leader = etcd.raft_leader();
    eprintln!("etcd raft leader: member {raft_leader:?}");
    let first = raft_leader.unwrap_or(0);
    let order: Vec<usize> = std::iter::once(first)
        .chain((0..3).filter(|&i| i != first))
        .collect();
    for (round, &i) in order.iter().enumerate() {
        etcd.kill9(i);
        eprintln!("killed etcd member {i} (round {round})");
        for j in 0..3 {
            let k = format!("r{round}-{j}");
            let took = put_until_ok(&c, &k, LEN, window, PAUSE).await;
            eprintln!("  put {k} after {took:?}");
            written.push(k);
        }
        for k in &written {
            get_until_answered(&c, k, window).await;
        }
        // The master leader stayed the leader: nothing was lost above, and /health
        // still says so once etcd has settled.
        let now = wait_one_leader(&running(&ms), window);
        assert_eq!(now, l, "losing one etcd member moved the master leader");
        etcd.restart(i);
        assert!(
            etcd.wait_healthy(i, window),
            "etcd member {i} did not rejoin"
        );
    }

    // A master failover with only 2 of 3 etcd members up. The member killed is a
    // follower: killing etcd's raft leader as well would add etcd's own election and
    // the lease extension a new etcd leader grants (measured separately, docs).
    let raft_leader = etcd.raft_leader();
    let down = (0..3).find(|&i| Some(i) != raft_leader).unwrap();
    etcd.kill9(down);
    ms[l].take().expect("leader").proc.kill9();
    let killed = Instant::now();
    assert_eq!(
        wait_one_leader(&running(&ms), Duration::from_secs(40)),
        1 - l
    );
    let elected = killed.elapsed();
    put_until_ok(&c, "after-failover", LEN, Duration::from_secs(40), PAUSE).await;
    eprintln!(
        "etcd member {down} down; kill -9 of the leader -> standby leads {elected:?}, first client put {:?}",
        killed.elapsed()
    );
    assert_eq!(master_health(ms[1 - l].as_ref().unwrap()), Some(200));
    get_until_answered(&c, "after-failover", window).await;
    let _ = c.close().await;
}

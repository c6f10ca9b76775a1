//! Failover time as a user sees it: kill -9 of the leader master -> the first
//! successful put through a client given `MOONCAKE_MASTER=etcd://...`, with a real
//! store re-mounting on the new leader. Each trial also checks that the object put
//! just before the kill reads back byte-identical (zero-loss failover).
//! `HA_TRIALS=N` repeats the kill N times (the killed master restarts as the standby)
//! and prints the median and max: docs/benchmarks/ha.md. Nothing asserts on speed.

use mooncake_tests::etcd::{
    etcd_available, ha_client, ha_store_env, put_until_ok, running, start_ha_master_on,
    wait_one_leader, wait_standby_in_sync, EtcdCluster,
};
use mooncake_tests::{free_port, value_for, Store};
use std::time::Duration;

const PAUSE: Duration = Duration::from_millis(20);
const LEN: usize = 10_000;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_to_the_first_client_put() {
    if !etcd_available() {
        return;
    }
    let trials: usize = std::env::var("HA_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let etcd = EtcdCluster::start(1, "failover-client");
    let eps = etcd.endpoints();
    let ports = [(free_port(), free_port()), (free_port(), free_port())];
    let start = |i: usize| start_ha_master_on(ports[i].0, ports[i].1, &eps, &[]);
    let mut ms = vec![Some(start(0)), Some(start(1))];
    let _store = Store::start(&ha_store_env(&eps, "64mb"));
    let c = ha_client(&eps).await;
    let mut times = Vec::new();
    for t in 0..trials {
        let l = wait_one_leader(&running(&ms), Duration::from_secs(30));
        assert!(
            wait_standby_in_sync(ms[l].as_ref().unwrap(), Duration::from_secs(30)),
            "the standby never got in sync"
        );
        let before = format!("before-{t}");
        put_until_ok(&c, &before, LEN, Duration::from_secs(30), PAUSE).await;

        ms[l].take().unwrap().proc.kill9();
        let took = put_until_ok(
            &c,
            &format!("after-{t}"),
            LEN,
            Duration::from_secs(30),
            PAUSE,
        )
        .await;
        eprintln!("trial {t}: kill -9 of the leader -> first successful client put {took:?}");
        times.push(took);
        assert_eq!(
            wait_one_leader(&running(&ms), Duration::from_secs(30)),
            1 - l
        );
        let got = c
            .get(&before)
            .await
            .expect("the object put before the kill");
        assert!(got == value_for(&before, LEN), "{before}: wrong bytes");
        ms[l] = Some(start(l));
    }
    times.sort();
    eprintln!(
        "client failover over {} trials: median {:?}, max {:?}, min {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1],
        times[0]
    );
    let _ = c.close().await;
}

//! A stalled leader (SIGSTOP longer than `client_ttl` and than its lease, then
//! SIGCONT), seen through real clients and a real store: the standby takes over with
//! the index; the woken master refuses every call (-1010) instead of serving from
//! its stale state; and nothing it does on waking (its liveness reaper sees every
//! heartbeat missing) wipes objects: all of them still read back byte-identical
//! through the new leader, and the store stays mounted there.

use mooncake_client::{Client, ClientConfig, ReplicateConfig};
use mooncake_common::ErrorCode;
use mooncake_tests::etcd::{
    etcd_available, ha_client, ha_node, ha_store_env, master_health, running, start_ha_master,
    wait_one_leader, wait_standby_in_sync, EtcdCluster,
};
use mooncake_tests::{free_port, value_for, Store};
use std::time::{Duration, Instant};

const LEN: usize = 6_000;
/// Seconds; short so the stall outlasts it without a long test.
const CLIENT_TTL: u64 = 3;

/// A client pinned to one master address (no etcd): what a stale caller would use.
async fn pinned_client(addr: &str) -> Client {
    Client::start(ClientConfig::new(ha_node(addr)))
        .await
        .expect("pinned client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leader_wakes_fenced_and_the_index_survives() {
    if !etcd_available() {
        return;
    }
    let etcd = EtcdCluster::start(1, "stall");
    let eps = etcd.endpoints();
    let ttl = format!("--client_ttl={CLIENT_TTL}");
    let ms = vec![
        Some(start_ha_master(free_port(), &eps, &[&ttl])),
        Some(start_ha_master(free_port(), &eps, &[&ttl])),
    ];
    let l = wait_one_leader(&running(&ms), Duration::from_secs(30));
    let s = 1 - l;
    let store = Store::start(&ha_store_env(&eps, "32mb"));
    let c = ha_client(&eps).await;
    assert!(
        wait_standby_in_sync(ms[l].as_ref().unwrap(), Duration::from_secs(30)),
        "the standby never got in sync"
    );
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    for k in &keys {
        c.put(k, &value_for(k, LEN), &ReplicateConfig::default())
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
    let old = ms[l].as_ref().unwrap();
    let stale = pinned_client(&old.addr()).await;
    assert!(stale.exist("k0").await.unwrap(), "the leader serves before");

    // Stall: longer than client_ttl and than twice the lease.
    old.proc.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let end = stopped + Duration::from_secs(30);
    while master_health(ms[s].as_ref().unwrap()) != Some(200) {
        assert!(Instant::now() < end, "the standby did not take over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stall = Duration::from_secs(CLIENT_TTL * 2 + 1).max(Duration::from_secs(7));
    if let Some(left) = stall.checked_sub(stopped.elapsed()) {
        tokio::time::sleep(left).await;
    }
    old.proc.signal(libc::SIGCONT);

    // The woken master refuses, at once and later.
    for _ in 0..2 {
        let e = stale
            .exist("k0")
            .await
            .expect_err("a fenced master answered");
        assert_eq!(e.code, ErrorCode::UnavailableInCurrentMode, "{e}");
        let e = stale
            .put(
                "stale",
                &value_for("stale", LEN),
                &ReplicateConfig::default(),
            )
            .await
            .expect_err("a fenced master accepted a put");
        assert_eq!(e.code, ErrorCode::UnavailableInCurrentMode, "{e}");
        tokio::time::sleep(Duration::from_secs(CLIENT_TTL)).await;
    }

    // Nothing was wiped: every object reads back through the new leader, which still
    // has the store mounted; new puts work; the stale put never happened.
    for k in &keys {
        let v = c.get(k).await.unwrap_or_else(|e| panic!("get {k}: {e}"));
        assert!(v == value_for(k, LEN), "{k}: wrong bytes");
    }
    assert!(!c.exist("stale").await.unwrap(), "a stale write is visible");
    c.put(
        "after",
        &value_for("after", LEN),
        &ReplicateConfig::default(),
    )
    .await
    .expect("put on the new leader");
    assert_eq!(wait_one_leader(&running(&ms), Duration::from_secs(30)), s);
    assert!(store.wait_healthy(Duration::from_secs(10)));
    let _ = stale.close().await;
    let _ = c.close().await;
}

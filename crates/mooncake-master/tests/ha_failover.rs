//! HA with real etcd and two real `mooncake_master --enable_ha` processes: exactly one
//! leads; a standby refuses RPCs; kill -9 the leader and the standby takes over.
//! `HA_TRIALS=N` repeats the kill/takeover N times and prints each failover time
//! (kill -> first successful control-plane put): docs/benchmarks/ha.md.

mod ha_support;
mod http_support;

use ha_support::*;
use std::time::{Duration, Instant};

const UNAVAILABLE_IN_CURRENT_MODE: i32 = -1010;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_kill_9_fails_over_to_the_standby() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ms = [
        HaMaster::start(&etcd.endpoint, "failover", dir.path()),
        HaMaster::start(&etcd.endpoint, "failover", dir.path()),
    ];
    let trials: usize = std::env::var("HA_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut times = Vec::new();
    for trial in 0..trials {
        let l = wait_for_one_leader(&[&ms[0], &ms[1]], Duration::from_secs(20)).await;
        let s = 1 - l;
        // The standby names the leader and refuses every RPC.
        let (code, body) = ms[s].health().await.expect("standby health");
        assert_eq!(code, 503);
        assert_eq!(body["role"], "standby", "{body}");
        assert_eq!(body["leader"], ms[l].rpc_addr().as_str(), "{body}");
        let refused = control_plane_put(&mut ms[s].rpc().await, "k-standby").await;
        assert_eq!(refused, Err(UNAVAILABLE_IN_CURRENT_MODE));
        // The leader serves.
        let key = format!("before-{trial}");
        control_plane_put(&mut ms[l].rpc().await, &key)
            .await
            .unwrap_or_else(|c| panic!("put on the leader: {c}\n{}", ms[l].proc.log_text()));

        ms[l].proc.kill9();
        let killed = Instant::now();
        let mut c = ms[s].rpc().await;
        let end = killed + Duration::from_secs(25);
        loop {
            if control_plane_put(&mut c, &format!("after-{trial}"))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "the standby did not take over: {}",
                ms[s].proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = killed.elapsed();
        eprintln!("HA failover trial {trial}: kill -9 -> first successful put {took:?}");
        times.push(took);
        let (code, body) = ms[s].health().await.expect("new leader health");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["role"], "leader");
        ms[l].restart();
    }
    times.sort();
    eprintln!(
        "HA failover over {} trials: median {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

/// An etcd member that does not answer, anywhere in the list, costs a rotation and
/// nothing more: both masters elect one leader, keep it alive, and fail over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_etcd_member_in_the_list_is_skipped() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut ms = [
        HaMaster::start(
            &format!("{dead};{}", etcd.endpoint),
            "dead-member",
            dir.path(),
        ),
        HaMaster::start(
            &format!("{};{dead}", etcd.endpoint),
            "dead-member",
            dir.path(),
        ),
    ];
    let l = wait_for_one_leader(&[&ms[0], &ms[1]], Duration::from_secs(20)).await;
    let s = 1 - l;
    control_plane_put(&mut ms[l].rpc().await, "before")
        .await
        .unwrap_or_else(|c| panic!("put on the leader: {c}\n{}", ms[l].proc.log_text()));
    ms[l].proc.kill9();
    let mut c = ms[s].rpc().await;
    let end = Instant::now() + Duration::from_secs(25);
    while control_plane_put(&mut c, "after").await.is_err() {
        assert!(
            Instant::now() < end,
            "the standby did not take over: {}",
            ms[s].proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Fencing with real etcd: a leader paused (SIGSTOP) for twice its lease loses it; on
//! SIGCONT it must not accept a single write, even before it has noticed the loss.

mod ha_support;
mod http_support;

use ha_support::*;
use mooncake_master::ha::LEASE_TTL;
use std::time::{Duration, Instant};

const UNAVAILABLE_IN_CURRENT_MODE: i32 = -1010;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_refuses_writes_after_waking() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ms = [
        HaMaster::start(&etcd.endpoint, "fencing", dir.path()),
        HaMaster::start(&etcd.endpoint, "fencing", dir.path()),
    ];
    let l = wait_for_one_leader(&[&ms[0], &ms[1]], Duration::from_secs(20)).await;
    let s = 1 - l;
    // The leader has a segment, so a PutStart it served would succeed.
    let mut old = ms[l].rpc().await;
    control_plane_put(&mut old, "before-pause")
        .await
        .expect("put on the leader");

    ms[l].proc.signal("-STOP");
    let paused = Instant::now();
    // The standby takes over while the leader sleeps.
    let end = paused + Duration::from_secs(25);
    loop {
        if let Some((200, _)) = ms[s].health().await {
            break;
        }
        assert!(Instant::now() < end, "the standby did not take over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(left) = (LEASE_TTL * 2).checked_sub(paused.elapsed()) {
        tokio::time::sleep(left).await;
    }
    ms[l].proc.signal("-CONT");

    // The very first write after waking is refused, on the existing connection and on
    // a new one.
    assert_eq!(
        put_only(&mut old, "after-wake").await,
        Err(UNAVAILABLE_IN_CURRENT_MODE)
    );
    assert_eq!(
        control_plane_put(&mut ms[l].rpc().await, "after-wake-2").await,
        Err(UNAVAILABLE_IN_CURRENT_MODE)
    );
    // It settles as a standby naming the new leader; the new leader serves.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((503, body)) = ms[l].health().await {
            if body["leader"] == ms[s].rpc_addr().as_str() {
                break;
            }
        }
        assert!(Instant::now() < end, "{}", ms[l].proc.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    control_plane_put(&mut ms[s].rpc().await, "on-new-leader")
        .await
        .expect("put on the new leader");
    assert_eq!(
        control_plane_put(&mut old, "still-fenced").await,
        Err(UNAVAILABLE_IN_CURRENT_MODE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_revokes_its_lease_and_hands_over() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ms = [
        HaMaster::start(&etcd.endpoint, "handover", dir.path()),
        HaMaster::start(&etcd.endpoint, "handover", dir.path()),
    ];
    let l = wait_for_one_leader(&[&ms[0], &ms[1]], Duration::from_secs(20)).await;
    let s = 1 - l;
    ms[l].proc.signal("-TERM");
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = ms[l].proc.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "the leader did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{}", ms[l].proc.log_text());
    assert!(
        ms[l].proc.log_text().contains("lease revoked"),
        "{}",
        ms[l].proc.log_text()
    );
    let end = Instant::now() + Duration::from_secs(20);
    while control_plane_put(&mut ms[s].rpc().await, "after-handover")
        .await
        .is_err()
    {
        assert!(Instant::now() < end, "{}", ms[s].proc.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

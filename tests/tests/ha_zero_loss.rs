//! Zero-loss failover with real etcd, two `mooncake_master --enable_ha`, two
//! `mooncake_store` and the Rust client, all following `MOONCAKE_MASTER=etcd://...`.
//! The standby follows the leader's replication log; after kill -9 of the leader it
//! takes over with the same index, so every object acknowledged before the kill reads
//! back byte-identical, and new puts never land on an old object's bytes.
//!
//! 1. 500 objects (mixed sizes, every fifth with 2 replicas; half written before the
//!    standby attached, so they reach it through the snapshot), kill -9, read back.
//! 2. The kill happens under a continuous put/get load; every put acknowledged
//!    before (and after) the kill reads back byte-identical, and no get ever returns
//!    wrong bytes.

use mooncake_client::{Client, ReplicateConfig};
use mooncake_tests::etcd::{
    etcd_available, ha_client, ha_master_flags, ha_store_env, master_health, wait_one_leader,
    wait_standby_in_sync, EtcdCluster,
};
use mooncake_tests::{free_port, http, value_for, Master, Store};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls until exactly one of the masters answers /health 200; returns its index.
fn wait_leader(ms: &[Master], within: Duration) -> usize {
    let ms: Vec<Option<&Master>> = ms.iter().map(Some).collect();
    wait_one_leader(&ms, within)
}

struct Cluster {
    dir: PathBuf,
    flags: Vec<String>,
    etcd: String,
    masters: Vec<Master>,
    _stores: Vec<Store>,
    _etcd: EtcdCluster,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.masters.clear();
        self._stores.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// etcd, an HA master leading and two stores mounted on it; with `standby`, a second
/// HA master (the standby) too.
fn cluster(tag: &str, standby: bool) -> Option<(Cluster, usize)> {
    if !etcd_available() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("mc-ha-zero-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let etcd_proc = EtcdCluster::start(1, &format!("zero-{tag}"));
    let ep = etcd_proc.endpoints();
    let flags = ha_master_flags(&ep, &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut masters = vec![Master::start_on(free_port(), &flags)];
    let l = wait_leader(&masters, Duration::from_secs(30));
    if standby {
        masters.push(Master::start_on(free_port(), &flags));
    }
    // Each test has its own etcd, so the default cluster id is never shared.
    let env = ha_store_env(&ep, "64mb");
    let stores = vec![Store::start(&env), Store::start(&env)];
    let c = Cluster {
        dir,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        etcd: ep,
        masters,
        _stores: stores,
        _etcd: etcd_proc,
    };
    Some((c, l))
}
fn size_of(i: usize) -> usize {
    1000 + (i * 7919) % 60_000
}

fn rc_of(i: usize) -> ReplicateConfig {
    if i.is_multiple_of(5) {
        ReplicateConfig::replicas(2)
    } else {
        ReplicateConfig::default()
    }
}

async fn put_range(c: &Client, range: std::ops::Range<usize>) {
    for i in range {
        let key = format!("obj-{i}");
        let v = value_for(&key, size_of(i));
        c.put(&key, &v, &rc_of(i))
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
}

/// Reads every key until it matches (retrying errors, never accepting wrong bytes);
/// returns the keys that never read back.
async fn read_back(c: &Client, keys: &[(String, usize)], within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    let mut missing: Vec<(String, usize)> = keys.to_vec();
    let mut last = String::new();
    while !missing.is_empty() && Instant::now() < end {
        let names: Vec<String> = missing.iter().map(|(k, _)| k.clone()).collect();
        let mut still = Vec::new();
        for (chunk_keys, chunk) in names.chunks(64).zip(missing.chunks(64)) {
            let got = c.get_batch(chunk_keys).await;
            for ((k, len), r) in chunk.iter().zip(got) {
                match r {
                    Ok(v) => assert!(v == value_for(k, *len), "{k}: WRONG BYTES"),
                    Err(e) => {
                        last = format!("{k}: {e}");
                        still.push((k.clone(), *len));
                    }
                }
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if !missing.is_empty() {
        eprintln!("{} keys never read back; last error {last}", missing.len());
    }
    missing.into_iter().map(|(k, _)| k).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_leader_kill_9_byte_identical() {
    let Some((mut cl, l)) = cluster("kill", false) else {
        return;
    };
    let c = ha_client(&cl.etcd).await;
    // Half before the standby starts (they reach it in the snapshot), half after it
    // is in sync (through the stream, each put answered once the standby has it).
    put_range(&c, 0..250).await;
    let flags: Vec<&str> = cl.flags.iter().map(String::as_str).collect();
    let standby = Master::start_on(free_port(), &flags);
    cl.masters.push(standby);
    assert!(
        wait_standby_in_sync(&cl.masters[l], Duration::from_secs(30)),
        "the standby never got in sync"
    );
    put_range(&c, 250..500).await;
    let keys: Vec<(String, usize)> = (0..500).map(|i| (format!("obj-{i}"), size_of(i))).collect();
    assert!(read_back(&c, &keys, Duration::from_secs(10))
        .await
        .is_empty());

    cl.masters[l].proc.kill9();
    let killed = Instant::now();
    let s = 1 - l;
    let end = Instant::now() + Duration::from_secs(40);
    while master_health(&cl.masters[s]) != Some(200) {
        assert!(Instant::now() < end, "the standby never took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("standby leads {:?} after the kill", killed.elapsed());
    let lost = read_back(&c, &keys, Duration::from_secs(30)).await;
    assert!(lost.is_empty(), "lost after failover: {lost:?}");

    // New puts work and never land on an old object's bytes.
    for i in 500..700 {
        let key = format!("obj-{i}");
        let v = value_for(&key, size_of(i));
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match c.put(&key, &v, &rc_of(i)).await {
                Ok(()) => break,
                Err(e) => assert!(Instant::now() < end, "put {key} after failover: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let all: Vec<(String, usize)> = (0..700).map(|i| (format!("obj-{i}"), size_of(i))).collect();
    let lost = read_back(&c, &all, Duration::from_secs(30)).await;
    assert!(lost.is_empty(), "unreadable after new puts: {lost:?}");
    let _ = c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_acknowledged_under_load_survive_a_leader_kill_9() {
    let Some((mut cl, l)) = cluster("load", true) else {
        return;
    };
    let c = Arc::new(ha_client(&cl.etcd).await);
    assert!(
        wait_standby_in_sync(&cl.masters[l], Duration::from_secs(30)),
        "the standby never got in sync"
    );
    let acked: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at = Arc::new(Mutex::new(None::<usize>));
    let loader = {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut puts_failed, mut gets_ok) = (0u64, 0u64);
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("load-{i}");
                let len = 500 + (i * 4099) % 30_000;
                let v = value_for(&key, len);
                match c.put(&key, &v, &rc_of(i)).await {
                    Ok(()) => acked.lock().unwrap().push((key, len)),
                    Err(_) => {
                        puts_failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                // Read back an earlier acknowledged key: an error is fine during the
                // failover, wrong bytes never.
                let probe = {
                    let a = acked.lock().unwrap();
                    (!a.is_empty()).then(|| a[(i * 31) % a.len()].clone())
                };
                if let Some((k, n)) = probe {
                    if let Ok(got) = c.get(&k).await {
                        assert!(got == value_for(&k, n), "{k}: WRONG BYTES under load");
                        gets_ok += 1;
                    }
                }
                i += 1;
            }
            (puts_failed, gets_ok)
        })
    };
    // Load for a while, kill the leader, keep loading until the new leader has served
    // puts for a while.
    let until = |n: usize, within: Duration| {
        let acked = acked.clone();
        async move {
            let end = Instant::now() + within;
            while acked.lock().unwrap().len() < n {
                assert!(Instant::now() < end, "the load stalled below {n} puts");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until(300, Duration::from_secs(60)).await;
    let before = acked.lock().unwrap().len();
    *killed_at.lock().unwrap() = Some(before);
    cl.masters[l].proc.kill9();
    let killed = Instant::now();
    until(before + 300, Duration::from_secs(60)).await;
    eprintln!(
        "{before} puts acknowledged before the kill; load resumed {:?} after it",
        killed.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    let (puts_failed, gets_ok) = loader.await.expect("the load task panicked");
    let keys = acked.lock().unwrap().clone();
    eprintln!(
        "{} puts acknowledged in all, {puts_failed} failed during the failover, {gets_ok} verified gets",
        keys.len()
    );
    assert_eq!(
        master_health(&cl.masters[1 - l]),
        Some(200),
        "the standby leads"
    );
    let lost = read_back(&c, &keys, Duration::from_secs(30)).await;
    assert!(
        lost.is_empty(),
        "{} acknowledged puts lost (before the kill: {}): {:?}",
        lost.len(),
        lost.iter()
            .filter(|k| k[5..].parse::<usize>().unwrap_or(0) < before)
            .count(),
        &lost[..lost.len().min(20)]
    );
    let _ = c.close().await;
}

/// A stopped standby delays the leader's mutations once (the sync bound), is dropped
/// from the sync set, and after it resumes it resyncs from a new snapshot; then a kill
/// of the leader still loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_standby_is_dropped_then_resyncs_and_takes_over_losslessly() {
    let Some((mut cl, l)) = cluster("stall", true) else {
        return;
    };
    let s = 1 - l;
    let c = ha_client(&cl.etcd).await;
    assert!(
        wait_standby_in_sync(&cl.masters[l], Duration::from_secs(30)),
        "the standby never got in sync"
    );
    put_range(&c, 0..100).await;
    cl.masters[s].proc.signal(libc::SIGSTOP);
    // The leader keeps acknowledging: the first mutation waits out the bound, then
    // the silent standby leaves the sync set.
    put_range(&c, 100..200).await;
    let body = http("GET", cl.masters[l].metrics_port, "/workers", b"")
        .map(|r| String::from_utf8_lossy(&r.1).into_owned())
        .unwrap_or_default();
    assert!(body.contains("standbys in sync: 0"), "{body}");
    cl.masters[s].proc.signal(libc::SIGCONT);
    assert!(
        wait_standby_in_sync(&cl.masters[l], Duration::from_secs(30)),
        "the standby never got in sync"
    );
    put_range(&c, 200..300).await;
    cl.masters[l].proc.kill9();
    let end = Instant::now() + Duration::from_secs(40);
    while master_health(&cl.masters[s]) != Some(200) {
        assert!(Instant::now() < end, "the standby never took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys: Vec<(String, usize)> = (0..300).map(|i| (format!("obj-{i}"), size_of(i))).collect();
    let lost = read_back(&c, &keys, Duration::from_secs(30)).await;
    assert!(lost.is_empty(), "lost after failover: {lost:?}");
    let _ = c.close().await;
}

/// A killed leader restarted at once (as a supervisor does, within its lease TTL)
/// waits for its dead predecessor's lease like the standby does, and both campaign
/// when it expires. It holds no replicated state, so it must let the standby win:
/// three rounds in a row, each losing nothing (left to chance, the restarted master
/// wins about half the races and starts an empty index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restarted_at_once_lets_the_standby_with_the_state_win() {
    let Some((mut cl, mut l)) = cluster("restart", true) else {
        return;
    };
    let c = ha_client(&cl.etcd).await;
    let flags = cl.flags.clone();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut n = 0;
    for round in 0..3 {
        assert!(
            wait_standby_in_sync(&cl.masters[l], Duration::from_secs(30)),
            "round {round}: the standby never got in sync"
        );
        put_range(&c, n..n + 100).await;
        n += 100;
        let (rpc, admin) = (cl.masters[l].rpc_port, cl.masters[l].metrics_port);
        cl.masters[l].proc.kill9();
        cl.masters[l] = Master::start_on_ports(rpc, admin, &flags);
        let s = 1 - l;
        let leader = wait_leader(&cl.masters, Duration::from_secs(40));
        assert_eq!(
            leader, s,
            "round {round}: the restarted master, holding no replicated state, won the election"
        );
        let keys: Vec<(String, usize)> = (0..n).map(|i| (format!("obj-{i}"), size_of(i))).collect();
        let lost = read_back(&c, &keys, Duration::from_secs(30)).await;
        assert!(lost.is_empty(), "round {round}: lost {lost:?}");
        l = s;
    }
    let _ = c.close().await;
}

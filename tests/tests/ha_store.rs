//! HA end to end with real etcd, two `mooncake_master --enable_ha`, a `mooncake_store`
//! and a client, both given `MOONCAKE_MASTER=etcd://...`: they find the leader; after
//! kill -9 of the leader they follow the standby that takes over (the store re-mounts
//! its segment there) and puts/gets work again, and what was written before the kill
//! still reads back (the standby followed the leader's replication log, docs/ha.md).
//! A drain runs on the leader, and what it moved reads back after the next takeover;
//! a store restarted under HA tells the leader and gets its objects back.

use mooncake_client::{Client, ClientConfig};
use mooncake_tests::etcd::{
    etcd_available, ha_master_flags, ha_node, ha_store_env, master_health, put_until_ok,
    wait_leading, wait_one_leader, wait_standby_in_sync, EtcdCluster,
};
use mooncake_tests::ha::{Admin, HaPair};
use mooncake_tests::{free_port, http, segments, value_for, Master, Store};
use std::time::{Duration, Instant};

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

/// Reads every key until it comes back byte-identical (the client may be between
/// leaders, the store between runs): 20 s each at most.
async fn read_each(c: &Client, ks: &[String], len: usize) {
    for k in ks {
        let t0 = Instant::now();
        loop {
            match c.get(k).await {
                Ok(v) => {
                    assert!(v == value_for(k, len), "{k}: wrong bytes");
                    break;
                }
                Err(e) => {
                    assert!(t0.elapsed() < Duration::from_secs(20), "{k}: {e}");
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }
}

fn admin_post(m: &Master, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (code, b) = http("POST", m.metrics_port, path, body.as_bytes()).unwrap();
    (code, serde_json::from_slice(&b).unwrap_or_default())
}

/// Drains under HA: the job runs on the leader (a standby answers 503), the drained
/// store copies its objects out through the leader it found in etcd, leaves telling
/// that leader (its segment file goes: nothing is held for it), and the moves were
/// replicated: after kill -9 of the leader every object reads back from the master
/// that took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_drains_under_ha_and_its_moves_survive_a_kill_9() {
    if !etcd_available() {
        return;
    }
    let mut pair = HaPair::start("ha-drain", &["--client_ttl=2"], Admin::Open);
    let (ep, l) = (pair.endpoints.clone(), pair.leader);
    let ms = &mut pair.masters;
    let shm = std::env::temp_dir().join(format!("mc-ha-drain-{}", std::process::id()));
    let (da, db) = (shm.join("a"), shm.join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let store = |dir: &std::path::Path| {
        let mut env = ha_store_env(&ep, "32mb");
        env.push(("MOONCAKE_SHM_DIR".into(), dir.display().to_string()));
        Store::start(&env)
    };
    let mut a = store(&da);
    let drained = segments(&ms[l])
        .into_iter()
        .next()
        .expect("the first store's segment");
    let _b = store(&db);
    let t0 = Instant::now();
    while segments(&ms[l]).len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "second store never mounted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = Client::connect(ClientConfig::new(ha_node(&format!("etcd://{ep}"))))
        .await
        .expect("client connects through etcd");
    let ks: Vec<String> = (0..40).map(|i| format!("hd-{i}")).collect();
    for k in &ks {
        put_until_ok(&c, k, 120_000, Duration::from_secs(20), PAUSE).await;
    }

    let body = serde_json::json!({"segments": [drained]}).to_string();
    let (code, resp) = admin_post(&ms[1 - l], "/api/v1/drain_jobs", &body);
    assert_eq!(code, 503, "a standby runs no drain: {resp}");
    let (code, resp) = admin_post(&ms[l], "/api/v1/drain_jobs", &body);
    assert_eq!(code, 200, "{resp}");
    let job = resp["job_id"].as_str().unwrap().to_string();
    let query = || {
        let (_, b) = http(
            "GET",
            ms[l].metrics_port,
            &format!("/api/v1/drain_jobs/query?job_id={job}"),
            b"",
        )
        .unwrap();
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()
    };
    let t0 = Instant::now();
    let mut q = query();
    while q["status_name"] == "RUNNING" && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        q = query();
    }
    assert_eq!(q["status_name"], "SUCCEEDED", "{q}");
    assert_eq!(q["failed_units"], 0, "{q}");

    // Leaving for good: the leader is told, holds nothing, and the file goes.
    a.proc.signal(libc::SIGTERM);
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)), Some(0));
    let files = std::fs::read_dir(&da).unwrap().count();
    assert_eq!(files, 0, "a drained store leaves no segment file behind");
    assert!(
        !segments(&ms[l]).contains(&drained),
        "the drained segment is not held for a restart"
    );

    ms[l].proc.kill9();
    wait_leading(&ms[1 - l], Duration::from_secs(30));
    read_each(&c, &ks, 120_000).await;
    let _ = c.close().await;
    drop(pair);
    let _ = std::fs::remove_dir_all(&shm);
}

/// A store restarted under HA (SIGTERM, then started again with the same identity and
/// segment directory) tells the leader it leaves to restart, so its segment leaves
/// capacity at once and its objects are held, and they read back byte-identical once
/// it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restarted_under_ha_gets_its_objects_back() {
    if !etcd_available() {
        return;
    }
    let pair = HaPair::start("ha-restart", &["--client_ttl=2"], Admin::Open);
    let (ep, leader) = (pair.endpoints.clone(), &pair.masters[pair.leader]);
    let dir = std::env::temp_dir().join(format!("mc-ha-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut env = ha_store_env(&ep, "32mb");
    env.push(("MOONCAKE_SHM_DIR".into(), dir.display().to_string()));
    let port = free_port();
    let mut a = Store::start_on(port, &env);
    let c = Client::connect(ClientConfig::new(ha_node(&format!("etcd://{ep}"))))
        .await
        .expect("client connects through etcd");
    let ks: Vec<String> = (0..20).map(|i| format!("hr-{i}")).collect();
    for k in &ks {
        put_until_ok(&c, k, 100_000, Duration::from_secs(20), PAUSE).await;
    }

    a.proc.signal(libc::SIGTERM);
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)), Some(0));
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".gen"))
        .count();
    assert_eq!(kept, 1, "the segment file is kept for the restart");
    assert_eq!(
        leader.metric("master_total_capacity_bytes"),
        Some(0.0),
        "the leader was told: the segment left capacity at once"
    );
    let _a = Store::start_on(port, &env);
    read_each(&c, &ks, 100_000).await;
    let _ = c.close().await;
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}

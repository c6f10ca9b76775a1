//! The SSD tier with real processes: a master with `--enable_offload` and a store
//! whose DRAM holds a fraction of what is put, with `MOONCAKE_OFFLOAD_FILE_STORAGE_PATH`.
//! Objects evicted from DRAM are read back from the tier byte for byte, across SIGTERM
//! and kill -9 restarts of the store; remove frees them; a record changed on disk is
//! a miss, never wrong bytes; a bad path or capacity stops the store with the reason;
//! a full disk keeps every object in DRAM.

use mooncake_client::{Client, ReplicateConfig};
use mooncake_tests::{bin, client, free_port, http, store_env, value_for, Master, Proc, Store};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mc-tier-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("shm")).unwrap();
    std::fs::create_dir_all(d.join("ssd")).unwrap();
    d
}

fn tier_env(m: &Master, dir: &Path, dram: &str, ssd: &str) -> Vec<(String, String)> {
    let mut env = store_env(m, dram);
    env.push((
        "MOONCAKE_SHM_DIR".into(),
        dir.join("shm").display().to_string(),
    ));
    env.push((
        "MOONCAKE_OFFLOAD_FILE_STORAGE_PATH".into(),
        dir.join("ssd").display().to_string(),
    ));
    env.push(("MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES".into(), ssd.into()));
    env
}

/// `mooncake_store` on a fixed port (its identity across restarts), through `sh`
/// (`pre`: shell commands run first).
fn spawn_store(env: &[(String, String)], port: u16, pre: &str) -> Store {
    let name = format!("tier-store-{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("{name}.log")))
        .unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{pre} exec '{}' --port {port} --http_host 127.0.0.1",
            bin("mooncake_store").display()
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn mooncake_store");
    Store {
        proc: Proc { child, name },
        http_port: port,
    }
}

/// Starts a store and waits until its tier has called the master (puts from then on
/// are written to it).
fn start_store(m: &Master, env: &[(String, String)], port: u16, pre: &str) -> Store {
    let s = spawn_store(env, port, pre);
    assert!(
        s.wait_healthy(Duration::from_secs(20)),
        "store never became healthy"
    );
    let t0 = Instant::now();
    while m.metric("master_tier_capacity_bytes").unwrap_or(0.0) == 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the tier never called the master"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

fn query(m: &Master, key: &str) -> String {
    let (_, body) = http("GET", m.metrics_port, &format!("/query_key?key={key}"), b"").unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Puts each key. DRAM whose objects are all still being written to the tier cannot
/// be evicted yet: a put meeting that answers -200 and is retried after a pause.
async fn put_all(c: &Client, keys: &[String]) {
    for k in keys {
        let mut tries = 0;
        while let Err(e) = c
            .put(k, &value_for(k, MIB), &ReplicateConfig::default())
            .await
        {
            tries += 1;
            assert!(tries < 100, "put {k}: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads every key until all come back (a restarted store reports its tier within a
/// second or two); panics on a wrong byte.
async fn read_all(c: &Client, keys: &[String], within: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        let mut ok = 0;
        let mut last = None;
        for k in keys {
            match c.get(k).await {
                Ok(v) => {
                    assert!(v == value_for(k, MIB), "wrong bytes for {k}");
                    ok += 1;
                }
                Err(e) => last = Some(format!("{k}: {e}")),
            }
        }
        if ok == keys.len() || t0.elapsed() > within {
            if let Some(e) = last {
                eprintln!("read_all: {ok} of {} read; last error {e}", keys.len());
            }
            return ok;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_beyond_dram_come_back_from_ssd_across_restarts_and_remove_frees_them() {
    let m = Master::start(&["--enable_offload=true", "--client_ttl=2"]);
    let dir = scratch("restart");
    let env = tier_env(&m, &dir, "16mb", "256mb");
    let port = free_port();
    let mut store = start_store(&m, &env, port, "");
    let c = client(&m).await;
    let ks = keys("t", 48);
    put_all(&c, &ks).await;
    assert_eq!(read_all(&c, &ks, Duration::from_secs(10)).await, 48);
    let first = query(&m, "t-0");
    assert!(
        first.contains(r#""medium":"disk""#) && !first.contains(r#""medium":"memory""#),
        "t-0 should live only on SSD after 48 MiB went into 16 MiB: {first}"
    );

    store.proc.signal(libc::SIGTERM);
    assert!(store.proc.wait_exit(Duration::from_secs(20)).is_some());
    store = start_store(&m, &env, port, "");
    assert_eq!(
        read_all(&c, &ks, Duration::from_secs(20)).await,
        48,
        "after SIGTERM"
    );

    store.proc.kill9();
    store = start_store(&m, &env, port, "");
    assert_eq!(
        read_all(&c, &ks, Duration::from_secs(20)).await,
        48,
        "after kill -9"
    );

    // Remove one disk-only object, then everything.
    c.remove("t-0", true).await.expect("remove t-0");
    assert!(c.get("t-0").await.is_err());
    assert!(query(&m, "t-0").contains("key not found"));
    let n = c.remove_all(true).await.expect("remove_all");
    assert_eq!(n, 47, "remove_all counts each object once");
    for k in &ks {
        assert!(c.get(k).await.is_err(), "{k} still readable");
    }
    // Their records are discarded: a restart does not bring them back.
    store.proc.signal(libc::SIGTERM);
    assert!(store.proc.wait_exit(Duration::from_secs(20)).is_some());
    let _store = start_store(&m, &env, port, "");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(read_all(&c, &ks[..4], Duration::from_millis(10)).await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_on_disk_is_a_miss_never_wrong_bytes() {
    let m = Master::start(&["--enable_offload=true"]);
    let dir = scratch("corrupt");
    let env = tier_env(&m, &dir, "16mb", "256mb");
    let _store = start_store(&m, &env, free_port(), "");
    let c = client(&m).await;
    let ks = keys("c", 40);
    put_all(&c, &ks).await;
    assert_eq!(read_all(&c, &ks, Duration::from_secs(10)).await, 40);
    // c-1 lives only on SSD: flip a byte in the middle of its value on disk.
    let q = query(&m, "c-1");
    assert!(!q.contains(r#""medium":"memory""#), "{q}");
    let off: u64 = q
        .split(r#""offset":"#)
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("offset in query_key");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("ssd/tier.data"))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off + 300_000).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], off + 300_000).unwrap();
    assert!(
        c.get("c-1").await.is_err(),
        "a corrupt record must not be returned"
    );
    // The others are intact.
    let rest: Vec<String> = ks.iter().filter(|k| *k != "c-1").cloned().collect();
    assert_eq!(read_all(&c, &rest, Duration::from_secs(5)).await, 39);
    // A truncated file: every record past the cut is a miss, never bytes.
    f.set_len(off).unwrap();
    for k in &ks[..8] {
        if let Ok(v) = c.get(k).await {
            assert!(v == value_for(k, MIB), "wrong bytes for {k}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_tier_settings_stop_the_store_with_the_reason() {
    let m = Master::start(&["--enable_offload=true"]);
    let dir = scratch("bad");
    let cases: [(&str, &str, &str); 3] = [
        ("/nonexistent/mc-tier", "1gb", "/nonexistent/mc-tier"),
        (dir.to_str().unwrap(), "1kb", "below one block"),
        (
            dir.to_str().unwrap(),
            "lots",
            "MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES",
        ),
    ];
    for (path, cap, want) in cases {
        let mut env = store_env(&m, "16mb");
        env.push(("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH".into(), path.into()));
        env.push(("MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES".into(), cap.into()));
        let port = free_port();
        let mut s = spawn_store(&env, port, "");
        let code = s.proc.wait_exit(Duration::from_secs(20));
        assert!(
            matches!(code, Some(c) if c != 0),
            "{path} {cap}: exit {code:?}"
        );
        let log =
            std::fs::read_to_string(std::env::temp_dir().join(format!("tier-store-{port}.log")))
                .unwrap_or_default();
        assert!(
            log.contains(want),
            "{path} {cap}: log does not name {want:?}:\n{log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_every_object_in_dram() {
    let m = Master::start(&["--enable_offload=true"]);
    let dir = scratch("full");
    // The tier's data file is /dev/full: every write fails with ENOSPC, as on a
    // full disk.
    std::os::unix::fs::symlink("/dev/full", dir.join("ssd/tier.data")).unwrap();
    let env = tier_env(&m, &dir, "64mb", "1gb");
    let _store = start_store(&m, &env, free_port(), "");
    let c = client(&m).await;
    let ks = keys("f", 24);
    put_all(&c, &ks).await;
    let t0 = Instant::now();
    while m
        .metric("master_tier_persist_failures_total")
        .unwrap_or(0.0)
        < 24.0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the failed writes are not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read_all(&c, &ks, Duration::from_secs(5)).await, 24);
    for k in &ks {
        let q = query(&m, k);
        assert!(
            !q.contains(r#""medium":"disk""#),
            "{k} claims a disk copy: {q}"
        );
    }
    assert_eq!(m.metric("master_tier_objects"), Some(0.0));
    let _ = std::fs::remove_dir_all(&dir);
}

//! Lossless operations with real processes: a store restarted (SIGTERM or kill -9)
//! with the same shared-memory directory and identity gets its objects back; one
//! that does not come back within the master's restart grace loses them as before; a
//! master killed with `--enable_snapshot` comes back with every acknowledged put; a
//! drain moves a store's objects to the others store to store while reads go on,
//! after which the store leaves with nothing lost. Every object is read back and
//! compared byte for byte.

use mooncake_client::{Client, ReplicateConfig};
use mooncake_tests::{bin, client, free_port, http, segments, store_env, value_for, Master, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A store on a fixed HTTP port and shared-memory directory, so that it can be
/// started again as "the same store".
fn spawn_store(m: &Master, port: u16, shm: &Path, segment: &str) -> Store {
    let mut env = store_env(m, segment);
    env.push(("MOONCAKE_SHM_DIR".into(), shm.display().to_string()));
    Store::start_on(port, &env)
}

/// A segment directory that is removed when the test ends, passed or failed (the
/// segment files in it hold shared memory until they are removed).
struct ShmDir(PathBuf);

impl std::ops::Deref for ShmDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ShmDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shm_dir(tag: &str) -> ShmDir {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("mc-lossless-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    ShmDir(d)
}

/// Segment files in `dir` (each with its `.gen` record beside it, not counted).
fn seg_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("mooncake-seg-") && !n.ends_with(".gen")
                })
                .count()
        })
        .unwrap_or(0)
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn put_all(c: &Client, keys: &[String], len: usize) {
    for k in keys {
        c.put(k, &value_for(k, len), &ReplicateConfig::default())
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
}

/// Reads every key until all come back byte-identical or `within` passes; returns
/// how many came back, and panics on a wrong byte (never acceptable).
async fn read_back(c: &Client, keys: &[String], len: usize, within: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        let mut ok = 0;
        for k in keys {
            if let Ok(v) = c.get(k).await {
                assert!(v == value_for(k, len), "{k}: wrong bytes returned");
                ok += 1;
            }
        }
        if ok == keys.len() || t0.elapsed() > within {
            return ok;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_store_gets_its_objects_back() {
    let m = Master::start(&["--client_ttl", "1"]);
    let (pa, pb) = (free_port(), free_port());
    let (da, db) = (shm_dir("ra"), shm_dir("rb"));
    let mut a = spawn_store(&m, pa, &da, "32mb");
    let mut b = spawn_store(&m, pb, &db, "32mb");
    let c = client(&m).await;
    let ks = keys("restart", 40);
    put_all(&c, &ks, 100_000).await;
    assert_eq!(read_back(&c, &ks, 100_000, Duration::ZERO).await, ks.len());

    // SIGTERM: the store leaves its segment file for the next run, and tells the
    // master, which takes it out of capacity at once (its objects held).
    let seg = (32u64 << 20) as f64;
    a.proc.signal(libc::SIGTERM);
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        seg_files(&da),
        1,
        "the segment file is kept for the restart"
    );
    assert_eq!(
        m.metric("master_total_capacity_bytes"),
        Some(seg),
        "a store that left to restart is out of capacity at once"
    );
    let _a = spawn_store(&m, pa, &da, "32mb");
    let got = read_back(&c, &ks, 100_000, Duration::from_secs(20)).await;
    assert_eq!(got, ks.len(), "objects after a SIGTERM restart");

    // kill -9, and back only after the master noticed (client_ttl 1 s): held, then
    // given back.
    b.proc.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _b = spawn_store(&m, pb, &db, "32mb");
    let got = read_back(&c, &ks, 100_000, Duration::from_secs(20)).await;
    assert_eq!(got, ks.len(), "objects after a kill -9 restart");
    assert!(
        m.metric("master_resumed_segments_total").unwrap_or(0.0) >= 2.0,
        "both stores were recognised by their segment's generation"
    );
    assert_eq!(
        segments(&m).len(),
        2,
        "no segment left behind: {:?}",
        segments(&m)
    );
    // New puts land on the returned stores as before.
    let more = keys("after-restart", 10);
    put_all(&c, &more, 50_000).await;
    assert_eq!(
        read_back(&c, &more, 50_000, Duration::ZERO).await,
        more.len()
    );
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_return_within_the_grace_loses_its_objects() {
    let m = Master::start(&["--client_ttl", "1", "--segment_restart_grace_sec", "2"]);
    let (pa, pb) = (free_port(), free_port());
    let (da, db) = (shm_dir("ga"), shm_dir("gb"));
    let mut a = spawn_store(&m, pa, &da, "16mb");
    let _b = spawn_store(&m, pb, &db, "16mb");
    let c = client(&m).await;
    let ks = keys("grace", 30);
    put_all(&c, &ks, 50_000).await;
    a.proc.kill9();
    // ttl (1 s) + grace (2 s) + a sweep.
    let t0 = Instant::now();
    while segments(&m).len() != 1 && t0.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(segments(&m).len(), 1, "the silent store's segment is gone");
    let left = read_back(&c, &ks, 50_000, Duration::ZERO).await;
    assert!(
        left < ks.len(),
        "objects of the store that never came back are gone"
    );
    // Coming back now: a new, empty segment; nothing stale is served.
    let _a = spawn_store(&m, pa, &da, "16mb");
    assert_eq!(read_back(&c, &ks, 50_000, Duration::ZERO).await, left);
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_with_its_index_on_disk_serves_every_acknowledged_put() {
    let dir = std::env::temp_dir().join(format!("mc-lossless-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let snap = format!("--snapshot_backup_dir={}", dir.display());
    let flags = ["--enable_snapshot=true", snap.as_str(), "--client_ttl", "2"];
    let (rpc, met) = (free_port(), free_port());
    let mut m = Master::start_on_ports(rpc, met, &flags);
    let shm = shm_dir("snap");
    let _s = spawn_store(&m, free_port(), &shm, "32mb");
    let c = client(&m).await;
    let ks = keys("durable", 60);
    put_all(&c, &ks, 60_000).await;
    c.remove(&ks[0], true).await.unwrap();
    m.proc.kill9();
    let m = Master::start_on_ports(rpc, met, &flags);
    let c = client(&m).await;
    let got = read_back(&c, &ks[1..], 60_000, Duration::from_secs(20)).await;
    assert_eq!(got, ks.len() - 1, "every acknowledged put after a kill -9");
    assert!(
        c.get(&ks[0]).await.is_err(),
        "an acknowledged remove stays removed"
    );
    let more = keys("after-master-restart", 10);
    put_all(&c, &more, 10_000).await;
    assert_eq!(
        read_back(&c, &more, 10_000, Duration::ZERO).await,
        more.len()
    );
    drop(m);

    // A snapshot that is not ours: a clear error naming the file, no start.
    let bad = std::env::temp_dir().join(format!("mc-lossless-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&bad);
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("snapshot-0000000001"), b"{\"objects\": []}").unwrap();
    let out = Command::new(bin("mooncake_master"))
        .args(["--rpc_port", &free_port().to_string()])
        .args(["--metrics_port", &free_port().to_string()])
        .arg("--enable_snapshot")
        .arg(format!("--snapshot_backup_dir={}", bad.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("snapshot-0000000001") && err.contains("not a mooncake master index file"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bad);
    let _ = std::fs::remove_dir_all(&shm);
}

fn drain_query(m: &Master, job: &str) -> serde_json::Value {
    let (_, body) = http(
        "GET",
        m.metrics_port,
        &format!("/api/v1/drain_jobs/query?job_id={job}"),
        b"",
    )
    .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_store_leaves_with_nothing_lost_and_reads_never_fail() {
    let m = Master::start(&["--client_ttl", "2"]);
    let (da, db) = (shm_dir("da"), shm_dir("db"));
    let before = segments(&m);
    let mut a = spawn_store(&m, free_port(), &da, "32mb");
    let drained = segments(&m)
        .into_iter()
        .find(|s| !before.contains(s))
        .expect("the first store's segment");
    let _b = spawn_store(&m, free_port(), &db, "32mb");
    let c = client(&m).await;
    let ks = keys("drain", 60);
    put_all(&c, &ks, 120_000).await;

    // Bad requests first: nothing is marked, nothing moves.
    let bad = |body: &str| {
        let (code, b) = http(
            "POST",
            m.metrics_port,
            "/api/v1/drain_jobs",
            body.as_bytes(),
        )
        .unwrap();
        (code, String::from_utf8_lossy(&b).into_owned())
    };
    let (code, body) = bad(r#"{"segments": ["no-such-segment:1"]}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown segment no-such-segment:1"), "{body}");
    let every: Vec<String> = segments(&m);
    let (code, body) = bad(&serde_json::json!({ "segments": every }).to_string());
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("would lose"), "{body}");
    let (code, _) = bad("not json");
    assert_eq!(code, 400);

    // Readers go on during the drain.
    let reader = {
        let (c, ks) = (client(&m).await, ks.clone());
        tokio::spawn(async move {
            let (mut reads, mut failures) = (0u64, 0u64);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(4) {
                for k in &ks {
                    match c.get(k).await {
                        Ok(v) => {
                            assert!(
                                v == value_for(k, 120_000),
                                "{k}: wrong bytes during the drain"
                            );
                            reads += 1;
                        }
                        Err(_) => failures += 1,
                    }
                }
            }
            (reads, failures)
        })
    };
    // The drained store is paused around the two requests below, so that its first job
    // is certainly still running when the second one arrives.
    a.proc.signal(libc::SIGSTOP);
    let body =
        serde_json::json!({"segments": [drained], "target_segments": [], "max_concurrency": 4});
    let (code, resp) = http(
        "POST",
        m.metrics_port,
        "/api/v1/drain_jobs",
        body.to_string().as_bytes(),
    )
    .unwrap();
    let resp: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(code, 200, "{resp}");
    let job = resp["job_id"].as_str().unwrap().to_string();
    assert_eq!(resp["status_name"], "RUNNING", "{resp}");
    // One drain at a time.
    let other: Vec<String> = segments(&m).into_iter().filter(|s| *s != drained).collect();
    let (code, body) = bad(&serde_json::json!({ "segments": other }).to_string());
    a.proc.signal(libc::SIGCONT);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("one drain at a time"), "{body}");
    let t0 = Instant::now();
    let mut q = drain_query(&m, &job);
    while q["status_name"] == "RUNNING" && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        q = drain_query(&m, &job);
    }
    assert_eq!(q["status_name"], "SUCCEEDED", "{q}");
    eprintln!(
        "drain: {} objects, {} bytes moved in {:?} (polled every 200 ms)",
        q["succeeded_units"],
        q["migrated_bytes"],
        t0.elapsed()
    );
    // Placement spread the objects over both stores: the drained one's moved.
    let moved = q["succeeded_units"].as_u64().unwrap();
    assert!(
        moved > 0 && moved == q["total_units"].as_u64().unwrap(),
        "{q}"
    );
    assert_eq!(q["failed_units"], 0, "{q}");
    assert_eq!(q["migrated_bytes"].as_u64(), Some(moved * 120_000), "{q}");
    let (reads, failures) = reader.await.unwrap();
    assert!(reads > 0);
    assert_eq!(failures, 0, "reads failed during the drain");

    // The drained store leaves for good (SIGTERM, as a pod is stopped): the master
    // holds nothing for it, so its segment leaves at once and its file, which holds
    // the segment's memory, is removed. Every object is still there.
    assert_eq!(
        seg_files(&da),
        1,
        "the drained store's segment file, before it stops"
    );
    a.proc.signal(libc::SIGTERM);
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        seg_files(&da),
        0,
        "a drained store leaves no segment file behind"
    );
    assert!(
        !segments(&m).contains(&drained),
        "the drained segment is not held for a restart: {:?}",
        segments(&m)
    );
    let _ = std::fs::remove_dir_all(&da);
    assert_eq!(read_back(&c, &ks, 120_000, Duration::ZERO).await, ks.len());
    let _ = std::fs::remove_dir_all(&db);
}

//! The SSD tier with real processes: a master with `--enable_offload` and a store
//! whose DRAM holds a fraction of what is put, with `MOONCAKE_OFFLOAD_FILE_STORAGE_PATH`.
//! Objects evicted from DRAM are read back from the tier byte for byte, across SIGTERM
//! and kill -9 restarts of the store; remove frees them; a record changed on disk is
//! a miss, never wrong bytes; a bad path or capacity stops the store with the reason;
//! a full disk keeps every object in DRAM; a tenant's records on the tier are counted
//! apart from the memory its quota caps.

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
    with_tier(store_env(m, dram), dir, ssd)
}

/// `env` with a tier (and the segment's files) in `dir`.
fn with_tier(mut env: Vec<(String, String)>, dir: &Path, ssd: &str) -> Vec<(String, String)> {
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
/// be freed yet: a put meeting that waits for the writes, and answers -200 only when
/// they take longer than the master waits; it is retried after a pause.
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
    let cases: [(&str, &str, &str, &str); 4] = [
        ("/nonexistent/mc-tier", "1gb", "", "/nonexistent/mc-tier"),
        (dir.to_str().unwrap(), "1kb", "", "below one block"),
        (
            dir.to_str().unwrap(),
            "lots",
            "",
            "MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES",
        ),
        (
            dir.to_str().unwrap(),
            "1gb",
            "sometimes",
            "MOONCAKE_TIER_DIRECT_WRITES",
        ),
    ];
    for (path, cap, direct, want) in cases {
        let mut env = store_env(&m, "16mb");
        env.push(("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH".into(), path.into()));
        env.push(("MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES".into(), cap.into()));
        env.push(("MOONCAKE_TIER_DIRECT_WRITES".into(), direct.into()));
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

/// A `/metrics` sample, 0 when absent.
fn metric(m: &Master, name: &str) -> f64 {
    m.metric(name).unwrap_or(0.0)
}

/// Polls until no demotion is being written (its memory is freed when it ends) and
/// DRAM is back under the high watermark (0.9, the default). Waiting for the first
/// alone returned at once when the master's eviction round had not yet run (a loaded
/// host): the next puts then filled DRAM, and a put's own eviction dropped the objects
/// the test meant to find on disk.
async fn demotions_settle(m: &Master) {
    let t0 = Instant::now();
    loop {
        let demoting = metric(m, "master_tier_demoting_bytes");
        let used = metric(m, "master_allocated_bytes");
        let cap = metric(m, "master_total_capacity_bytes");
        if demoting == 0.0 && used <= 0.9 * cap {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "demotions never ended ({demoting} bytes demoting, {used} of {cap} allocated)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--offload_on_evict=true`: nothing is written to the SSD tier while DRAM is below
/// its high watermark; past it, the eviction policy's victims are demoted (written,
/// then their memory freed) and read back from disk byte for byte, whether the writer
/// is paced or not: nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_on_evict_writes_only_the_objects_eviction_takes_out_of_dram() {
    let m = Master::start(&[
        "--enable_offload=true",
        "--offload_on_evict=true",
        "--eviction_high_watermark_ratio=0.9",
    ]);
    let dir = scratch("demote");
    let env = tier_env(&m, &dir, "32mb", "256mb");
    let _store = start_store(&m, &env, free_port(), "");
    let c = client(&m).await;
    // 20 MiB into 32 MiB: below the watermark (28.8 MiB), nothing goes to disk.
    let below = keys("d", 20);
    put_all(&c, &below).await;
    // (Not read here: a read makes an object "reused", which the 2q policy keeps
    // longer, and the order of the victims is checked below.)
    // Give the owner's long poll time to hand out anything that was (wrongly) queued.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(metric(&m, "master_tier_persists_started_total"), 0.0);
    assert_eq!(metric(&m, "master_tier_objects"), 0.0);
    assert_eq!(metric(&m, "tier_writes"), 0.0);
    for k in &below {
        let q = query(&m, k);
        assert!(!q.contains(r#""medium":"disk""#), "{k} on disk early: {q}");
    }
    // 40 MiB more, paced: each put waits for the demotions in flight to end, so
    // eviction never has to drop.
    let above = keys("e", 40);
    for k in &above {
        put_all(&c, std::slice::from_ref(k)).await;
        demotions_settle(&m).await;
    }
    let all: Vec<String> = below.iter().chain(&above).cloned().collect();
    let demoted = metric(&m, "master_tier_demotions_total");
    let drops = metric(&m, "master_tier_evict_drops_total");
    assert!(demoted >= 25.0, "60 MiB into 32 MiB demoted only {demoted}");
    assert_eq!(drops, 0.0, "a paced writer lost objects");
    // The first puts were the policy's first victims: on disk, no longer in DRAM.
    let q = query(&m, "d-0");
    assert!(
        q.contains(r#""medium":"disk""#) && !q.contains(r#""medium":"memory""#),
        "d-0 should have been demoted: {q}"
    );
    // Every object reads back byte for byte, from DRAM or from disk.
    assert_eq!(read_all(&c, &all, Duration::from_secs(10)).await, 60);
    let on_disk = all
        .iter()
        .filter(|k| query(&m, k).contains(r#""medium":"disk""#))
        .count();
    assert_eq!(on_disk as f64, demoted, "one record per demotion");
    assert_eq!(metric(&m, "master_tier_objects"), demoted);
    assert_eq!(
        metric(&m, "master_tier_persists_started_total"),
        demoted,
        "only demotions were written"
    );

    // Unpaced: a burst of puts may outrun the rounds' demotions. A put that finds
    // no memory demotes its victims itself and waits for them: nothing is dropped.
    let burst = keys("b", 40);
    put_all(&c, &burst).await;
    demotions_settle(&m).await;
    let drops = metric(&m, "master_tier_evict_drops_total");
    let mut missing = 0;
    for k in &burst {
        match c.get(k).await {
            Ok(v) => assert!(v == value_for(k, MIB), "wrong bytes for {k}"),
            Err(_) => missing += 1,
        }
    }
    assert_eq!(
        (missing, drops),
        (0, 0.0),
        "a burst lost objects (missing, dropped)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--offload_on_evict=true`, DRAM filled before any eviction round runs: with the
/// high watermark at 1.0 no round ever starts, so every object that leaves DRAM is
/// taken by a put's own eviction, with four writers at once. Those victims are
/// demoted (the put waits for their memory), never dropped: every object put reads
/// back byte for byte, from DRAM or disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_finds_dram_full_demotes_its_victims_instead_of_dropping_them() {
    let m = Master::start(&[
        "--enable_offload=true",
        "--offload_on_evict=true",
        "--eviction_high_watermark_ratio=1.0",
    ]);
    let dir = scratch("put-demote");
    let env = tier_env(&m, &dir, "16mb", "256mb");
    let _store = start_store(&m, &env, free_port(), "");
    let all = keys("w", 64);
    let mut writers = Vec::new();
    for part in all.chunks(16) {
        let (c, part) = (client(&m).await, part.to_vec());
        writers.push(tokio::spawn(async move {
            // Each key once, back to back; a put refused (-200: its wait for the
            // owner ran out, which a loaded host may cause) is put again later.
            let mut refused = Vec::new();
            for k in &part {
                let v = value_for(k, MIB);
                if c.put(k, &v, &ReplicateConfig::default()).await.is_err() {
                    refused.push(k.clone());
                }
            }
            let n = refused.len();
            put_all(&c, &refused).await;
            n
        }));
    }
    let mut refused = 0;
    for w in writers {
        refused += w.await.unwrap();
    }
    // Demotions whose memory no put waited for may still be written.
    let t0 = Instant::now();
    while metric(&m, "master_tier_demoting_bytes") > 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "demotions never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let demoted = metric(&m, "master_tier_demotions_total");
    let drops = metric(&m, "master_tier_evict_drops_total");
    eprintln!("64 MiB into 16 MiB: {demoted} demoted, {drops} dropped, {refused} puts refused");
    assert_eq!(drops, 0.0, "a put's own eviction dropped objects");
    assert!(demoted >= 48.0, "64 MiB into 16 MiB demoted only {demoted}");
    assert_eq!(metric(&m, "master_tier_objects"), demoted);
    let c = client(&m).await;
    assert_eq!(read_all(&c, &all, Duration::from_secs(10)).await, all.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--promotion_on_hit=true`: a get served from a disk replica is answered from disk
/// and copies the object back into its owner's DRAM; it then has a memory replica
/// (and keeps its disk one), with the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_hit_is_promoted_back_into_dram() {
    let m = Master::start(&[
        "--enable_offload=true",
        "--offload_on_evict=true",
        "--promotion_on_hit=true",
    ]);
    let dir = scratch("promote");
    let env = tier_env(&m, &dir, "16mb", "256mb");
    let _store = start_store(&m, &env, free_port(), "");
    let c = client(&m).await;
    let ks = keys("p", 24);
    for k in &ks {
        put_all(&c, std::slice::from_ref(k)).await;
        demotions_settle(&m).await;
    }
    let q = query(&m, "p-0");
    assert!(
        q.contains(r#""medium":"disk""#) && !q.contains(r#""medium":"memory""#),
        "p-0 should live only on disk: {q} (hits {}, promotions {}, demotions {})",
        metric(&m, "master_tier_hits_total"),
        metric(&m, "master_tier_promotions_total"),
        metric(&m, "master_tier_demotions_total")
    );
    assert_eq!(metric(&m, "master_tier_promotions_total"), 0.0);
    // The read is served (from disk), whatever the promotion does.
    let v = c.get("p-0").await.expect("get p-0 from disk");
    assert!(v == value_for("p-0", MIB), "wrong bytes from disk");
    let t0 = Instant::now();
    loop {
        let q = query(&m, "p-0");
        // (/query_key lists the memory replica while the copy is written; the
        // promotion counts once it is complete.)
        if q.contains(r#""medium":"memory""#)
            && metric(&m, "master_tier_promotions_total") >= 1.0
            && q.contains(r#""complete":true"#)
        {
            assert!(q.contains(r#""medium":"disk""#), "the disk copy stays: {q}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "p-0 never came back into DRAM: {q}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&m, "master_tier_promotions_total"), 1.0);
    assert_eq!(metric(&m, "master_tier_promotion_failures_total"), 0.0);
    let v = c.get("p-0").await.expect("get p-0 from DRAM");
    assert!(v == value_for("p-0", MIB), "wrong bytes after promotion");
    // The promotion wrote nothing to disk (its memory may have made the round
    // demote another object), and a remove takes both copies.
    demotions_settle(&m).await;
    let demoted = metric(&m, "master_tier_demotions_total");
    assert_eq!(
        metric(&m, "master_tier_persists_started_total"),
        demoted,
        "only demotions were written"
    );
    assert_eq!(metric(&m, "master_tier_objects"), demoted);
    c.remove("p-0", true).await.expect("remove p-0");
    assert!(query(&m, "p-0").contains("key not found"));
    assert!(c.get("p-0").await.is_err());
    assert_eq!(metric(&m, "master_tier_objects"), demoted - 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--offload_on_evict=true`: a key being demoted stays readable. Gets run in a loop
/// over every key put so far while puts past the high watermark make eviction demote
/// the oldest ones; the memory replica a demotion writes from is given to readers
/// until the disk record is complete and registered, so no get ever misses (the
/// writer is paced so that eviction never has to drop an object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_being_demoted_never_misses() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let m = Master::start(&[
        "--enable_offload=true",
        "--offload_on_evict=true",
        "--eviction_high_watermark_ratio=0.9",
        // Short leases: the reader's gets would otherwise keep every key it reads
        // out of eviction's reach.
        "--default_kv_lease_ttl=5",
    ]);
    let dir = scratch("demote-reads");
    let env = tier_env(&m, &dir, "32mb", "256mb");
    let _store = start_store(&m, &env, free_port(), "");
    let c = client(&m).await;
    let all = keys("g", 64);
    put_all(&c, &all[..24]).await;
    let written = Arc::new(AtomicUsize::new(24));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (r, all, written, stop) =
            (client(&m).await, all.clone(), written.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut reads, mut misses) = (0usize, Vec::new());
            while !stop.load(Ordering::Acquire) {
                let n = written.load(Ordering::Acquire);
                // Newest first: the oldest keys are the next victims, read last.
                for k in all[..n].iter().rev() {
                    match r.get(k).await {
                        Ok(v) => assert!(v == value_for(k, MIB), "wrong bytes for {k}"),
                        Err(e) => misses.push(format!("{k}: {e}")),
                    }
                    reads += 1;
                }
            }
            (reads, misses)
        })
    };
    for (i, one) in all.iter().enumerate().skip(24) {
        put_all(&c, std::slice::from_ref(one)).await;
        written.store(i + 1, Ordering::Release);
        demotions_settle(&m).await;
    }
    // One more pass of the reader over everything, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Release);
    let (reads, misses) = reader.await.unwrap();
    let demoted = metric(&m, "master_tier_demotions_total");
    let hits = metric(&m, "master_tier_demoting_hits_total");
    eprintln!("{reads} gets, {demoted} demotions, {hits} gets of a key being demoted");
    assert_eq!(
        metric(&m, "master_tier_evict_drops_total"),
        0.0,
        "a paced writer lost objects"
    );
    assert!(demoted >= 25.0, "64 MiB into 32 MiB demoted only {demoted}");
    assert!(
        misses.is_empty(),
        "{} of {reads} gets missed a key that was in DRAM or on disk: {:?}",
        misses.len(),
        &misses[..misses.len().min(5)]
    );
    assert_eq!(read_all(&c, &all, Duration::from_secs(10)).await, all.len());
    let _ = std::fs::remove_dir_all(&dir);
}

const TIER_TOKENS: &str = "cluster:tok-tier-cluster-1111\nalpha:tok-tier-alpha-2222\n";
const TIER_CLUSTER: &str = "tok-tier-cluster-1111";
const TIER_ALPHA: &str = "tok-tier-alpha-2222";

/// One request to the master's admin port with a bearer token; status and body.
fn admin(m: &Master, method: &str, path: &str, body: &str, token: &str) -> (u16, String) {
    mooncake_tests::http_text(method, m.metrics_port, path, body, Some(token))
}

/// The quota snapshot of `alpha` (asked with the cluster token).
fn alpha_snapshot(m: &Master) -> serde_json::Value {
    let (status, body) = admin(
        m,
        "GET",
        "/api/v1/tenant_quotas?tenant_id=alpha",
        "",
        TIER_CLUSTER,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["data"].clone()
}

/// How many of `keys` have a memory replica and how many a disk one (alpha's view).
fn media(m: &Master, keys: &[String]) -> (u64, u64) {
    let (mut mem, mut disk) = (0, 0);
    for k in keys {
        let (_, q) = admin(m, "GET", &format!("/query_key?key={k}"), "", TIER_ALPHA);
        mem += u64::from(q.contains(r#""medium":"memory""#));
        disk += u64::from(q.contains(r#""medium":"disk""#));
    }
    (mem, disk)
}

/// `master_tenant_disk_bytes{tenant="alpha"}`.
fn alpha_disk_metric(m: &Master) -> Option<f64> {
    let (_, body) = http("GET", m.metrics_port, "/metrics", b"").ok()?;
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with(r#"master_tenant_disk_bytes{tenant="alpha"}"#))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// With tenants, an object the SSD tier holds is counted in its tenant's `disk_bytes`
/// (quota answers and metrics), apart from `charged_bytes`, the memory the quota caps:
/// demotion moves an object's bytes from the one to the other, a disk-only object does
/// not close a quota that its memory alone leaves open, a promotion charges memory
/// again and keeps the record, and removing a disk-only object gives its disk bytes
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_objects_on_ssd_are_its_disk_bytes_apart_from_its_memory_quota() {
    let dir = scratch("tenant");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, TIER_TOKENS).unwrap();
    let m = Master::start(&[
        "--enable_offload=true",
        "--offload_on_evict=true",
        "--promotion_on_hit=true",
        &format!("--auth_token_file={}", tokens.display()),
    ]);
    let mut env = tier_env(&m, &dir, "16mb", "256mb");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), TIER_CLUSTER.into()));
    let _store = start_store(&m, &env, free_port(), "");
    let c = {
        let mut cfg = mooncake_client::ClientConfig::new(mooncake_tests::node_for(&m));
        cfg.tuning.credential =
            Some(mooncake_common::auth::Credential::from_token(TIER_ALPHA, "test").unwrap());
        Client::connect(cfg).await.expect("alpha's client connects")
    };
    let mib = MIB as u64;
    let ks = keys("q", 24);
    for k in &ks {
        put_all(&c, std::slice::from_ref(k)).await;
        demotions_settle(&m).await;
    }
    // Demoted: q-0 lives only on disk; every object is counted once, by where it is.
    let q0 = admin(&m, "GET", "/query_key?key=q-0", "", TIER_ALPHA).1;
    assert!(
        q0.contains(r#""medium":"disk""#) && !q0.contains(r#""medium":"memory""#),
        "q-0 should live only on disk: {q0}"
    );
    let (mem, disk) = media(&m, &ks);
    eprintln!("after the demotions: {mem} objects in memory, {disk} on disk");
    assert!(
        disk >= 8,
        "24 MiB into 16 MiB put only {disk} objects on disk"
    );
    let s = alpha_snapshot(&m);
    assert_eq!(s["charged_bytes"], mem * mib, "{s}");
    assert_eq!(s["disk_bytes"], disk * mib, "{s}");
    assert_eq!(alpha_disk_metric(&m), Some((disk * mib) as f64));
    // The cluster tenant (the store) holds nothing.
    let (_, body) = admin(
        &m,
        "GET",
        "/api/v1/tenant_quotas?tenant_id=cluster",
        "",
        TIER_CLUSTER,
    );
    assert!(body.contains(r#""disk_bytes":0"#), "{body}");

    // A quota two objects above the memory alpha holds: alpha holds far more than
    // that with its disk records, and its puts are still admitted.
    let quota = (mem + 2) * mib;
    let body = format!(r#"{{"requested_quota_bytes": {quota}}}"#);
    let (status, answer) = admin(
        &m,
        "PUT",
        "/api/v1/tenant_quotas?tenant_id=alpha",
        &body,
        TIER_CLUSTER,
    );
    assert_eq!(status, 200, "{answer}");
    let s = alpha_snapshot(&m);
    assert_eq!(s["over_quota"], false, "{s}");
    assert_eq!(s["admission_closed"], false, "{s}");
    c.put(
        "extra",
        &value_for("extra", MIB),
        &ReplicateConfig::default(),
    )
    .await
    .expect("a put within the memory quota");
    c.remove("extra", true).await.expect("remove extra");
    let (status, answer) = admin(
        &m,
        "DELETE",
        "/api/v1/tenant_quotas?tenant_id=alpha",
        "",
        TIER_CLUSTER,
    );
    assert_eq!(status, 200, "{answer}");
    demotions_settle(&m).await;

    // Promoted: q-0 is back in memory and keeps its record, counted in both.
    let v = c.get("q-0").await.expect("get q-0 from disk");
    assert!(v == value_for("q-0", MIB), "wrong bytes from disk");
    let t0 = Instant::now();
    loop {
        let q = admin(&m, "GET", "/query_key?key=q-0", "", TIER_ALPHA).1;
        if q.contains(r#""medium":"memory""#)
            && q.contains(r#""complete":true"#)
            && metric(&m, "master_tier_promotions_total") >= 1.0
        {
            assert!(q.contains(r#""medium":"disk""#), "the disk copy stays: {q}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "q-0 never came back into DRAM: {q}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    demotions_settle(&m).await;
    let (mem, disk) = media(&m, &ks);
    eprintln!("after the promotion: {mem} objects in memory, {disk} on disk");
    let s = alpha_snapshot(&m);
    assert_eq!(s["charged_bytes"], mem * mib, "after the promotion: {s}");
    assert_eq!(s["disk_bytes"], disk * mib, "after the promotion: {s}");

    // Removed while only on disk: its disk bytes go, the memory charge stays.
    let gone = ks
        .iter()
        .find(|k| {
            let q = admin(&m, "GET", &format!("/query_key?key={k}"), "", TIER_ALPHA).1;
            q.contains(r#""medium":"disk""#) && !q.contains(r#""medium":"memory""#)
        })
        .expect("a disk-only object")
        .clone();
    let before = alpha_snapshot(&m);
    c.remove(&gone, true)
        .await
        .expect("remove a disk-only object");
    let s = alpha_snapshot(&m);
    assert_eq!(s["charged_bytes"], before["charged_bytes"], "{s}");
    assert_eq!(
        s["disk_bytes"].as_u64(),
        before["disk_bytes"].as_u64().map(|b| b - mib),
        "{s}"
    );
    assert_eq!(
        alpha_disk_metric(&m),
        s["disk_bytes"].as_u64().map(|b| b as f64)
    );
    // Everything removed: nothing is charged anywhere.
    c.remove_all(true).await.expect("remove_all");
    let s = alpha_snapshot(&m);
    assert_eq!(
        (s["charged_bytes"].as_u64(), s["disk_bytes"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store's `/metrics` sample, 0 when absent.
fn store_metric(s: &Store, name: &str) -> f64 {
    let (_, body) = http("GET", s.http_port, "/metrics", b"").unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

/// `MOONCAKE_TIER_DIRECT_WRITES=always`: every demotion is written around the page
/// cache, laid out on one of the owner's threads while the other writes the record
/// before it, and records placed one after another share pages. Four writers push
/// 64 MiB through 16 MiB of DRAM; every object reads back byte for byte, and again
/// after the store is killed (-9) and restarted on the same directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_keep_every_demoted_object_across_a_kill() {
    let m = Master::start(&[
        "--enable_offload=true",
        "--offload_on_evict=true",
        "--client_ttl=2",
    ]);
    let dir = scratch("direct");
    let mut env = tier_env(&m, &dir, "16mb", "256mb");
    env.push(("MOONCAKE_TIER_DIRECT_WRITES".into(), "always".into()));
    let port = free_port();
    let store = start_store(&m, &env, port, "");
    let all = keys("x", 64);
    let mut writers = Vec::new();
    for part in all.chunks(16) {
        let (c, part) = (client(&m).await, part.to_vec());
        writers.push(tokio::spawn(async move { put_all(&c, &part).await }));
    }
    for w in writers {
        w.await.unwrap();
    }
    demotions_settle(&m).await;
    let demoted = metric(&m, "master_tier_demotions_total");
    let direct = store_metric(&store, "store_tier_direct_writes_total");
    eprintln!("64 MiB into 16 MiB: {demoted} demoted, {direct} written direct");
    assert!(demoted >= 40.0, "64 MiB into 16 MiB demoted only {demoted}");
    assert_eq!(metric(&m, "master_tier_evict_drops_total"), 0.0);
    // (On a file system without O_DIRECT, tmpfs, the page cache takes them.)
    let tmpfs = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 2 && f[2] == "tmpfs" && dir.starts_with(f[1]) && f[1] != "/"
        });
    if !tmpfs {
        assert_eq!(direct, demoted, "every demotion went around the page cache");
    }
    let c = client(&m).await;
    assert_eq!(read_all(&c, &all, Duration::from_secs(10)).await, 64);
    let on_disk: Vec<String> = all
        .iter()
        .filter(|k| query(&m, k).contains(r#""medium":"disk""#))
        .cloned()
        .collect();
    assert_eq!(on_disk.len() as f64, demoted);

    let mut store = store;
    store.proc.kill9();
    let _store = start_store(&m, &env, port, "");
    assert_eq!(
        read_all(&c, &on_disk, Duration::from_secs(20)).await,
        on_disk.len(),
        "after kill -9"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With HA masters (`MOONCAKE_MASTER=etcd://...`) the store's tier follows the leader:
/// its records are learnt by the leader, and after a kill -9 of that leader by the one
/// that takes over (the standby's replicated state holds the memory replicas, the
/// owner reports what its tier holds), so objects that live only on SSD read back;
/// puts beyond DRAM go on to the tier under the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_follows_the_ha_leader_through_a_kill_9() {
    tier_through_a_takeover(libc::SIGKILL).await;
}

/// As above with the leader stopped (SIGSTOP: a host that hangs, or a partition),
/// which answers nothing and closes nothing: the owner's call waiting at it is given
/// up as soon as etcd names another leader, not after the call's timeout, so the
/// objects on SSD are back within seconds of the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_follows_the_ha_leader_away_from_a_stopped_one() {
    tier_through_a_takeover(libc::SIGSTOP).await;
}

/// Puts 40 × 1 MiB through a store with 16 MiB of DRAM and an SSD tier under an HA
/// pair, sends the leader `sig`, and reads everything back under the new leader
/// within 4 s of its taking over.
async fn tier_through_a_takeover(sig: i32) {
    use mooncake_tests::etcd::{etcd_available, ha_client, ha_store_env, wait_leading};
    use mooncake_tests::ha::{Admin, HaPair};
    if !etcd_available() {
        return;
    }
    let flags = ["--enable_offload=true", "--client_ttl=2"];
    let mut pair = HaPair::start("ha-tier", &flags, Admin::Open);
    let (ep, l) = (pair.endpoints.clone(), pair.leader);
    let ms = &mut pair.masters;
    let dir = scratch("ha");
    let env = with_tier(ha_store_env(&ep, "16mb"), &dir, "256mb");
    let _store = start_store(&ms[l], &env, free_port(), "");
    let c = ha_client(&ep).await;
    let ks = keys("h", 40);
    put_all(&c, &ks).await;
    assert_eq!(read_all(&c, &ks, Duration::from_secs(10)).await, 40);
    let first = query(&ms[l], "h-0");
    assert!(
        first.contains(r#""medium":"disk""#) && !first.contains(r#""medium":"memory""#),
        "h-0 should live only on SSD after 40 MiB went into 16 MiB: {first}"
    );

    let killed = Instant::now();
    ms[l].proc.signal(sig);
    let n = 1 - l;
    wait_leading(&ms[n], Duration::from_secs(30));
    let leading = killed.elapsed();
    assert_eq!(
        read_all(&c, &ks, Duration::from_secs(4)).await,
        40,
        "objects on SSD read back under the new leader"
    );
    eprintln!(
        "signal {sig} to the leader -> new leader {leading:?}, every object read back {:?}",
        killed.elapsed()
    );
    assert!(
        query(&ms[n], "h-0").contains(r#""medium":"disk""#),
        "the new leader knows h-0's disk replica: {}",
        query(&ms[n], "h-0")
    );
    let more = keys("h2", 24);
    put_all(&c, &more).await;
    assert_eq!(read_all(&c, &more, Duration::from_secs(10)).await, 24);
    assert!(
        query(&ms[n], "h2-0").contains(r#""medium":"disk""#),
        "puts under the new leader reach the tier: {}",
        query(&ms[n], "h2-0")
    );
    let _ = c.close().await;
    pair.masters[l].proc.signal(libc::SIGCONT);
    drop(pair);
    let _ = std::fs::remove_dir_all(&dir);
}

//! A rolling update under load: while a client keeps putting new objects and reading
//! back acknowledged ones, every store is restarted in turn (SIGTERM, started again
//! with the same directory and identity), then the master is killed (`kill -9`) and
//! started again with its on-disk index. Afterwards every acknowledged object is read
//! back byte-identical: 0 lost, 0 wrong bytes. The load's errors and its longest pause
//! per step are printed (they are figures, not assertions).

use mooncake_client::ReplicateConfig;
use mooncake_tests::{client, free_port, store_env, value_for, Master, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LEN: usize = 16 * 1024;
/// Puts at most this many objects (a quarter of the pool), so that eviction never
/// takes an acknowledged one.
const MAX_PUTS: u64 = 2000;

/// A store on a fixed HTTP port and shared-memory directory, so that it can be
/// started again as "the same store".
fn spawn_store(m: &Master, port: u16, shm: &Path) -> Store {
    let mut env = store_env(m, "48mb");
    env.push(("MOONCAKE_SHM_DIR".into(), shm.display().to_string()));
    Store::start_on(port, &env)
}

fn dir(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("mc-rolling-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What the load saw during one step.
#[derive(Default, Clone, Copy)]
struct StepFigures {
    ops: u64,
    errors: u64,
    longest_pause: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_every_role_under_load_loses_nothing() {
    let snap = std::env::temp_dir().join(format!("mc-rolling-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&snap);
    let snap_flag = format!("--snapshot_backup_dir={}", snap.display());
    let flags = [
        "--enable_snapshot=true",
        snap_flag.as_str(),
        "--client_ttl",
        "2",
    ];
    let (rpc, met) = (free_port(), free_port());
    let mut m = Master::start_on_ports(rpc, met, &flags);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dirs: Vec<PathBuf> = (0..3).map(|i| dir(&format!("s{i}"))).collect();
    let mut stores: Vec<Store> = (0..3)
        .map(|i| spawn_store(&m, ports[i], &dirs[i]))
        .collect();

    let steps = ["store 1", "store 2", "store 3", "master", "after"];
    let step = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let wrong = Arc::new(AtomicUsize::new(0));
    let load = {
        let (c, step, stop, acked, wrong) = (
            client(&m).await,
            step.clone(),
            stop.clone(),
            acked.clone(),
            wrong.clone(),
        );
        tokio::spawn(async move {
            let mut figures = vec![StepFigures::default(); 5];
            let mut last_ok = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let s = step.load(Ordering::Relaxed);
                let key = format!("roll-{i}");
                i += 1;
                let put = if i <= MAX_PUTS {
                    c.put(&key, &value_for(&key, LEN), &ReplicateConfig::default())
                        .await
                } else {
                    Ok(())
                };
                let read = {
                    let pick = {
                        let a = acked.lock().unwrap();
                        (!a.is_empty()).then(|| a[(i as usize * 7919) % a.len()].clone())
                    };
                    match pick {
                        Some(k) => match c.get(&k).await {
                            Ok(v) if v == value_for(&k, LEN) => true,
                            Ok(_) => {
                                wrong.fetch_add(1, Ordering::Relaxed);
                                false
                            }
                            Err(_) => false,
                        },
                        None => true,
                    }
                };
                let f = &mut figures[s];
                f.ops += 2;
                if put.is_ok() && i <= MAX_PUTS {
                    acked.lock().unwrap().push(key);
                } else {
                    f.errors += 1;
                }
                if !read {
                    f.errors += 1;
                }
                if put.is_ok() && read {
                    let gap = last_ok.elapsed();
                    f.longest_pause = f.longest_pause.max(gap);
                    last_ok = Instant::now();
                }
                // A steady load, not a flood.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            figures
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        stores[i].proc.signal(libc::SIGTERM);
        assert_eq!(stores[i].proc.wait_exit(Duration::from_secs(10)), Some(0));
        stores[i] = spawn_store(&m, ports[i], &dirs[i]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        step.fetch_add(1, Ordering::Relaxed);
    }
    m.proc.kill9();
    m = Master::start_on_ports(rpc, met, &flags);
    tokio::time::sleep(Duration::from_secs(3)).await;
    step.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let figures = load.await.unwrap();
    for (name, f) in steps.iter().zip(&figures) {
        eprintln!(
            "rolling update, {name}: {} ops, {} errors, longest pause {:?}",
            f.ops, f.errors, f.longest_pause
        );
    }

    let c = client(&m).await;
    let keys = acked.lock().unwrap().clone();
    assert!(
        keys.len() > 20,
        "the load made progress ({} puts)",
        keys.len()
    );
    let t0 = Instant::now();
    let mut lost: Vec<String> = keys.clone();
    while !lost.is_empty() && t0.elapsed() < Duration::from_secs(20) {
        let mut still = Vec::new();
        for k in lost {
            match c.get(&k).await {
                Ok(v) => assert!(v == value_for(&k, LEN), "{k}: wrong bytes"),
                Err(_) => still.push(k),
            }
        }
        lost = still;
        if !lost.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged objects lost: {:?}",
        lost.len(),
        keys.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "wrong bytes during the update"
    );
    drop(stores);
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    let _ = std::fs::remove_dir_all(&snap);
}

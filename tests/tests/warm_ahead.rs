//! A store's warm-ahead thread (`--warm_ahead` / `MOONCAKE_WARM_AHEAD`) faults its
//! segment in ahead of the furthest byte peers wrote, and no further: measured as the
//! pages its segment file holds. Puts over TCP that race with it read back byte for
//! byte (faulting a page in never stores over what a put wrote); puts that reuse freed
//! space do not move it on.

use mooncake_client::ReplicateConfig;
use mooncake_tests::{client, store_env, value_for, Master, Store};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Bytes of memory the segment files in `dir` hold (allocated pages, not their size).
fn held(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("mooncake-seg-"))
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until the files in `dir` hold at least `want` bytes; returns what they hold.
fn wait_held(dir: &Path, want: u64, within: Duration) -> u64 {
    let t0 = Instant::now();
    loop {
        let h = held(dir);
        if h >= want || t0.elapsed() > within {
            return h;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shm_dir(tag: &str) -> Dir {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("mc-warm-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn store(m: &Master, dir: &Dir, warm: &str) -> Store {
    let mut env = store_env(m, "512mb");
    env.push(("MOONCAKE_SHM_DIR".into(), dir.0.display().to_string()));
    env.push(("MOONCAKE_WARM_AHEAD".into(), warm.into()));
    Store::start(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_ahead_stays_a_window_ahead_of_the_writes() {
    // The switch is read when a client starts; every test here sets it the same way.
    std::env::set_var("MOONCAKE_DISABLE_SHM", "1");
    let m = Master::start(&[]);
    let (warm_dir, cold_dir) = (shm_dir("warm"), shm_dir("cold"));
    let window = 224 * MIB;
    let _warm = store(&m, &warm_dir, "224mb");
    let _cold = store(&m, &cold_dir, "0");
    let c = client(&m).await;

    // Puts race with the thread faulting in the first window; both stores take them.
    let keys: Vec<String> = (0..96).map(|i| format!("warm-{i}")).collect();
    let values: Vec<Vec<u8>> = keys.iter().map(|k| value_for(k, MIB as usize)).collect();
    for (ks, vs) in keys.chunks(16).zip(values.chunks(16)) {
        let refs: Vec<&[u8]> = vs.iter().map(|v| v.as_slice()).collect();
        for (k, r) in ks
            .iter()
            .zip(c.put_batch(ks, &refs, &ReplicateConfig::default()).await)
        {
            r.unwrap_or_else(|e| panic!("put {k}: {e}"));
        }
    }
    for (k, r) in keys.iter().zip(c.get_batch(&keys).await) {
        let v = r.unwrap_or_else(|e| panic!("get {k}: {e}"));
        assert!(v == value_for(k, MIB as usize), "{k}: wrong bytes");
    }

    // The warm store ends up holding the window beyond what it was sent, and no more
    // than that plus the pages the puts themselves wrote (each counted at most twice:
    // once as sent, once as a page written; one 2 MiB step of slack), far from its
    // whole segment.
    let sent = c.transfer_metrics().bytes_written;
    assert!(sent >= 96 * MIB, "the client sent {sent} bytes");
    let got = wait_held(&warm_dir.0, window, Duration::from_secs(30));
    assert!(
        got >= window,
        "the warm store holds {got} bytes, want {window}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = held(&warm_dir.0);
    assert!(
        got <= window + 2 * sent + 2 * MIB,
        "the warm store holds {got} bytes: more than the window ({window}) beyond the {sent} bytes written"
    );
    // Without warm-ahead a store holds its faulted-in head (64 MiB) and what puts
    // wrote into it.
    let cold = held(&cold_dir.0);
    assert!(
        cold <= 64 * MIB + sent + 2 * MIB,
        "the store without warm-ahead holds {cold} bytes"
    );
    assert!(
        cold < got,
        "warm-ahead made no difference ({cold} vs {got} bytes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_into_freed_space_do_not_move_the_window_on() {
    std::env::set_var("MOONCAKE_DISABLE_SHM", "1");
    let m = Master::start(&[]);
    let dir = shm_dir("reuse");
    let window = 32 * MIB;
    let _s = store(&m, &dir, "32mb");
    let c = client(&m).await;
    let rc = ReplicateConfig::default();

    // 160 MiB through the data port, never more than 4 MiB of it stored at once: the
    // master places each put in space the previous ones freed.
    let keys: Vec<String> = (0..4).map(|i| format!("reuse-{i}")).collect();
    for round in 0..40 {
        for k in &keys {
            let v = value_for(&format!("{k}/{round}"), MIB as usize);
            c.put(k, &v, &rc)
                .await
                .unwrap_or_else(|e| panic!("put {k} in round {round}: {e}"));
        }
        for k in &keys {
            c.remove(k, false)
                .await
                .unwrap_or_else(|e| panic!("remove {k} in round {round}: {e}"));
        }
    }
    let sent = c.transfer_metrics().bytes_written;
    assert!(sent >= 160 * MIB, "the client sent {sent} bytes");
    // Counting bytes sent would have faulted in 160 MiB + the window; the furthest
    // write is a few MiB in.
    let got = wait_held(&dir.0, window, Duration::from_secs(30));
    assert!(
        got >= window,
        "the store holds {got} bytes, want its window {window}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = held(&dir.0);
    assert!(
        got <= 64 * MIB + window + 4 * MIB,
        "the store holds {got} bytes after {sent} bytes into the same few MiB: the window moved on with reused space"
    );
}

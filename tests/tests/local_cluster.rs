//! `scripts/local-cluster.sh --no-wait` runs end to end: master, store, demo put/get,
//! and leaves nothing running.

use std::process::Command;

#[test]
fn local_cluster_script_runs_the_demo() {
    let dir = mooncake_tests::bin_dir();
    let root = dir.parent().and_then(|t| t.parent()).expect("repo root");
    let mut cmd = Command::new(root.join("scripts/local-cluster.sh"));
    cmd.args(["--no-wait", "--segment", "32mb"]);
    if dir.ends_with("debug") {
        cmd.arg("--debug");
    }
    let state = std::env::temp_dir().join(format!("mc-lc-{}", std::process::id()));
    let out = cmd
        .env("MOONCAKE_CLUSTER_DIR", &state)
        .output()
        .expect("run local-cluster.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("get demo-key -> hello from mooncake-rs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("admin port       http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        !state.join("store.ready").exists(),
        "store stopped and removed its ready file"
    );
}

/// Ctrl-C on the waiting script stops the store before the master and exits 0, with
/// no warning in either log (a store whose master went first warns that it could not
/// unmount; a fresh mount is not a re-mount).
#[test]
fn ctrl_c_stops_the_cluster_cleanly_and_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = mooncake_tests::bin_dir();
    let root = dir.parent().and_then(|t| t.parent()).expect("repo root");
    let state = std::env::temp_dir().join(format!("mc-lc-int-{}", std::process::id()));
    let mut cmd = Command::new(root.join("scripts/local-cluster.sh"));
    cmd.args(["--segment", "32mb"]);
    // A shell cannot trap a signal it was started with ignored, and a runner started in
    // the background of a non-interactive shell ignores SIGINT: give the script the
    // default disposition a terminal's Ctrl-C meets.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    if dir.ends_with("debug") {
        cmd.arg("--debug");
    }
    let mut child = cmd
        .env("MOONCAKE_CLUSTER_DIR", &state)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run local-cluster.sh");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let up = lines.by_ref().map_while(Result::ok).any(|l| {
        seen.push_str(&l);
        seen.push('\n');
        l.contains("Ctrl-C stops everything.")
    });
    assert!(up, "the cluster did not come up:\n{seen}");
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the script did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "Ctrl-C exit status: {status:?}");
    for log in ["master.log", "store.log"] {
        let text = std::fs::read_to_string(state.join(log)).unwrap();
        assert!(!text.contains(" WARN "), "{log} warned:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&state);
}

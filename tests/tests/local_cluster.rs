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

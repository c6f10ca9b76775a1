//! A store started before its master (or pointed at the wrong address) says which
//! master it waits for and why, in periodic lines, mounts once the master comes up,
//! and when it gives up (`--max_wait_time`) names the master and the reason.

use mooncake_tests::{bin, bin_dir, free_port, Master, Store};
use std::process::Command;
use std::time::{Duration, Instant};

fn env_for(master: &str) -> Vec<(String, String)> {
    [
        ("MOONCAKE_MASTER", master),
        ("MOONCAKE_TE_META_DATA_SERVER", "P2PHANDSHAKE"),
        ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "16mb"),
        ("MOONCAKE_LOCAL_BUFFER_SIZE", "0"),
        ("MOONCAKE_PROTOCOL", "tcp"),
        ("MOONCAKE_LOCAL_HOSTNAME", "127.0.0.1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Waits until `log` holds `n` lines containing every one of `needles`.
fn wait_lines(log: &std::path::Path, needles: &[&str], n: usize, within: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let hits = text
            .lines()
            .filter(|l| needles.iter().all(|w| l.contains(w)))
            .count();
        if hits >= n || t0.elapsed() > within {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_store_without_its_master_says_where_and_why_then_mounts_when_it_comes() {
    let rpc = free_port();
    let master = format!("127.0.0.1:{rpc}");
    let s = Store::spawn(&env_for(&master));
    let log = bin_dir()
        .join("test-logs")
        .join(format!("store-{}.err.log", s.http_port));
    let needles = [
        &format!("waiting for the master at {master}")[..],
        "connection refused",
        "MOONCAKE_MASTER",
    ];
    // Not one line after a long silence: a line now, and another later.
    let text = wait_lines(&log, &needles, 2, Duration::from_secs(40));
    let hits = text
        .lines()
        .filter(|l| needles.iter().all(|w| l.contains(w)))
        .count();
    assert!(hits >= 2, "expected repeated waiting lines, got:\n{text}");

    let _m = Master::start_on(rpc, &[]);
    assert!(
        s.wait_healthy(Duration::from_secs(20)),
        "store did not mount once the master came up:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn a_store_that_gives_up_names_the_master_and_the_reason() {
    let master = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let out = Command::new(bin("mooncake_store"))
        .args(["--port", &port.to_string(), "--http_host", "127.0.0.1"])
        .args(["--max_wait_time", "2"])
        .env_clear()
        .envs(env_for(&master))
        .output()
        .expect("run mooncake_store");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the master at {master} did not mount the segment within 2s"
        )) && err.contains("connection refused"),
        "{err}"
    );
}

#[test]
fn a_store_pointed_at_a_port_that_is_not_the_masters_says_so() {
    // The master's metrics port answers TCP but is not the RPC port.
    let m = Master::start(&[]);
    let wrong = format!("127.0.0.1:{}", m.metrics_port);
    let port = free_port();
    let out = Command::new(bin("mooncake_store"))
        .args(["--port", &port.to_string(), "--http_host", "127.0.0.1"])
        .args(["--max_wait_time", "2"])
        .env_clear()
        .envs(env_for(&wrong))
        .output()
        .expect("run mooncake_store");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&wrong) && err.contains("--rpc_port"), "{err}");
}

//! The store daemon's HTTP port (health and the reference's REST routes), its ready
//! file, and a clean exit on SIGTERM.

use mooncake_tests::{http, store_env, Master, Store};
use std::time::Duration;

#[test]
fn rest_routes_health_and_ready_file() {
    let m = Master::start(&[]);
    let ready = std::env::temp_dir().join(format!("mc-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut env = store_env(&m, "16mb");
    env.push((
        "MOONCAKE_READY_FILE".into(),
        ready.to_string_lossy().into_owned(),
    ));
    let mut s = Store::start(&env);
    // /health turns 200 the moment the segment is mounted; the daemon writes the ready
    // file right after (within one 20 ms poll of its mount watcher).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !ready.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ready.exists(), "ready file written once mounted");
    let p = s.http_port;

    let (st, _) = http(
        "PUT",
        p,
        "/api/put",
        br#"{"key":"rk","value":"hello rest"}"#,
    )
    .unwrap();
    assert_eq!(st, 200);
    let (st, body) = http("GET", p, "/api/get/rk", b"").unwrap();
    assert_eq!((st, body.as_slice()), (200, b"hello rest".as_slice()));
    let (st, body) = http("GET", p, "/api/exist/rk", b"").unwrap();
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("true"));
    let (st, _) = http("GET", p, "/api/get/missing", b"").unwrap();
    assert_eq!(st, 404);
    let (st, _) = http("PUT", p, "/api/put", br#"{"value":"no key"}"#).unwrap();
    assert_eq!(st, 400);
    let (st, _) = http("PUT", p, "/api/put", b"not json").unwrap();
    assert_eq!(st, 400);
    let (st, _) = http("DELETE", p, "/api/remove/rk", b"").unwrap_or((0, vec![]));
    // A fresh get granted a lease: removal may be refused until it runs out.
    assert!(st == 200 || st == 500, "{st}");
    let (st, body) = http("DELETE", p, "/api/remove_all", b"").unwrap();
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));

    s.proc.signal(libc::SIGTERM);
    assert_eq!(s.proc.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(!ready.exists(), "ready file removed on exit");
}

#[test]
fn health_is_503_until_a_master_accepts_the_segment() {
    // A master address nobody serves yet.
    let port = mooncake_tests::free_port();
    let env: Vec<(String, String)> = [
        ("MOONCAKE_MASTER", format!("127.0.0.1:{port}")),
        ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "8mb".to_string()),
        ("MOONCAKE_LOCAL_HOSTNAME", "127.0.0.1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let s = Store::spawn(&env);
    assert!(mooncake_tests::wait_port(
        s.http_port,
        Duration::from_secs(10)
    ));
    let (st, _) = http("GET", s.http_port, "/health", b"").unwrap();
    assert_eq!(st, 503);
}

/// The value of the first sample line of `name` (with its labels) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_report_segment_mount_and_transfer_bytes() {
    let m = Master::start(&[]);
    let s = Store::start(&store_env(&m, "16mb"));
    let metrics = || {
        let (st, body) = http("GET", s.http_port, "/metrics", b"").unwrap();
        assert_eq!(st, 200);
        String::from_utf8(body).unwrap()
    };
    let t = metrics();
    assert_eq!(
        sample(&t, "store_segment_bytes"),
        Some(16.0 * 1048576.0),
        "{t}"
    );
    assert_eq!(sample(&t, "store_mounted"), Some(1.0), "{t}");
    assert_eq!(
        sample(&t, r#"store_transfer_bytes_total{direction="in"}"#),
        Some(0.0),
        "{t}"
    );
    assert!(
        sample(&t, "store_transfer_requests_failed_total").is_some(),
        "{t}"
    );
    assert!(
        sample(&t, "store_heartbeat_failures_total").is_some(),
        "{t}"
    );

    // Another process writes 100 kB into the store over TCP, then reads it back.
    let dir = std::env::temp_dir().join(format!("mc-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("in");
    std::fs::write(&f, mooncake_tests::value_for("m", 100_000)).unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(mooncake_tests::bin("mooncake_cli"))
            .args(["--master", &m.addr()])
            .args(args)
            .env("MOONCAKE_DISABLE_SHM", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["put", "mk", "--file", f.to_str().unwrap()]);
    run(&["get", "mk", "--out", dir.join("out").to_str().unwrap()]);
    // The store counts a read once its last byte is on the socket, which can be just
    // after the reader already has it all and exited: poll briefly instead of racing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (t, bytes_in, bytes_out) = loop {
        let t = metrics();
        let bytes_in = sample(&t, r#"store_transfer_bytes_total{direction="in"}"#).unwrap();
        let bytes_out = sample(&t, r#"store_transfer_bytes_total{direction="out"}"#).unwrap();
        if (bytes_in >= 100_000.0 && bytes_out >= 100_000.0) || std::time::Instant::now() > deadline
        {
            break (t, bytes_in, bytes_out);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(bytes_in >= 100_000.0, "{t}");
    assert!(bytes_out >= 100_000.0, "{t}");

    // The store's own REST get right after its REST put reads from where the put
    // wrote (the put filled the location cache): a hit, no miss.
    let t = metrics();
    let (hits, misses) = (
        sample(&t, "store_location_cache_hits_total").unwrap(),
        sample(&t, "store_location_cache_misses_total").unwrap(),
    );
    assert!(
        sample(&t, "store_location_cache_stale_total").is_some(),
        "{t}"
    );
    let p = s.http_port;
    let (st, _) = http("PUT", p, "/api/put", br#"{"key":"hk","value":"warm"}"#).unwrap();
    assert_eq!(st, 200);
    let (st, body) = http("GET", p, "/api/get/hk", b"").unwrap();
    assert_eq!((st, body.as_slice()), (200, b"warm".as_slice()));
    let t = metrics();
    assert_eq!(
        sample(&t, "store_location_cache_hits_total"),
        Some(hits + 1.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "store_location_cache_misses_total"),
        Some(misses),
        "{t}"
    );
    assert!(
        sample(&t, "store_location_cache_entries").unwrap() >= 1.0,
        "{t}"
    );
}

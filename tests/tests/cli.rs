//! `mooncake_cli` against a real master and store: exit codes and output.

use mooncake_tests::{cli, store_env, Master, Store};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_round_trip_and_errors() {
    let m = Master::start(&[]);
    let _s = Store::start(&store_env(&m, "16mb"));
    let a = m.addr();
    let dir = std::env::temp_dir().join(format!("mc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("in");
    std::fs::write(&f, mooncake_tests::value_for("file", 100_000)).unwrap();

    let o = cli(&a, &["put", "k1", "--value", "hello"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = cli(&a, &["get", "k1"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, b"hello");
    let o = cli(
        &a,
        &[
            "put",
            "k2",
            "--file",
            f.to_str().unwrap(),
            "--replicas",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = dir.join("out");
    let o = cli(&a, &["get", "k2", "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&f).unwrap());
    assert_eq!(text(&cli(&a, &["exist", "k1"]).stdout).trim(), "true");
    assert_eq!(text(&cli(&a, &["exist", "nope"]).stdout).trim(), "false");

    let o = cli(&a, &["get", "nope"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("error: OBJECT_NOT_FOUND (-704)"),
        "{}",
        text(&o.stderr)
    );
    let o = cli(&a, &["put", "", "--value", "x"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("INVALID_PARAMS (-600)"),
        "{}",
        text(&o.stderr)
    );

    let o = cli(&a, &["segments"]);
    assert!(o.status.success());
    let s = text(&o.stdout);
    assert!(
        s.contains("OWNER") && s.contains("127.0.0.1:") && s.contains("16.00 MB"),
        "{s}"
    );
    let o = cli(&a, &["stats"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("keys:"), "{}", text(&o.stdout));
    let o = cli(&a, &["remove", "k1", "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&cli(&a, &["exist", "k1"]).stdout).trim(), "false");

    // Master unreachable: a clear RPC_FAIL, not a hang.
    let dead = format!("127.0.0.1:{}", mooncake_tests::free_port());
    let o = cli(&dead, &["exist", "k"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("RPC_FAIL (-900)"),
        "{}",
        text(&o.stderr)
    );
}

/// `put` of a stored key keeps the old value and says so, with its own exit code (3);
/// `--upsert` replaces it.
#[test]
fn put_on_a_stored_key_is_kept_and_says_how_to_replace_it() {
    let m = Master::start(&[]);
    let _s = Store::start(&store_env(&m, "16mb"));
    let a = m.addr();
    let o = cli(&a, &["put", "dup", "--value", "first"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("stored \"dup\""));

    let o = cli(&a, &["put", "dup", "--value", "second"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("kept \"dup\"") && err.contains("--upsert") && !err.contains("stored \"dup\""),
        "{err}"
    );
    assert_eq!(cli(&a, &["get", "dup"]).stdout, b"first");

    let o = cli(&a, &["put", "dup", "--value", "third", "--upsert"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(cli(&a, &["get", "dup"]).stdout, b"third");
    // --upsert of a key that is not stored yet stores it.
    let o = cli(&a, &["put", "fresh", "--value", "v", "--upsert"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(cli(&a, &["get", "fresh"]).stdout, b"v");
}

/// Pointed at the master's metrics port (HTTP), the CLI says it is an HTTP port and
/// names the rpc port, instead of a frame-size error.
#[test]
fn the_master_address_pointing_at_an_http_port_is_named_as_such() {
    let m = Master::start(&[]);
    let o = cli(&format!("127.0.0.1:{}", m.metrics_port), &["exist", "k"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("HTTP port") && err.contains("--rpc_port") && !err.contains("frame of"),
        "{err}"
    );
}

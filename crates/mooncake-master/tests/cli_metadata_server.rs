//! The standalone `mooncake_http_metadata_server` binary as a process.

mod http_support;

use http_support::{get, request};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mooncake_http_metadata_server");

#[tokio::test]
async fn serves_metadata_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--host", "127.0.0.1", "--port=0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::task::spawn_blocking(move || {
        let l = lines
            .find(|l| l.as_ref().is_ok_and(|l| l.contains("listening on")))
            .expect("start-up line")
            .unwrap();
        (l, lines)
    });
    let (line, _rest) = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("started in time")
        .unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("address in {line}"));

    assert_eq!(
        request(addr, "PUT", "/metadata?key=k", b"v").await.status,
        200
    );
    assert_eq!(get(addr, "/metadata?key=k").await.text(), "v");
    assert_eq!(get(addr, "/metadata?key=missing").await.status, 404);
    assert_eq!(get(addr, "/health").await.text(), "OK");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_flags_exit_non_zero_naming_the_flag() {
    for (args, name) in [
        (&["--port=http"][..], "--port"),
        (&["--host="][..], "--host"),
        (&["--bogus=1"][..], "--bogus"),
        (&["--port"][..], "--port"),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{args:?}: {err}");
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--port"));
}

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

/// Starts the binary with `args` on a free loopback port; the child and its address.
async fn start(args: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["--host", "127.0.0.1", "--port=0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::task::spawn_blocking(move || {
        let l = lines
            .find(|l| l.as_ref().is_ok_and(|l| l.contains("listening on")))
            .expect("start-up line")
            .unwrap();
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        l
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("started in time")
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("address in {line}"));
    (child, addr)
}

/// One request bearing `token` (none: no Authorization header); status and body.
async fn bearing(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    token: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// With `--auth_token_file`, reads and writes need a token of the file (401 without
/// one or with a wrong one, nothing written), `/health` stays open, and a token added
/// to the file works without a restart.
#[tokio::test]
async fn a_token_file_guards_reads_and_writes() {
    let dir = std::env::temp_dir().join(format!("mc-meta-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "cluster:tok-meta-1111\nbeta:tok-meta-2222\n").unwrap();
    let flag = format!("--auth_token_file={}", tokens.display());
    let (mut child, addr) = start(&[&flag]).await;
    let key = "/metadata?key=mooncake/ram/seg";

    let (status, body) = bearing(addr, "PUT", key, b"evil", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        bearing(addr, "PUT", key, b"evil", Some("nope")).await.0,
        401
    );
    assert_eq!(
        bearing(addr, "PUT", key, b"v", Some("tok-meta-2222"))
            .await
            .0,
        200
    );
    assert_eq!(bearing(addr, "GET", key, b"", None).await.0, 401);
    assert_eq!(bearing(addr, "DELETE", key, b"", None).await.0, 401);
    assert_eq!(
        bearing(addr, "GET", key, b"", Some("tok-meta-1111")).await,
        (200, "v".to_string()),
        "written once, by the token holder"
    );
    assert_eq!(bearing(addr, "GET", "/health", b"", None).await.0, 200);

    // Rotation: a new token is accepted once the file is re-read, the old one dropped.
    std::fs::write(&tokens, "cluster:tok-meta-3333\n").unwrap();
    let mut rotated = false;
    for _ in 0..200 {
        if bearing(addr, "GET", key, b"", Some("tok-meta-3333"))
            .await
            .0
            == 200
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "the new token was never accepted");
    assert_eq!(
        bearing(addr, "GET", key, b"", Some("tok-meta-1111"))
            .await
            .0,
        401
    );
    let _ = child.kill();
    let _ = child.wait();

    // A token file that is missing or holds no token stops it at start, naming the flag.
    let empty = dir.join("empty");
    std::fs::write(&empty, "# nothing\n").unwrap();
    for f in [dir.join("missing"), empty] {
        let out = Command::new(BIN)
            .args(["--port=0", &format!("--auth_token_file={}", f.display())])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--auth_token_file"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! The store's REST port serving loop against strangers, over real sockets on
//! 127.0.0.1 (routes shaped like the store's: `/health` and a body-taking PUT; the
//! real routes need a mounted client, the bounds do not): a flood of sockets that
//! connect and send nothing or half a request does not lock out `/health`, stalled
//! connections are closed after the timeouts, and an announced body over the limit
//! is refused before it is read.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::Router;
use mooncake_http::{serve, Limits};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn app() -> Router {
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route(
            "/api/put",
            put(|body: Bytes| async move { format!("stored {}", body.len()) }),
        )
        .layer(DefaultBodyLimit::max(mooncake_store::http::MAX_BODY))
}

async fn start(
    limits: Limits,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        l,
        app(),
        async move {
            let _ = stopped.await;
        },
        limits,
    ));
    (addr, stop, task)
}

/// One request on its own connection; the status code and body.
async fn call(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
        (status, body.unwrap_or_default())
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer"))
}

/// `n` sockets: even ones silent, odd ones stalled inside a request head.
async fn flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Sl")
                .await
                .unwrap();
        }
        out.push(s);
    }
    out
}

/// How many of `socks` the server closes (EOF or reset) within `wait`.
async fn count_closed(socks: Vec<TcpStream>, wait: Duration) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for mut s in socks {
        set.spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            let deadline = tokio::time::Instant::now() + wait;
            let closed = loop {
                match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                    Err(_) => break false,
                    Ok(Ok(0)) | Ok(Err(_)) => break true,
                    Ok(Ok(_)) => continue,
                }
            };
            (closed, s)
        });
    }
    let mut held = Vec::new();
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let (closed, s) = r.unwrap();
        n += closed as usize;
        held.push(s);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_the_cap_does_not_lock_out_health() {
    const CAP: usize = 16;
    const FLOOD: usize = 300;
    let long = Duration::from_secs(600);
    let (addr, stop, task) = start(Limits {
        max_connections: CAP,
        header_timeout: long,
        body_stall_timeout: long,
        write_stall_timeout: long,
        ..Limits::default()
    })
    .await;
    let held = flood(addr, FLOOD).await;
    assert_eq!(call(addr, "GET", "/health", b"").await, (200, "OK".into()));
    assert_eq!(
        call(addr, "PUT", "/api/put", b"abc").await,
        (200, "stored 3".into())
    );
    let closed = count_closed(held, Duration::from_secs(2)).await;
    assert!(
        (FLOOD - CAP..FLOOD).contains(&closed),
        "{closed} of {FLOOD} flood sockets closed with a cap of {CAP}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_after_the_timeouts() {
    let t = Duration::from_millis(300);
    let (addr, stop, task) = start(Limits {
        header_timeout: t,
        body_stall_timeout: t,
        write_stall_timeout: t,
        ..Limits::default()
    })
    .await;
    let mut stalled = flood(addr, 200).await;
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PUT /api/put HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nten bytes!")
            .await
            .unwrap();
        stalled.push(s);
    }
    let n = stalled.len();
    assert_eq!(call(addr, "GET", "/health", b"").await.0, 200);
    let closed = count_closed(stalled, Duration::from_secs(30)).await;
    assert_eq!(closed, n, "stalled sockets left open past the timeouts");
    assert_eq!(call(addr, "GET", "/health", b"").await.0, 200);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_body_over_the_limit_is_refused_unread() {
    // The store's own limits: the reference's 100 MB body limit.
    let (addr, stop, task) = start(mooncake_store::http::LIMITS).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /api/put HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        mooncake_store::http::MAX_BODY as u64 + 1
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut status))
        .await
        .expect("an oversized body was waited for")
        .unwrap();
    assert_eq!(&status, b"HTTP/1.1 413");
    assert_eq!(
        call(addr, "PUT", "/api/put", &[b'v'; 4096]).await,
        (200, "stored 4096".into())
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

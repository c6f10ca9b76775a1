//! The master's HTTP ports (admin and metadata) against strangers, over real sockets
//! on 127.0.0.1: floods of sockets that connect and send nothing or half a request do
//! not lock real clients out, stalled connections are closed after the timeouts, a
//! body is bounded as it arrives, and shutdown still lets requests in flight finish
//! (and only those).

mod http_support;

use axum::routing::get as route_get;
use axum::Router;
use http_support::{get, request};
use mooncake_http::{serve, Limits};
use mooncake_master::app;
use mooncake_master::config::MasterConfig;
use mooncake_master::http::metadata::{router, MetadataStore};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(app: Router, limits: Limits) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        l,
        app,
        async move {
            let _ = stopped.await;
        },
        limits,
    ));
    Server { addr, stop, task }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

fn metadata_app() -> Router {
    router(MetadataStore::new())
}

/// Timeouts far beyond any test: only the connection cap can make room.
fn patient(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        header_timeout: Duration::from_secs(600),
        body_stall_timeout: Duration::from_secs(600),
        write_stall_timeout: Duration::from_secs(600),
        ..Limits::default()
    }
}

fn impatient() -> Limits {
    let t = Duration::from_millis(300);
    Limits {
        header_timeout: t,
        body_stall_timeout: t,
        write_stall_timeout: t,
        ..Limits::default()
    }
}

/// `n` sockets to `addr`: even ones silent, odd ones stalled inside a request head.
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

/// Whether the server closes `s` (EOF or reset) within `wait`; whatever it sends
/// first is read and discarded.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = vec![0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// How many of `socks` the server closes within `wait` (checked concurrently).
async fn count_closed(socks: Vec<TcpStream>, wait: Duration) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for mut s in socks {
        set.spawn(async move { (closed_within(&mut s, wait).await, s) });
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

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer while the flood is held open"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_masters_ports_answer_through_a_flood_held_open() {
    let cfg = MasterConfig {
        rpc_address: "127.0.0.1".into(),
        rpc_port: 0,
        metrics_host: "127.0.0.1".into(),
        metrics_port: 0,
        enable_http_metadata_server: true,
        http_metadata_server_host: "127.0.0.1".into(),
        http_metadata_server_port: 0,
        enable_metric_reporting: false,
        ..Default::default()
    };
    let m = app::start(cfg).await.unwrap();
    let meta = m.metadata_addr.expect("metadata server enabled");
    // 150 per port stays under the cap even with a 1,024-descriptor limit (a quarter
    // of it), so this is the default configuration as deployed.
    let held_admin = flood(m.admin_addr, 150).await;
    let held_meta = flood(meta, 150).await;
    let r = within("admin /health", get(m.admin_addr, "/health")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = within("admin /metrics", get(m.admin_addr, "/metrics")).await;
    assert_eq!(r.status, 200);
    let r = within(
        "metadata PUT",
        request(meta, "PUT", "/metadata?key=mooncake/ram/f", b"v"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = within("metadata GET", get(meta, "/metadata?key=mooncake/ram/f")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "v"));
    drop((held_admin, held_meta));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_the_cap_does_not_lock_out_a_client() {
    const CAP: usize = 16;
    const FLOOD: usize = 300;
    let srv = start(metadata_app(), patient(CAP)).await;
    let held = flood(srv.addr, FLOOD).await;
    let r = within("/health", get(srv.addr, "/health")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let r = within(
        "PUT",
        request(srv.addr, "PUT", "/metadata?key=mooncake/ram/a", b"1"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The strangers gave way and the cap held: all but the last few were closed.
    let closed = count_closed(held, Duration::from_secs(2)).await;
    assert!(
        (FLOOD - CAP..FLOOD).contains(&closed),
        "{closed} of {FLOOD} flood sockets closed with a cap of {CAP}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_connections_are_closed_after_the_timeouts() {
    let srv = start(metadata_app(), impatient()).await;
    let big = vec![b'x'; 32 << 20];
    let r = request(srv.addr, "PUT", "/metadata?key=mooncake/ram/big", &big).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let mut stalled = flood(srv.addr, 200).await;
    // a head, then a body that stops
    for _ in 0..50 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(
            b"PUT /metadata?key=mooncake/ram/s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nten bytes!",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    // a keep-alive client that made one request and then went quiet
    let mut quiet = TcpStream::connect(srv.addr).await.unwrap();
    quiet
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    quiet.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    stalled.push(quiet);
    let n = stalled.len();
    // a reader that does not read its 32 MiB answer (more than socket buffers hold)
    let mut sluggard = TcpStream::connect(srv.addr).await.unwrap();
    sluggard
        .write_all(b"GET /metadata?key=mooncake/ram/big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let r = within("/health", get(srv.addr, "/health")).await;
    assert_eq!(r.status, 200);
    let closed = count_closed(stalled, Duration::from_secs(30)).await;
    assert_eq!(closed, n, "stalled sockets left open past the timeouts");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match sluggard.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => received += k,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the answer to a stalled reader never ended");
    assert!(
        received < big.len(),
        "a reader that stopped reading still got the whole answer ({received} bytes)"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_before_and_as_they_arrive() {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        ..impatient()
    };
    let srv = start(metadata_app(), limits).await;

    // An announced length over the limit is refused before any body byte is sent.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"PUT /metadata?key=mooncake/ram/h HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    within("oversized Content-Length", s.read_exact(&mut head))
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    // A chunked body has no length to check up front: it is cut off once it passes.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"PUT /metadata?key=mooncake/ram/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'y'; 64 << 10];
    let mut sent = 0usize;
    while sent <= 2 << 20 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if s.write_all(&framed).await.is_err() {
            break; // the server stopped reading: also a refusal
        }
        sent += chunk.len();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = within("chunked body over the limit", s.read_to_end(&mut raw)).await;
    let status = String::from_utf8_lossy(&raw[..raw.len().min(12)]).into_owned();
    assert!(
        status.starts_with("HTTP/1.1 4") || raw.is_empty(),
        "a body past the limit was accepted: {status:?}"
    );
    let r = get(srv.addr, "/metadata?key=mooncake/ram/c").await;
    assert_eq!(r.status, 404, "a body past the limit was stored");

    // Under the limit, bodies still arrive whole.
    let r = request(
        srv.addr,
        "PUT",
        "/metadata?key=mooncake/ram/ok",
        &[b'z'; 4096],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        get(srv.addr, "/metadata?key=mooncake/ram/ok")
            .await
            .body
            .len(),
        4096
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_flight_finish() {
    let (entered_tx, entered_rx) = oneshot::channel::<()>();
    let entered = std::sync::Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let app = Router::new().route(
        "/slow",
        route_get(move || {
            if let Some(tx) = entered.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let release = release.clone();
            async move {
                if let Some(rx) = release.lock().await.take() {
                    let _ = rx.await;
                }
                "done"
            }
        }),
    );
    // Timeouts beyond the test: shutdown must not wait them out for connections that
    // owe nothing.
    let srv = start(app, patient(1024)).await;
    let addr = srv.addr;
    let in_flight = tokio::spawn(get(addr, "/slow"));
    entered_rx.await.unwrap();
    let held = flood(addr, 20).await;
    let _ = srv.stop.send(());
    // stopping waits for the request
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !srv.task.is_finished(),
        "serve returned with a request in flight"
    );
    release_tx.send(()).unwrap();
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "done"));
    tokio::time::timeout(Duration::from_secs(30), srv.task)
        .await
        .expect("serve did not return after its last request")
        .unwrap()
        .unwrap();
    assert_eq!(
        count_closed(held, Duration::from_secs(5)).await,
        20,
        "idle and half-sent connections outlived shutdown"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port still accepts after shutdown"
    );
}

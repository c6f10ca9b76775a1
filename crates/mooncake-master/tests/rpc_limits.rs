//! The rpc port treats every peer as a stranger: a connection that announces a huge
//! frame and stalls costs what it sent, not what it announced; connections beyond the
//! cap are closed at once; silent and stalled ones are cut off after their timeouts;
//! and real clients are served throughout.

mod grpc_common;

use grpc_common::start;
use mooncake_master::config::{MasterConfig, MasterTuning};
use mooncake_proto::frame::{self, MAGIC, MAX_FRAME};
use mooncake_proto::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: the machine running the tests may be busy compiling.
const WAIT: Duration = Duration::from_secs(30);

fn tuned(max_connections: usize) -> MasterConfig {
    MasterConfig {
        tuning: MasterTuning {
            max_connections,
            handshake_timeout: Duration::from_millis(500),
            frame_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A memory figure of this process (the master runs in it) from
/// `/proc/self/status`, in bytes: `VmRSS` (resident) or `VmSize` (mapped; a buffer
/// sized by an announced length maps it even where the allocator leaves its pages
/// untouched).
fn mem(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Waits until the server closes `s` (EOF or reset); false if it stays open.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// A framed connection that sent the magic and a header announcing a frame of
/// `len` bytes, and then `body` bytes of it.
async fn stalled_frame(addr: std::net::SocketAddr, len: u32, body: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&MAGIC).await.unwrap();
    s.write_all(&len.to_le_bytes()).await.unwrap();
    s.write_all(&vec![0u8; body]).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_frames_cost_what_arrives_and_stalls_are_cut_off() {
    let srv = start(tuned(1024)).await;
    let mut c = srv.client().await;
    c.get_stats(GetStatsRequest {}).await.expect("first call");
    let (rss, mapped) = (mem("VmRSS:"), mem("VmSize:"));
    // 200 peers each announce a frame just under the limit (64 MiB) and send 100 KiB
    // of it: reading them whole would need 12.8 GB.
    let announced = (MAX_FRAME - 1) as u32;
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(stalled_frame(srv.addr, announced, 100 * 1024).await);
    }
    // Real clients are served while the flood is held open.
    let mut fresh = srv.client().await;
    fresh
        .heartbeat(HeartbeatRequest {
            client_id: "real".into(),
        })
        .await
        .expect("a real client during the flood");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grown = mem("VmRSS:").saturating_sub(rss);
    assert!(
        grown < 512 << 20,
        "200 stalled 64 MiB frames grew the master's resident memory by {} MiB",
        grown >> 20
    );
    let grown = mem("VmSize:").saturating_sub(mapped);
    assert!(
        grown < 2 << 30,
        "200 stalled 64 MiB frames grew the master's mapped memory by {} MiB",
        grown >> 20
    );
    // Each stalled frame is cut off after the frame timeout.
    for s in &mut flood {
        assert!(closed_by_server(s).await, "a stalled frame was kept open");
    }
    c.get_stats(GetStatsRequest {})
        .await
        .expect("after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_and_the_cap_refuses_the_rest() {
    let cap = 32;
    let srv = start(tuned(cap)).await;
    // Fill the cap with connections that never say anything.
    let mut silent = Vec::new();
    for _ in 0..cap {
        silent.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // One more is closed at once, long before any timeout.
    let mut extra = TcpStream::connect(srv.addr).await.unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut extra).await);
    assert!(
        t.elapsed() < Duration::from_millis(450),
        "a connection over the cap waited {:?} instead of being closed at once",
        t.elapsed()
    );
    // The silent ones go after the handshake timeout, and their slots come back.
    for s in &mut silent {
        assert!(
            closed_by_server(s).await,
            "a silent connection was kept open"
        );
    }
    let mut c = srv.client().await;
    c.get_stats(GetStatsRequest {})
        .await
        .expect("a client after the flood");

    // A framed peer that goes quiet between requests is closed after the idle timeout.
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    idle.write_all(&MAGIC).await.unwrap();
    let mut req = Vec::new();
    frame::encode_request("/mooncake.v1.Master/GetStats", &[], &mut req).unwrap();
    idle.write_all(&req).await.unwrap();
    let mut len = [0u8; 4];
    idle.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; u32::from_le_bytes(len) as usize];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(frame::decode_answer(&answer).unwrap().code, 0);
    let t = Instant::now();
    assert!(
        closed_by_server(&mut idle).await,
        "an idle framed connection stayed"
    );
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "closed before the idle timeout"
    );
}

#[tokio::test]
async fn a_tuning_no_connection_could_use_is_refused_by_name() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = mooncake_master::Master::new(MasterConfig::default());
    let tuning = MasterTuning {
        max_connections: 0,
        ..Default::default()
    };
    let e = mooncake_master::service::serve(m, Vec::new(), listener, tuning, async {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("max_connections"), "{e}");
}

//! The framed control-plane protocol (`mooncake_proto::frame`) against a real master
//! process, through the client's typed calls (`MasterCalls`, the same methods over
//! either protocol): served next to gRPC on the same port, statuses and contract codes
//! intact, pooled connections surviving a master restart, the caller-driven blocking
//! mode and its deadline, oversized frames refused.

use mooncake_client::calls::MasterCalls;
use mooncake_client::transport::{CallMode, DirectConfig, MasterChannel, Protocol};
use mooncake_proto::frame::{self, MAGIC, MAX_FRAME};
use mooncake_proto::{GetStatsRequest, HeartbeatRequest, ListSegmentsRequest};
use mooncake_tests::{runtime, Master};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// gRPC status codes (this crate does not depend on tonic; `Code as i32`).
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const UNAVAILABLE: i32 = 14;
}

type Client = MasterCalls;

fn client(port: u16, protocol: Protocol, timeout: Duration) -> Client {
    client_in(port, protocol, timeout, CallMode::Async)
}

/// A client whose framed calls do their I/O in `mode`.
fn client_in(port: u16, protocol: Protocol, timeout: Duration, mode: CallMode) -> Client {
    let ch = MasterChannel::new(
        &format!("127.0.0.1:{port}"),
        DirectConfig {
            connect_timeout: Duration::from_secs(2),
            timeout: Some(timeout),
            keep_alive: None,
            auth: None,
        },
        protocol,
    )
    .with_mode(mode);
    MasterCalls::new(ch).unwrap()
}

#[test]
fn framed_and_grpc_share_the_port_and_carry_contract_codes() {
    let m = Master::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        for protocol in [Protocol::Framed, Protocol::Grpc] {
            let mut c = client(m.rpc_port, protocol, Duration::from_secs(5));
            // Several calls: the framed pool reuses its connection.
            for _ in 0..3 {
                c.list_segments(ListSegmentsRequest {}).await.unwrap();
                let hb = c
                    .heartbeat(HeartbeatRequest {
                        client_id: "framed-test".into(),
                    })
                    .await
                    .unwrap();
                let _ = hb.into_inner();
            }
            // A whole-request failure: its gRPC code, message and contract code
            // (`mc-error-code`) arrive unchanged.
            let st = c
                .heartbeat(HeartbeatRequest {
                    client_id: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(
                st.code() as i32,
                code::INVALID_ARGUMENT,
                "{protocol:?}: {st:?}"
            );
            assert_eq!(st.message(), "heartbeat without client_id", "{protocol:?}");
            assert_eq!(
                st.metadata()
                    .get(mooncake_proto::status::ERROR_CODE_KEY)
                    .map(|v| v.to_str().unwrap().to_string()),
                Some("-600".to_string()),
                "{protocol:?}"
            );
            // Concurrent calls (the framed channel dials one connection per call
            // in flight).
            let calls: Vec<_> = (0..8)
                .map(|_| {
                    let mut c = c.clone();
                    tokio::spawn(async move { c.get_stats(GetStatsRequest {}).await })
                })
                .collect();
            for h in calls {
                h.await.unwrap().unwrap();
            }
        }
    });
}

#[test]
fn raw_frames_on_the_wire() {
    let m = Master::start(&[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", m.rpc_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = MAGIC.to_vec();
    frame::encode_request("/mooncake.v1.Master/GetStats", b"", &mut out).unwrap();
    // An unknown method on the same connection: an error answer, connection kept.
    frame::encode_request("/mooncake.v1.Master/NoSuchMethod", b"", &mut out).unwrap();
    s.write_all(&out).unwrap();
    let mut buf = Vec::new();
    frame::read_frame_sync(&mut s, &mut buf).unwrap();
    let a = frame::decode_answer(&buf).unwrap();
    assert_eq!((a.code, a.error_code), (0, 0), "{}", a.status_message);
    frame::read_frame_sync(&mut s, &mut buf).unwrap();
    let a = frame::decode_answer(&buf).unwrap();
    assert_eq!(a.code as i32, code::UNIMPLEMENTED);
    // An oversized frame: a clear error answer, then the master closes.
    s.write_all(&((MAX_FRAME + 1) as u32).to_le_bytes())
        .unwrap();
    frame::read_frame_sync(&mut s, &mut buf).unwrap();
    let a = frame::decode_answer(&buf).unwrap();
    assert_eq!(a.code as i32, code::RESOURCE_EXHAUSTED);
    assert!(a.status_message.contains("exceeds"), "{}", a.status_message);
    assert_eq!(s.read(&mut [0u8; 1]).unwrap_or(0), 0, "connection closed");
}

#[test]
fn pooled_connections_survive_a_master_restart() {
    let mut m = Master::start(&[]);
    let port = m.rpc_port;
    let rt = runtime();
    let mut c = client(port, Protocol::Framed, Duration::from_secs(5));
    let mut blocking = client_in(
        port,
        Protocol::Framed,
        Duration::from_secs(5),
        CallMode::Blocking,
    );
    rt.block_on(c.list_segments(ListSegmentsRequest {}))
        .unwrap();
    rt.block_on(blocking.list_segments(ListSegmentsRequest {}))
        .unwrap();
    m.proc.kill9();
    drop(m);
    let _m = Master::start_on(port, &[]);
    // The idle connections now point at a dead process: they must be noticed and
    // replaced, not used (that call would fail).
    rt.block_on(c.list_segments(ListSegmentsRequest {}))
        .unwrap();
    rt.block_on(blocking.list_segments(ListSegmentsRequest {}))
        .unwrap();
}

#[test]
fn blocking_mode_calls_and_honours_the_deadline() {
    let m = Master::start(&[]);
    let rt = runtime();
    // From a plain thread, as the Python binding does.
    let port = m.rpc_port;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = client_in(
                port,
                Protocol::Framed,
                Duration::from_secs(5),
                CallMode::Blocking,
            );
            for _ in 0..5 {
                rt.block_on(c.get_stats(GetStatsRequest {})).unwrap();
            }
            let st = rt
                .block_on(c.heartbeat(HeartbeatRequest {
                    client_id: String::new(),
                }))
                .unwrap_err();
            assert_eq!(
                mooncake_proto::status::from_status(&st),
                mooncake_client::ErrorCode::InvalidParams
            );
        });
    });

    // A "master" that accepts, reads, and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 1024];
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = conn.read(&mut buf);
            held.push(conn);
        }
    });
    for mode in [CallMode::Blocking, CallMode::Async] {
        let blocking = mode == CallMode::Blocking;
        let mut c = client_in(
            silent_port,
            Protocol::Framed,
            Duration::from_millis(300),
            mode,
        );
        let t = Instant::now();
        let st = rt.block_on(c.get_stats(GetStatsRequest {})).unwrap_err();
        let took = t.elapsed();
        assert_eq!(
            st.code() as i32,
            code::DEADLINE_EXCEEDED,
            "blocking={blocking}: {st:?}"
        );
        assert!(
            took >= Duration::from_millis(280) && took < Duration::from_secs(2),
            "blocking={blocking}: {took:?}"
        );
    }

    // Nobody listening: UNAVAILABLE, fast.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut blocking = client_in(
        closed_port,
        Protocol::Framed,
        Duration::from_secs(1),
        CallMode::Blocking,
    );
    let st = rt
        .block_on(blocking.get_stats(GetStatsRequest {}))
        .unwrap_err();
    assert_eq!(st.code() as i32, code::UNAVAILABLE, "{st:?}");
    let mut c = client(closed_port, Protocol::Framed, Duration::from_secs(1));
    let st = rt.block_on(c.get_stats(GetStatsRequest {})).unwrap_err();
    assert_eq!(st.code() as i32, code::UNAVAILABLE, "{st:?}");
}

/// HA: framed calls go through the same fence as gRPC ones. A standby refuses both
/// with `UNAVAILABLE_IN_CURRENT_MODE` (-1010) naming the leader; the leader answers a
/// mutation (which waits for the in-sync standby) over both.
#[test]
fn ha_fencing_applies_to_framed_calls() {
    use mooncake_tests::etcd::{
        etcd_available, running, start_ha_master, wait_one_leader, wait_standby_in_sync,
        EtcdCluster,
    };
    if !etcd_available() {
        return;
    }
    let etcd = EtcdCluster::start(1, "framed-ha");
    let eps = etcd.endpoints();
    let ms = vec![
        Some(start_ha_master(mooncake_tests::free_port(), &eps, &[])),
        Some(start_ha_master(mooncake_tests::free_port(), &eps, &[])),
    ];
    let l = wait_one_leader(&running(&ms), Duration::from_secs(30));
    let leader = ms[l].as_ref().unwrap();
    let standby = ms[1 - l].as_ref().unwrap();
    assert!(wait_standby_in_sync(leader, Duration::from_secs(30)));
    let rt = runtime();
    rt.block_on(async {
        for protocol in [Protocol::Framed, Protocol::Grpc] {
            let mut s = client(standby.rpc_port, protocol, Duration::from_secs(5));
            let st = s.get_stats(GetStatsRequest {}).await.unwrap_err();
            assert_eq!(st.code() as i32, code::UNAVAILABLE, "{protocol:?}: {st:?}");
            assert_eq!(
                mooncake_proto::status::from_status(&st),
                mooncake_client::ErrorCode::UnavailableInCurrentMode,
                "{protocol:?}: {st:?}"
            );
            assert!(
                st.message().contains(&leader.rpc_port.to_string()),
                "{protocol:?}: {}",
                st.message()
            );
            // BatchExist, which the framed handler answers without the gRPC detour,
            // passes the same fence.
            let keys = || mooncake_proto::BatchKeyRequest {
                keys: vec!["k".into(), String::new()],
            };
            let st = s.batch_exist(keys()).await.unwrap_err();
            assert_eq!(
                mooncake_proto::status::from_status(&st),
                mooncake_client::ErrorCode::UnavailableInCurrentMode,
                "{protocol:?}: {st:?}"
            );
            let mut c = client(leader.rpc_port, protocol, Duration::from_secs(5));
            let codes = c.batch_exist(keys()).await.unwrap().into_inner().codes;
            assert_eq!(codes, vec![0, -600], "{protocol:?}");
            c.remove_all(mooncake_proto::RemoveAllRequest::default())
                .await
                .unwrap();
            c.get_stats(GetStatsRequest {}).await.unwrap();
        }
    });
}

/// SIGTERM stops the master promptly with framed connections open: an idle pooled one
/// and one that sent only part of the magic.
#[test]
fn shutdown_does_not_wait_for_idle_framed_connections() {
    let mut m = Master::start(&[]);
    let rt = runtime();
    let mut c = client(m.rpc_port, Protocol::Framed, Duration::from_secs(5));
    rt.block_on(c.get_stats(GetStatsRequest {})).unwrap();
    let mut partial = std::net::TcpStream::connect(("127.0.0.1", m.rpc_port)).unwrap();
    partial.write_all(&MAGIC[..3]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    m.proc.signal(libc::SIGTERM);
    // Well within the master's 5 s drain grace, which would hide a hung connection.
    let t = Instant::now();
    assert!(
        m.proc.wait_exit(Duration::from_secs(10)).is_some(),
        "the master did not exit after SIGTERM"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

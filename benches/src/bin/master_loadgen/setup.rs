//! Connecting to (or starting) a master and giving it synthetic segments to place into.
//! The segments are descriptors only: the master never touches value bytes, so no
//! memory backs them.

use mooncake_benches::latency::{Samples, Summary};
use mooncake_client::calls::MasterCalls;
use mooncake_client::transport::{DirectConfig, MasterChannel, Protocol};
use mooncake_proto::{HeartbeatRequest, MountSegmentRequest, SegmentDesc, UnmountSegmentRequest};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub type Client = MasterCalls;

/// What every connection proves (`--token_file`), if anything.
pub static AUTH: std::sync::OnceLock<mooncake_client::auth::ClientAuth> =
    std::sync::OnceLock::new();

/// The protocol `connect` uses (`--protocol`).
pub static PROTOCOL: std::sync::OnceLock<Protocol> = std::sync::OnceLock::new();

/// A new connection to the master: each simulated client gets its own, as separate
/// processes would. It is the transport `mooncake-client` uses: framed (a pool: one
/// connection per call in flight) or one HTTP/2 connection (`--protocol grpc`).
pub async fn connect(addr: &str) -> Result<Client, String> {
    let ch = MasterChannel::new(
        addr,
        DirectConfig {
            connect_timeout: Duration::from_secs(3),
            auth: AUTH.get().cloned(),
            ..Default::default()
        },
        *PROTOCOL.get_or_init(|| Protocol::Framed),
    );
    let mut c = MasterCalls::new(ch)?;
    // Dial now, so that a wrong address fails here rather than in the first phase.
    c.list_segments(mooncake_proto::ListSegmentsRequest {})
        .await
        .map_err(|e| format!("cannot reach the master at {addr}: {}", e.message()))?;
    Ok(c)
}

/// The synthetic segments, their owners heartbeating until dropped.
pub struct Segments {
    ids: Vec<(String, String)>,
    heartbeat: JoinHandle<()>,
}

impl Segments {
    /// Mounts `count` segments of `size` bytes, each with its own owner and client id.
    pub async fn mount(c: &mut Client, count: usize, size: u64) -> Result<Self, String> {
        let run = std::process::id();
        let mut ids = Vec::new();
        for i in 0..count {
            let name = format!("loadgen-{run}-{i}:1");
            let client_id = format!("loadgen-{run}-{i}");
            let r = c
                .mount_segment(MountSegmentRequest {
                    client_id: client_id.clone(),
                    segment: Some(SegmentDesc {
                        name: name.clone(),
                        owner: name.clone(),
                        base: 0x1000_0000_0000 + (i as u64) * size,
                        size,
                        protocol: "tcp".into(),
                        transport_endpoint: "127.0.0.1:9".into(),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|e| format!("mount {name}: {}", e.message()))?
                .into_inner();
            if r.code != 0 {
                return Err(format!("mount {name}: code {}", r.code));
            }
            ids.push((client_id, name));
        }
        let mut hb = c.clone();
        let clients: Vec<String> = ids.iter().map(|(c, _)| c.clone()).collect();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for id in &clients {
                    let _ = hb
                        .heartbeat(HeartbeatRequest {
                            client_id: id.clone(),
                        })
                        .await;
                }
            }
        });
        Ok(Self { ids, heartbeat })
    }

    /// Unmounts everything (drops the objects placed on them).
    pub async fn unmount(self, c: &mut Client) {
        self.heartbeat.abort();
        for (client_id, segment_name) in &self.ids {
            let _ = c
                .unmount_segment(UnmountSegmentRequest {
                    client_id: client_id.clone(),
                    segment_name: segment_name.clone(),
                })
                .await;
        }
    }
}

/// Times `calls` heartbeats (an RPC that does almost nothing): the floor every other
/// figure stands on.
pub async fn baseline(c: &mut Client, calls: usize) -> Result<Summary, String> {
    let mut s = Samples::with_capacity(calls);
    for _ in 0..calls.max(1) {
        let t = Instant::now();
        c.heartbeat(HeartbeatRequest {
            client_id: "loadgen-baseline".into(),
        })
        .await
        .map_err(|e| format!("heartbeat: {}", e.message()))?;
        s.record(t.elapsed());
    }
    s.summary().ok_or_else(|| "no heartbeat".to_string())
}

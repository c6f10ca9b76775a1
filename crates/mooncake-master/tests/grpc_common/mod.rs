//! An in-process master on 127.0.0.1:0 and a generated gRPC client connected to it.

#![allow(dead_code)]

use mooncake_master::config::MasterConfig;
use mooncake_master::{service, Master, WorkerHandles};
use mooncake_proto::master_client::MasterClient;
use mooncake_proto::{MountSegmentRequest, SegmentDesc};
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct Running {
    pub master: Arc<Master>,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    _workers: WorkerHandles,
}

impl Running {
    pub async fn client(&self) -> MasterClient<Channel> {
        MasterClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the in-process master")
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.server).await.expect("server task");
    }
}

pub async fn start(cfg: MasterConfig) -> Running {
    let master = Master::new(cfg);
    let workers = master.spawn_workers();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let m = master.clone();
    let tuning = master.config().tuning.clone();
    let server = tokio::spawn(async move {
        service::serve(m, Vec::new(), listener, tuning, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    Running {
        master,
        addr,
        stop: Some(tx),
        server,
        _workers: workers,
    }
}

pub fn segment(name: &str, size: u64) -> SegmentDesc {
    SegmentDesc {
        name: name.into(),
        owner: name.into(),
        base: 0x7f00_0000_0000,
        size,
        protocol: "tcp".into(),
        transport_endpoint: "127.0.0.1:9".into(),
        ..Default::default()
    }
}

pub async fn mount(c: &mut MasterClient<Channel>, client_id: &str, name: &str, size: u64) {
    let r = c
        .mount_segment(MountSegmentRequest {
            client_id: client_id.into(),
            segment: Some(segment(name, size)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.code, 0, "mount {name}");
}

//! The admin port against a whole in-process master (`app::start`, every port 0):
//! state is created through the real gRPC service, then read back over HTTP.

mod http_support;

use http_support::get;
use mooncake_master::app::{self, Running};
use mooncake_master::config::MasterConfig;
use mooncake_proto::master_client::MasterClient;
use mooncake_proto::{
    KeyRequest, MountSegmentRequest, PutEndRequest, PutStartRequest, ReplicateConfig, SegmentDesc,
    SoftPinAction,
};
use tonic::transport::Channel;

fn config() -> MasterConfig {
    MasterConfig {
        rpc_address: "127.0.0.1".into(),
        rpc_port: 0,
        metrics_host: "127.0.0.1".into(),
        metrics_port: 0,
        enable_http_metadata_server: true,
        http_metadata_server_host: "127.0.0.1".into(),
        http_metadata_server_port: 0,
        enable_metric_reporting: false,
        ..Default::default()
    }
}

async fn client(m: &Running) -> MasterClient<Channel> {
    MasterClient::connect(format!("http://{}", m.rpc_addr))
        .await
        .expect("gRPC connect")
}

async fn mount(c: &mut MasterClient<Channel>, name: &str, size: u64) {
    let r = c
        .mount_segment(MountSegmentRequest {
            client_id: format!("client-{name}"),
            segment: Some(SegmentDesc {
                name: name.into(),
                owner: name.into(),
                base: 1 << 30,
                size,
                protocol: "tcp".into(),
                transport_endpoint: "127.0.0.1:1".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.code, 0);
}

async fn put(c: &mut MasterClient<Channel>, key: &str, size: u64, soft_pin: bool) {
    let r = c
        .put_start(PutStartRequest {
            client_id: "writer".into(),
            key: key.into(),
            size,
            config: Some(ReplicateConfig {
                replica_num: 1,
                soft_pin_action: if soft_pin {
                    SoftPinAction::SoftPinEnable as i32
                } else {
                    SoftPinAction::SoftPinPreserve as i32
                },
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.code, 0, "put_start {key}");
    let r = c
        .put_end(PutEndRequest {
            client_id: "writer".into(),
            key: key.into(),
            put_id: r.put_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.code, 0, "put_end {key}");
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn empty_master_answers_every_route() {
    let m = app::start(config()).await.unwrap();
    let a = m.admin_addr;

    let h = get(a, "/health").await;
    assert_eq!(h.status, 200);
    let j = h.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["role"], "leader");
    assert_eq!(j["leader"], format!("127.0.0.1:{}", m.rpc_addr.port()));

    // SGLang's readiness poll waits for a non-empty body: empty until a segment mounts.
    let s = get(a, "/get_all_segments").await;
    assert_eq!((s.status, s.body.len()), (200, 0));
    assert_eq!(
        get(a, "/get_all_segments?format=json").await.json(),
        serde_json::json!([])
    );
    assert_eq!(get(a, "/get_all_keys").await.body.len(), 0);

    let q = get(a, "/query_key?key=nope").await;
    assert_eq!(q.status, 404);
    assert_eq!(q.json()["key"], "nope");
    let q = get(a, "/query_key").await;
    assert_eq!(q.status, 400);
    assert!(q.json()["error"].as_str().unwrap().contains("key"));

    let w = get(a, "/workers").await;
    assert_eq!(w.status, 200);
    assert!(
        !w.json().as_array().unwrap().is_empty(),
        "workers listed: {}",
        w.text()
    );

    let metrics = get(a, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let t = metrics.text();
    for name in [
        "master_allocated_bytes",
        "master_total_capacity_bytes",
        "master_key_count",
        "master_soft_pin_key_count",
        "master_active_clients",
    ] {
        assert_eq!(metric(&t, name), Some(0.0), "{name} in {t}");
    }
    assert!(t.contains("master_evicted_objects_total"));
    m.stop().await;
}

#[tokio::test]
async fn state_made_over_grpc_shows_on_the_admin_port() {
    let m = app::start(config()).await.unwrap();
    let a = m.admin_addr;
    let mut c = client(&m).await;
    mount(&mut c, "store-a:1", 64 << 20).await;
    mount(&mut c, "store-b:1", 32 << 20).await;
    put(&mut c, "k1", 1 << 20, false).await;
    put(&mut c, "k2", 2 << 20, true).await;
    let exist = c
        .exist(KeyRequest { key: "k1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exist.code, 1);

    let segs = get(a, "/get_all_segments").await.text();
    assert_eq!(segs, "store-a:1\nstore-b:1\n");
    let detail = get(a, "/get_all_segments?format=json").await.json();
    assert_eq!(detail[0]["name"], "store-a:1");
    assert_eq!(detail[0]["size"], 64 << 20);
    assert_eq!(get(a, "/get_all_keys").await.text(), "k1\nk2\n");
    assert_eq!(
        get(a, "/get_all_keys?format=json").await.json(),
        serde_json::json!(["k1", "k2"])
    );

    let q = get(a, "/query_key?key=k2").await;
    assert_eq!(q.status, 200, "{}", q.text());
    let j = q.json();
    assert_eq!(j["key"], "k2");
    assert_eq!(j["size"], 2 << 20);
    assert_eq!(j["complete"], true);
    assert_eq!(j["soft_pinned"], true);
    assert_eq!(j["replicas"].as_array().unwrap().len(), 1);

    let t = get(a, "/metrics").await.text();
    assert_eq!(metric(&t, "master_key_count"), Some(2.0), "{t}");
    assert_eq!(metric(&t, "master_soft_pin_key_count"), Some(1.0));
    assert_eq!(
        metric(&t, "master_total_capacity_bytes"),
        Some((96u64 << 20) as f64)
    );
    assert!(metric(&t, "master_allocated_bytes").unwrap() >= (3u64 << 20) as f64);
    assert_eq!(metric(&t, "master_active_clients"), Some(2.0));
    assert!(
        t.contains("segment_capacity_bytes{segment=\"store-a:1\"} 67108864"),
        "{t}"
    );
    assert!(t.contains("segment_allocated_bytes{segment=\"store-b:1\"}"));
    assert!(
        t.contains("master_requests_total{op=\"put_start\"} 2"),
        "{t}"
    );
    assert!(t.contains("master_requests_total{op=\"exist\"} 1"), "{t}");
    assert!(t.contains("master_requests_total{op=\"mount\"} 2"), "{t}");
    m.stop().await;
}

#[tokio::test]
async fn failures_are_counted() {
    let m = app::start(config()).await.unwrap();
    let mut c = client(&m).await;
    // No segment mounted: the put has nowhere to go.
    let r = c
        .put_start(PutStartRequest {
            client_id: "w".into(),
            key: "nospace".into(),
            size: 4096,
            config: Some(ReplicateConfig::default()),
        })
        .await
        .map(|r| r.into_inner().code)
        .unwrap_or(-1);
    assert!(r < 0);
    let t = get(m.admin_addr, "/metrics").await.text();
    assert!(
        t.contains("master_request_failures_total{op=\"put_start\"} 1"),
        "{t}"
    );
    assert!(metric(&t, "master_failures_total").unwrap() >= 1.0);
    m.stop().await;
}

#[tokio::test]
async fn two_masters_in_one_process_keep_their_own_metrics() {
    let (m1, m2) = (
        app::start(config()).await.unwrap(),
        app::start(config()).await.unwrap(),
    );
    let mut c1 = client(&m1).await;
    for _ in 0..3 {
        c1.exist(KeyRequest { key: "x".into() }).await.unwrap();
    }
    let t1 = get(m1.admin_addr, "/metrics").await.text();
    let t2 = get(m2.admin_addr, "/metrics").await.text();
    assert!(t1.contains("master_requests_total{op=\"exist\"} 3"), "{t1}");
    assert!(
        !t2.contains("master_requests_total{op=\"exist\"} 3"),
        "{t2}"
    );
    m1.stop().await;
    m2.stop().await;
}

#[tokio::test]
async fn embedded_metadata_server_runs_beside_the_admin_port() {
    let m = app::start(config()).await.unwrap();
    let meta = m.metadata_addr.expect("enabled in config()");
    let r = http_support::request(meta, "PUT", "/metadata?key=k", b"v").await;
    assert_eq!(r.status, 200);
    assert_eq!(get(meta, "/metadata?key=k").await.text(), "v");
    // The admin port does not serve metadata, and vice versa.
    assert_eq!(get(m.admin_addr, "/metadata?key=k").await.status, 404);
    assert_eq!(get(meta, "/metrics").await.status, 404);
    m.stop().await;
}

#[tokio::test]
async fn a_taken_port_fails_naming_its_flag() {
    let m = app::start(config()).await.unwrap();
    let mut cfg = config();
    cfg.metrics_port = m.admin_addr.port();
    let e = app::start(cfg)
        .await
        .err()
        .expect("port is taken")
        .to_string();
    assert!(e.contains("metrics_port"), "{e}");
    m.stop().await;
}

#[tokio::test]
async fn a_standby_answers_503_naming_the_leader() {
    use mooncake_master::http::admin::{router, AdminState, RoleInfo};
    use mooncake_master::metrics::MasterMetrics;
    use mooncake_master::Master;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let master = Master::new(MasterConfig::default());
    let metrics = Arc::new(MasterMetrics::new(prometheus::Registry::new()).unwrap());
    let leading = Arc::new(AtomicBool::new(false));
    let flag = leading.clone();
    let role = Arc::new(move || {
        if flag.load(Ordering::SeqCst) {
            RoleInfo::leader("10.0.0.1:50051")
        } else {
            RoleInfo {
                role: "standby".into(),
                leader: "10.0.0.2:50051".into(),
            }
        }
    });
    let app = router(AdminState::with_role(master, metrics, role));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mooncake_master::http::serve(
        l,
        app,
        async {
            let _ = stopped.await;
        },
        None,
    ));

    for path in [
        "/health",
        "/get_all_segments",
        "/get_all_keys",
        "/query_key?key=k",
    ] {
        let r = get(a, path).await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json()["leader"], "10.0.0.2:50051", "{path}");
    }
    // Metrics stay scrapeable on a standby.
    assert_eq!(get(a, "/metrics").await.status, 200);

    leading.store(true, Ordering::SeqCst);
    let h = get(a, "/health").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["leader"], "10.0.0.1:50051");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

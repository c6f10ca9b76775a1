//! The HTTP metadata server (CONTRACT §6) over real sockets on 127.0.0.1:0.

mod http_support;

use http_support::{get, request};
use mooncake_master::http::metadata::MetadataServer;

#[tokio::test]
async fn put_get_delete_round_trip() {
    let srv = MetadataServer::start("127.0.0.1:0").await.unwrap();
    let a = srv.addr();
    assert!(srv.url().ends_with("/metadata"));

    let r = request(a, "PUT", "/metadata?key=mooncake/ram/x", br#"{"a":1}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(a, "/metadata?key=mooncake/ram/x").await;
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":1}"#));

    // Overwrite is allowed for ordinary keys.
    request(a, "PUT", "/metadata?key=mooncake/ram/x", b"v2").await;
    assert_eq!(get(a, "/metadata?key=mooncake/ram/x").await.text(), "v2");

    let r = request(a, "DELETE", "/metadata?key=mooncake/ram/x", b"").await;
    assert_eq!(r.status, 200);
    let r = get(a, "/metadata?key=mooncake/ram/x").await;
    assert_eq!((r.status, r.text().as_str()), (404, "metadata not found"));
    let r = request(a, "DELETE", "/metadata?key=mooncake/ram/x", b"").await;
    assert_eq!(r.status, 404);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn missing_key_is_400_and_health_is_ok() {
    let srv = MetadataServer::start("127.0.0.1:0").await.unwrap();
    let a = srv.addr();
    for (method, path) in [
        ("GET", "/metadata"),
        ("PUT", "/metadata"),
        ("DELETE", "/metadata"),
        ("GET", "/metadata?key="),
        ("GET", "/metadata?other=1"),
    ] {
        let r = request(a, method, path, b"x").await;
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        assert!(r.text().contains("key"), "{}", r.text());
    }
    let r = get(a, "/health").await;
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
}

#[tokio::test]
async fn rpc_meta_keys_are_write_once() {
    let srv = MetadataServer::start("127.0.0.1:0").await.unwrap();
    let a = srv.addr();
    let k = "/metadata?key=mooncake/rpc_meta/host:1";
    assert_eq!(request(a, "PUT", k, b"first").await.status, 200);
    assert_eq!(
        request(a, "PUT", k, b"first").await.status,
        200,
        "identical rewrite"
    );
    let r = request(a, "PUT", k, b"second").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("write-once"), "{}", r.text());
    assert_eq!(get(a, k).await.text(), "first");
    // Deleting releases the name (a process that left cleanly).
    assert_eq!(request(a, "DELETE", k, b"").await.status, 200);
    assert_eq!(request(a, "PUT", k, b"second").await.status, 200);
    assert_eq!(get(a, k).await.text(), "second");
}

#[tokio::test]
async fn binary_and_large_values_survive() {
    let srv = MetadataServer::start("127.0.0.1:0").await.unwrap();
    let a = srv.addr();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        request(a, "PUT", "/metadata?key=big", &big).await.status,
        200
    );
    let r = get(a, "/metadata?key=big").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, big);
    // Percent-encoded keys are decoded.
    assert_eq!(
        request(a, "PUT", "/metadata?key=a%2Fb%20c", b"1")
            .await
            .status,
        200
    );
    assert_eq!(srv.store().get("a/b c").unwrap(), "1");
}

#[tokio::test]
async fn concurrent_writers_of_distinct_keys() {
    let srv = MetadataServer::start("127.0.0.1:0").await.unwrap();
    let a = srv.addr();
    let mut tasks = Vec::new();
    for i in 0..32 {
        tasks.push(tokio::spawn(async move {
            let path = format!("/metadata?key=k{i}");
            request(a, "PUT", &path, format!("v{i}").as_bytes())
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(srv.store().len(), 32);
    assert_eq!(get(a, "/metadata?key=k17").await.text(), "v17");
}

#[tokio::test]
async fn stopping_closes_the_port() {
    let srv = MetadataServer::start("127.0.0.1:0").await.unwrap();
    let a = srv.addr();
    srv.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(a).await.is_err());
}

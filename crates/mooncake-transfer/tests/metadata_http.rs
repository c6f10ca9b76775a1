//! The HTTP metadata backend against a tiny in-test metadata server speaking the
//! contract's protocol (GET/PUT/DELETE /metadata?key=K, 404 when missing).

mod common;

use common::{engine_with, pattern, req};
use mooncake_common::ErrorCode;
use mooncake_transfer::metadata;
use mooncake_transfer::segment::SegmentDescriptor;
use mooncake_transfer::Opcode;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Store = Arc<Mutex<HashMap<String, String>>>;

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn handle(mut s: TcpStream, store: Store) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut tmp).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + 4 + len {
        let n = s.read(&mut tmp).await.unwrap();
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).to_string();
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
    let key = target.split_once("?key=").map(|(_, k)| unescape(k));
    let (code, text) = match (method, key) {
        (_, None) => (400, "missing key".to_string()),
        ("GET", Some(k)) => match store.lock().get(&k) {
            Some(v) => (200, v.clone()),
            None => (404, "metadata not found".into()),
        },
        ("PUT", Some(k)) => {
            store.lock().insert(k, body);
            (200, "OK".into())
        }
        ("DELETE", Some(k)) => match store.lock().remove(&k) {
            Some(_) => (200, "OK".into()),
            None => (404, "metadata not found".into()),
        },
        _ => (405, "method".into()),
    };
    let resp = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
}

async fn metadata_server() -> (String, Store) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metadata", l.local_addr().unwrap());
    let store: Store = Arc::default();
    let st = store.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(handle(s, st.clone()));
        }
    });
    (url, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_get_put_delete() {
    let (url, store) = metadata_server().await;
    let m = metadata::connect(&url).await.unwrap();
    assert!(!m.is_p2p());
    assert_eq!(m.get("mooncake/ram/x:1").await.unwrap(), None);
    m.put("mooncake/ram/x:1", "{\"a\":1}").await.unwrap();
    assert_eq!(store.lock().get("mooncake/ram/x:1").unwrap(), "{\"a\":1}");
    assert_eq!(
        m.get("mooncake/ram/x:1").await.unwrap().as_deref(),
        Some("{\"a\":1}")
    );
    m.delete("mooncake/ram/x:1").await.unwrap();
    m.delete("mooncake/ram/x:1").await.unwrap(); // 404 is fine
    assert!(store.lock().is_empty());
    // An unreachable server is a clear metadata error.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/metadata", l.local_addr().unwrap());
    drop(l);
    let e = metadata::connect(&dead)
        .await
        .unwrap()
        .get("k")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("metadata"), "{e}");
    assert!(metadata::connect("etcd-or-what://x").await.is_err() || cfg!(feature = "etcd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_find_each_other_through_the_http_metadata_server() {
    let (url, store) = metadata_server().await;
    let a = engine_with(|c| c.metadata = url.clone()).await;
    let b = engine_with(|c| c.metadata = url.clone()).await;
    let mut region = vec![0u8; 2 << 20];
    let base = region.as_mut_ptr() as u64;
    unsafe { a.register_memory(base as usize, region.len()) }.unwrap();
    a.publish().await.unwrap();
    let name = a.segment_name().to_string();
    let desc =
        SegmentDescriptor::from_json(store.lock().get(&format!("mooncake/ram/{name}")).unwrap())
            .unwrap();
    assert_eq!(desc.generation, a.generation());
    assert_eq!(desc.buffers[0].addr, base);
    let rpc = store
        .lock()
        .get(&format!("mooncake/rpc_meta/{name}"))
        .unwrap()
        .clone();
    assert!(rpc.contains("rpc_port"), "{rpc}");

    // B resolves A by name through the server (no endpoint hint).
    let data = pattern(1 << 20, 8);
    let res = unsafe { b.transfer(&[req(Opcode::Write, &data, &a, base)]).await };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert_eq!(&region[..data.len()], &data[..]);

    // A name the server does not know is SEGMENT_NOT_FOUND.
    let mut r = req(Opcode::Write, &data, &a, base);
    r.target = "nobody:1".into();
    let res = unsafe { b.transfer(&[r]).await };
    assert_eq!(
        res[0].as_ref().unwrap_err().code(),
        ErrorCode::SegmentNotFound
    );

    a.shutdown().await;
    assert!(
        !store.lock().contains_key(&format!("mooncake/ram/{name}")),
        "shutdown withdraws the descriptor"
    );
}

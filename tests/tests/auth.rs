//! Authentication and tenants on the master's rpc port (`--auth_token_file`), with real
//! master and store processes: unproven peers refused on both protocols (and on raw
//! sockets that skip the handshake), tenants isolated from each other's keys, the
//! cluster tenant reaching every key, a declared tenant_id checked against the token,
//! a tenant's own segment holding only its objects, and tokens rotated in place.

use mooncake_client::calls::MasterCalls;
use mooncake_client::transport::{DirectConfig, MasterChannel, Protocol};
use mooncake_client::{Client, ClientConfig, ErrorCode, ReplicateConfig};
use mooncake_common::auth::{Credential, CLUSTER_TENANT};
use mooncake_common::config::NodeConfig;
use mooncake_proto::frame::{self, MAGIC};
use mooncake_proto::handshake::{self as hs, AUTH_MAGIC};
use mooncake_proto::status::from_status;
use mooncake_proto::{GetStatsRequest, UnmountSegmentRequest};
use mooncake_tests::{node_for, runtime, store_env, Master, Store, TestDir};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKENS: &str =
    "cluster:tok-cluster-5555555555\nalpha:tok-alpha-0123456789\nbeta:tok-beta-9876543210\n";
const CLUSTER: &str = "tok-cluster-5555555555";
const ALPHA: &str = "tok-alpha-0123456789";
const BETA: &str = "tok-beta-9876543210";

fn master_with(tokens: &Path) -> Master {
    let flag = format!("--auth_token_file={}", tokens.display());
    Master::start(&[&flag])
}

/// A master with [`TOKENS`] and a 64 MiB store proving the cluster token (read from a
/// file in `dir`).
fn master_and_store(dir: &TestDir) -> (Master, Store) {
    let m = master_with(&dir.file("tokens", TOKENS));
    let cluster_file = dir.file("cluster", format!("{CLUSTER}\n"));
    let mut env = store_env(&m, "64mb");
    env.push((
        "MOONCAKE_AUTH_TOKEN_FILE".into(),
        cluster_file.display().to_string(),
    ));
    let store = Store::start(&env);
    (m, store)
}

fn cred(token: &str) -> Credential {
    Credential::from_token(token, "test").unwrap()
}

/// Raw master calls over `protocol`, proving `token` if given.
fn calls(m: &Master, protocol: Protocol, token: Option<&str>, tenant: Option<&str>) -> MasterCalls {
    let ch = MasterChannel::new(
        &m.addr(),
        DirectConfig {
            connect_timeout: Duration::from_secs(2),
            timeout: Some(Duration::from_secs(5)),
            keep_alive: None,
            auth: token.map(|t| {
                mooncake_client::auth::ClientAuth::new(cred(t), tenant.map(str::to_string))
            }),
        },
        protocol,
    );
    MasterCalls::new(ch).unwrap()
}

/// A client (no memory of its own unless `segment` > 0) proving `token`.
async fn client_of(
    m: &Master,
    token: Option<&str>,
    tenant: Option<&str>,
    segment: u64,
) -> mooncake_client::Result<Client> {
    let node = NodeConfig {
        global_segment_size: segment,
        ..node_for(m)
    };
    let mut cfg = ClientConfig::new(node);
    cfg.tuning.credential = token.map(cred);
    cfg.tuning.tenant_id = tenant.map(str::to_string);
    cfg.tuning.shm = false;
    Client::connect(cfg).await
}

fn code_of_stats(c: &mut MasterCalls, rt: &tokio::runtime::Runtime) -> ErrorCode {
    match rt.block_on(c.get_stats(GetStatsRequest {})) {
        Ok(_) => ErrorCode::Ok,
        Err(s) => from_status(&s),
    }
}

#[test]
fn unproven_peers_are_refused_on_both_protocols() {
    let dir = TestDir::new("auth-refuse");
    let m = master_with(&dir.file("tokens", TOKENS));
    let rt = runtime();
    for protocol in [Protocol::Framed, Protocol::Grpc] {
        let mut none = calls(&m, protocol, None, None);
        assert_eq!(
            code_of_stats(&mut none, &rt),
            ErrorCode::Unauthenticated,
            "{protocol:?}"
        );
        let mut wrong = calls(&m, protocol, Some("not-a-token"), None);
        assert_eq!(
            code_of_stats(&mut wrong, &rt),
            ErrorCode::Unauthenticated,
            "{protocol:?}"
        );
        let mut mismatch = calls(&m, protocol, Some(ALPHA), Some("beta"));
        assert_eq!(
            code_of_stats(&mut mismatch, &rt),
            ErrorCode::PermissionDenied,
            "{protocol:?}"
        );
        let mut ok = calls(&m, protocol, Some(ALPHA), Some("alpha"));
        assert_eq!(code_of_stats(&mut ok, &rt), ErrorCode::Ok, "{protocol:?}");
    }
    // The refusal names authentication for the CLI's user, who exits 1.
    let out = mooncake_tests::cli(&m.addr(), &["get", "k"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(text.contains("auth"), "{text}");
}

/// A request frame for `method` with `msg` as its protobuf bytes.
fn request(method: &str, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_request(&format!("/mooncake.v1.Master/{method}"), msg, &mut out).unwrap();
    out
}

/// Reads one answer frame; its contract code.
fn answer_code(s: &mut std::net::TcpStream) -> i32 {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(head) as usize];
    s.read_exact(&mut body).unwrap();
    frame::decode_answer(&body).unwrap().error_code
}

fn raw(m: &Master) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", m.rpc_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn closed(s: &mut std::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn raw_sockets_that_skip_or_fake_the_handshake_get_nothing() {
    let dir = TestDir::new("auth-raw");
    let m = master_with(&dir.file("tokens", TOKENS));
    // RemoveAllRequest { force: true }
    let remove_all = [0x08u8, 0x01];

    // The plain magic and a request: answered UNAUTHENTICATED, then closed.
    let mut s = raw(&m);
    s.write_all(&MAGIC).unwrap();
    s.write_all(&request("RemoveAll", &remove_all)).unwrap();
    assert_eq!(answer_code(&mut s), ErrorCode::Unauthenticated.code());
    assert!(closed(&mut s));

    // A frame announced at 64 MiB without the handshake: refused without reading it.
    let mut s = raw(&m);
    s.write_all(&MAGIC).unwrap();
    s.write_all(&(64u32 << 20).to_le_bytes()).unwrap();
    assert_eq!(answer_code(&mut s), ErrorCode::Unauthenticated.code());

    // The authenticating magic with a made-up proof: refused, closed.
    let mut s = raw(&m);
    s.write_all(&AUTH_MAGIC).unwrap();
    let mut hello = [0u8; hs::HELLO_LEN];
    s.read_exact(&mut hello).unwrap();
    let (required, _) = hs::decode_hello(&hello).unwrap();
    assert!(required);
    s.write_all(&hs::encode_proof(&[1; 32], &[2; 32], "").unwrap())
        .unwrap();
    let mut head = [0u8; hs::VERDICT_HEAD_LEN];
    s.read_exact(&mut head).unwrap();
    let (code, n) = hs::decode_verdict_head(&head);
    assert_eq!(code, ErrorCode::Unauthenticated.code());
    let mut text = vec![0u8; n];
    s.read_exact(&mut text).unwrap();
    assert!(String::from_utf8_lossy(&text).contains("authentication"));
    let _ = s.write_all(&request("RemoveAll", &remove_all));
    assert!(closed(&mut s));

    // A proof replayed against another challenge fails too.
    let mut s = raw(&m);
    s.write_all(&AUTH_MAGIC).unwrap();
    s.read_exact(&mut hello).unwrap();
    let (_, c1) = hs::decode_hello(&hello).unwrap();
    let proof = cred(ALPHA).prove(hs::PURPOSE, &mooncake_common::auth::Challenge(c1), &[9; 32]);
    s.write_all(&hs::encode_proof(&[9; 32], &proof, "").unwrap())
        .unwrap();
    s.read_exact(&mut head).unwrap();
    let (code, n) = hs::decode_verdict_head(&head);
    let mut text = vec![0u8; n];
    s.read_exact(&mut text).unwrap();
    assert_eq!((code, text.as_slice()), (0, &b"alpha"[..]));
    let mut s2 = raw(&m);
    s2.write_all(&AUTH_MAGIC).unwrap();
    s2.read_exact(&mut hello).unwrap();
    s2.write_all(&hs::encode_proof(&[9; 32], &proof, "").unwrap())
        .unwrap();
    s2.read_exact(&mut head).unwrap();
    assert_eq!(
        hs::decode_verdict_head(&head).0,
        ErrorCode::Unauthenticated.code()
    );

    // The proven connection is served.
    s.write_all(&request("GetStats", &[])).unwrap();
    assert_eq!(answer_code(&mut s), 0);
}

#[test]
fn tenants_see_only_their_own_keys_and_the_cluster_sees_all() {
    let dir = TestDir::new("auth-tenants");
    let (m, _store) = master_and_store(&dir);
    let rt = runtime();
    rt.block_on(async {
        let rc = ReplicateConfig::default();
        let alpha = client_of(&m, Some(ALPHA), Some("alpha"), 0).await.unwrap();
        let beta = client_of(&m, Some(BETA), None, 0).await.unwrap();
        let cluster = client_of(&m, Some(CLUSTER), None, 0).await.unwrap();
        alpha.put("k", b"A", &rc).await.unwrap();
        assert_eq!(
            beta.get("k").await.unwrap_err().code,
            ErrorCode::ObjectNotFound
        );
        assert!(!beta.exist("k").await.unwrap());
        beta.put("k", b"B", &rc).await.unwrap();
        assert_eq!(alpha.get("k").await.unwrap(), b"A");
        assert_eq!(beta.get("k").await.unwrap(), b"B");
        for i in 0..3 {
            alpha.put(&format!("a{i}"), b"x", &rc).await.unwrap();
            beta.put(&format!("b{i}"), b"y", &rc).await.unwrap();
        }
        // The cluster tenant reaches a tenant's key by its whole name.
        let whole = mooncake_common::auth::namespaced_key("alpha", "k");
        assert_eq!(cluster.get(&whole).await.unwrap(), b"A");
        assert!(!cluster.exist("k").await.unwrap());
        // Regex removal sees one tenant's keys: alpha's ".*" leaves beta's alone.
        assert_eq!(alpha.remove_by_regex("^a[0-9]$", true).await.unwrap(), 3);
        assert_eq!(alpha.remove_by_regex(".*", true).await.unwrap(), 1);
        assert_eq!(beta.get("k").await.unwrap(), b"B");
        assert_eq!(beta.remove_all(true).await.unwrap(), 4);
        // Batch calls are namespaced too.
        beta.put("k", b"B2", &rc).await.unwrap();
        let got = alpha
            .batch_exist(&["k".to_string(), "b0".to_string()])
            .await;
        assert!(got.iter().all(|r| matches!(r, Ok(false))), "{got:?}");
        // A tenant cannot drop what it did not mount; the cluster's segment serves it.
        let segs = alpha.segments().await.unwrap();
        assert_eq!(segs.len(), 1);
        let seg = segs[0].segment.clone().unwrap();
        let mut raw = calls(&m, Protocol::Framed, Some(ALPHA), None);
        let r = raw
            .unmount_segment(UnmountSegmentRequest {
                client_id: segs[0].client_id.clone(),
                segment_name: seg.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.code, ErrorCode::PermissionDenied.code());
        assert_eq!(cluster.remove_all(true).await.unwrap(), 1);
        for c in [alpha, beta, cluster] {
            c.close().await.unwrap();
        }
        // A declared tenant that is not the token's is refused at connect.
        let e = client_of(&m, Some(ALPHA), Some("beta"), 0)
            .await
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::PermissionDenied, "{e}");
        let e = client_of(&m, None, None, 0).await.err().unwrap();
        assert_eq!(e.code, ErrorCode::Unauthenticated, "{e}");
    });
    assert_eq!(CLUSTER_TENANT, "cluster");
}

#[test]
fn a_tenants_own_segment_holds_only_its_objects() {
    let dir = TestDir::new("auth-segments");
    let (m, _store) = master_and_store(&dir);
    let rt = runtime();
    rt.block_on(async {
        let rc = ReplicateConfig::default();
        // Alpha's embedded client contributes 16 MiB of its own.
        let alpha = client_of(&m, Some(ALPHA), None, 16 << 20).await.unwrap();
        let beta = client_of(&m, Some(BETA), None, 0).await.unwrap();
        let own = alpha.segment_desc().unwrap().name;
        let keys: Vec<String> = (0..40).map(|i| format!("o{i}")).collect();
        for k in &keys {
            beta.put(k, &vec![7u8; 64 << 10], &rc).await.unwrap();
            alpha.put(k, &vec![9u8; 64 << 10], &rc).await.unwrap();
        }
        let mut alpha_on_own = 0;
        for (b, a) in beta
            .replica_descs(&keys)
            .await
            .into_iter()
            .zip(alpha.replica_descs(&keys).await)
        {
            let (b, a) = (b.unwrap().0, a.unwrap().0);
            assert!(
                b.iter().all(|r| r.segment.as_ref().unwrap().name != own),
                "one of beta's objects was placed in alpha's process"
            );
            alpha_on_own += a
                .iter()
                .filter(|r| r.segment.as_ref().unwrap().name == own)
                .count();
        }
        // Placement spreads alpha's objects over both segments it may use.
        assert!(
            alpha_on_own > 0,
            "alpha's own segment took none of its objects"
        );
        // Beta sees the cluster's segment only; beta cannot unmount alpha's.
        assert!(beta
            .segments()
            .await
            .unwrap()
            .iter()
            .all(|s| s.segment.as_ref().unwrap().name != own));
        let mut raw = calls(&m, Protocol::Grpc, Some(BETA), None);
        let r = raw
            .unmount_segment(UnmountSegmentRequest {
                client_id: alpha.client_id().to_string(),
                segment_name: own.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.code, ErrorCode::PermissionDenied.code());
        assert!(alpha.is_mounted());
        alpha.close().await.unwrap();
        beta.close().await.unwrap();
    });
}

#[test]
fn tokens_rotate_without_a_restart() {
    let dir = TestDir::new("auth-rotate");
    let tokens = dir.file("tokens", "alpha:old-token-1111\n");
    let m = master_with(&tokens);
    let rt = runtime();
    let code = |token: &str| {
        let mut c = calls(&m, Protocol::Framed, Some(token), None);
        code_of_stats(&mut c, &rt)
    };
    let until = |token: &str, want: ErrorCode| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if code(token) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    assert_eq!(code("old-token-1111"), ErrorCode::Ok);
    assert_eq!(code("new-token-2222"), ErrorCode::Unauthenticated);
    // Both during the overlap.
    std::fs::write(&tokens, "alpha:old-token-1111\nalpha:new-token-2222\n").unwrap();
    assert!(
        until("new-token-2222", ErrorCode::Ok),
        "the added token never worked"
    );
    assert_eq!(code("old-token-1111"), ErrorCode::Ok);
    // A connection proven with the old token keeps working after it is removed...
    let mut kept = calls(&m, Protocol::Framed, Some("old-token-1111"), None);
    assert_eq!(code_of_stats(&mut kept, &rt), ErrorCode::Ok);
    std::fs::write(&tokens, "alpha:new-token-2222\n").unwrap();
    // ...new connections with it are refused.
    assert!(
        until("old-token-1111", ErrorCode::Unauthenticated),
        "the removed token kept working"
    );
    assert_eq!(code("new-token-2222"), ErrorCode::Ok);
    assert_eq!(code_of_stats(&mut kept, &rt), ErrorCode::Ok);
    // A broken file keeps the last good set.
    std::fs::write(&tokens, "").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(code("new-token-2222"), ErrorCode::Ok);
    // A client re-reads its token file at each new connection: rotation needs no restart.
    let file = dir.file("alpha", "new-token-2222\n");
    let c = Credential::from_file(&file).unwrap();
    std::fs::write(&file, "other\n").unwrap();
    assert_ne!(c.reload(), c);
}

#[test]
fn a_bad_token_file_stops_the_master_naming_the_file_and_line() {
    let dir = TestDir::new("auth-badfile");
    let tokens = dir.file("tokens", "alpha:ok-token\nbad tenant:x\n");
    let out = std::process::Command::new(mooncake_tests::bin("mooncake_master"))
        .args(["--rpc_port", "0", "--metrics_port", "0"])
        .arg(format!("--auth_token_file={}", tokens.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&tokens.display().to_string()), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

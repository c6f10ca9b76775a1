//! Authentication on the HTTP surfaces, with real master and store processes: the
//! master's admin port (all but `/health` and `/metrics`), its metadata server (reads
//! and writes) and the store's REST API each answer 401 without a token or with a
//! wrong one and serve the right one; a tenant other than `cluster` sees only its own
//! keys and may not drain; refusals are logged once per peer address; and a master
//! without a token file serves everything as before.

use mooncake_tests::{bin, bin_dir, http_text, store_env, Master, Store, TestDir};
use std::process::{Command, Output};

const TOKENS: &str =
    "cluster:tok-cluster-http-1111\nalpha:tok-alpha-http-2222\nbeta:tok-beta-http-3333\n";
const CLUSTER: &str = "tok-cluster-http-1111";
const ALPHA: &str = "tok-alpha-http-2222";
const BETA: &str = "tok-beta-http-3333";

/// The three answers a protected route gives: without a token, with a wrong one, and
/// with `good`.
fn three(method: &str, port: u16, path: &str, body: &str, good: &str) -> [(u16, String); 3] {
    [
        http_text(method, port, path, body, None),
        http_text(method, port, path, body, Some("not-a-token")),
        http_text(method, port, path, body, Some(good)),
    ]
}

fn cli_as(m: &Master, token: &str, args: &[&str]) -> Output {
    Command::new(bin("mooncake_cli"))
        .args(["--master", &m.addr()])
        .args(args)
        .env("MOONCAKE_AUTH_TOKEN", token)
        .env_remove("MOONCAKE_AUTH_TOKEN_FILE")
        .output()
        .expect("run mooncake_cli")
}

fn master_with_tokens(dir: &TestDir) -> Master {
    let tokens = dir.file("tokens", TOKENS);
    Master::start(&[&format!("--auth_token_file={}", tokens.display())])
}

fn store_as(m: &Master, token: &str) -> Store {
    let mut env = store_env(m, "64MB");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), token.into()));
    Store::start(&env)
}

#[test]
fn every_http_surface_refuses_a_missing_or_wrong_token_and_serves_the_right_one() {
    let dir = TestDir::new("http-auth-surfaces");
    let m = master_with_tokens(&dir);
    let store = store_as(&m, CLUSTER);

    // Admin port: probes and scrapes stay open.
    for path in ["/health", "/metrics"] {
        let (status, _) = http_text("GET", m.metrics_port, path, "", None);
        assert_eq!(status, 200, "{path} must stay open");
    }
    for path in [
        "/get_all_keys",
        "/get_all_segments",
        "/query_key?key=k",
        "/workers",
        "/api/v1/drain_jobs",
        "/api/v1/tenant_quotas",
    ] {
        let [none, wrong, right] = three("GET", m.metrics_port, path, "", CLUSTER);
        assert_eq!(none.0, 401, "{path} without a token: {none:?}");
        assert!(none.1.contains("authentication"), "{path}: {none:?}");
        assert_eq!(wrong.0, 401, "{path} with a wrong token: {wrong:?}");
        assert_ne!(right.0, 401, "{path} with the cluster token: {right:?}");
        assert_ne!(right.0, 403, "{path} with the cluster token: {right:?}");
    }
    // A route that does not exist is not a way around the check either.
    let (status, _) = http_text("POST", m.metrics_port, "/api/v1/remove_all", "", None);
    assert_eq!(status, 401);

    // Metadata server: writes and reads of descriptors.
    let meta = m.meta_port;
    let [none, wrong, right] = three("PUT", meta, "/metadata?key=evil", "x", CLUSTER);
    assert_eq!(
        (none.0, wrong.0, right.0),
        (401, 401, 200),
        "{none:?} {wrong:?} {right:?}"
    );
    let [none, wrong, right] = three("GET", meta, "/metadata?key=evil", "", CLUSTER);
    assert_eq!((none.0, wrong.0, right.0), (401, 401, 200));
    assert_eq!(right.1, "x");
    let [none, wrong, right] = three("DELETE", meta, "/metadata?key=evil", "", CLUSTER);
    assert_eq!((none.0, wrong.0, right.0), (401, 401, 200));
    assert_eq!(http_text("GET", meta, "/health", "", None).0, 200);

    // Store REST API: the token the store was started with.
    let sp = store.http_port;
    assert_eq!(http_text("GET", sp, "/health", "", None).0, 200);
    assert_eq!(http_text("GET", sp, "/metrics", "", None).0, 200);
    let put = r#"{"key":"rest-k","value":"v"}"#;
    let [none, wrong, right] = three("PUT", sp, "/api/put", put, CLUSTER);
    assert_eq!((none.0, wrong.0, right.0), (401, 401, 200), "{right:?}");
    let [none, wrong, right] = three("GET", sp, "/api/get/rest-k", "", CLUSTER);
    assert_eq!((none.0, wrong.0, right.0), (401, 401, 200));
    assert_eq!(right.1, "v");
    // A tenant's token is not the store's.
    assert_eq!(
        http_text("GET", sp, "/api/get/rest-k", "", Some(ALPHA)).0,
        401
    );
    let put2 = r#"{"key":"rest-k2","value":"v"}"#;
    assert_eq!(http_text("PUT", sp, "/api/put", put2, Some(CLUSTER)).0, 200);
    let [none, wrong, right] = three("DELETE", sp, "/api/remove_all", "", CLUSTER);
    assert_eq!((none.0, wrong.0, right.0), (401, 401, 200), "{right:?}");
    // (rest-k was just read, so its lease keeps it; rest-k2 was not.)
    let (_, exists) = http_text("GET", sp, "/api/exist/rest-k2", "", Some(CLUSTER));
    assert!(exists.contains("false"), "removed: {exists}");
}

#[test]
fn tenants_see_their_own_keys_and_may_not_drain() {
    let dir = TestDir::new("http-auth-tenants");
    let m = master_with_tokens(&dir);
    let _store = store_as(&m, CLUSTER);
    for (token, key) in [(ALPHA, "a-key"), (BETA, "b-key"), (CLUSTER, "c-key")] {
        let out = cli_as(&m, token, &["put", key, "--value", "v"]);
        assert!(out.status.success(), "{key}: {out:?}");
    }
    let keys = |token| http_text("GET", m.metrics_port, "/get_all_keys", "", Some(token)).1;
    assert_eq!(
        keys(ALPHA),
        "a-key\n",
        "alpha sees its own key, as it named it"
    );
    assert_eq!(keys(BETA), "b-key\n");
    let all = keys(CLUSTER);
    assert!(
        all.contains("c-key") && all.contains("a-key") && all.contains("b-key"),
        "{all}"
    );
    let (status, body) = http_text(
        "GET",
        m.metrics_port,
        "/query_key?key=a-key",
        "",
        Some(ALPHA),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_text(
        "GET",
        m.metrics_port,
        "/query_key?key=a-key",
        "",
        Some(BETA),
    );
    assert_eq!(status, 404, "beta's a-key is another object (none)");

    // Drains reach every tenant's objects: the cluster tenant's only.
    let body = r#"{"segments": ["nope"]}"#;
    let (status, text) = http_text(
        "POST",
        m.metrics_port,
        "/api/v1/drain_jobs",
        body,
        Some(BETA),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("permission denied"), "{text}");
    let (status, _) = http_text(
        "POST",
        m.metrics_port,
        "/api/v1/drain_jobs",
        body,
        Some(CLUSTER),
    );
    assert_ne!(status, 403);
    assert_ne!(status, 401);
    // mooncake_cli drain sends its token: a tenant's is refused with the reason.
    let admin = format!("127.0.0.1:{}", m.metrics_port);
    let out = cli_as(&m, BETA, &["drain", "nope", "--admin", &admin]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403"), "{err}");
}

#[test]
fn refusals_are_logged_once_per_peer_address() {
    let dir = TestDir::new("http-auth-log");
    let m = master_with_tokens(&dir);
    for _ in 0..20 {
        assert_eq!(
            http_text("GET", m.metrics_port, "/get_all_keys", "", None).0,
            401
        );
        assert_eq!(
            http_text("GET", m.metrics_port, "/workers", "", Some("bad")).0,
            401
        );
    }
    // The master logs to its .err file (tracing writes to stderr).
    let log = bin_dir()
        .join("test-logs")
        .join(format!("master-{}.err.log", m.rpc_port));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text
        .lines()
        .filter(|l| l.contains("admin port: refused"))
        .count();
    assert_eq!(lines, 1, "40 refusals from 127.0.0.1, one log line: {text}");
    assert!(
        text.contains("127.0.0.1"),
        "the line names the peer: {text}"
    );
}

#[test]
fn without_a_token_file_everything_is_served_as_before() {
    let m = Master::start(&[]);
    for path in [
        "/get_all_keys",
        "/get_all_segments",
        "/api/v1/tenant_quotas",
    ] {
        let (status, body) = http_text("GET", m.metrics_port, path, "", None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _) = http_text("PUT", m.meta_port, "/metadata?key=k", "v", None);
    assert_eq!(status, 200);
}

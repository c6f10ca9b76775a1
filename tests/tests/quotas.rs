//! Tenant quotas on the master's admin port (`/api/v1/tenant_quotas`), with real
//! master, store and `mooncake_cli` processes: only the `cluster` tenant sets them; a
//! tenant over its quota is refused at put start with TENANT_QUOTA_EXCEEDED (-1700)
//! while another tenant's put succeeds; a quota below what a tenant holds is accepted
//! and closes its admission; DELETE lifts the limit; usage and refusals show in the
//! answers and in the metrics; a quota survives a restart with `--enable_snapshot`;
//! a tenant's concurrent puts never pass its quota together; and a tenant flooding
//! the pool is evicted before another tenant's objects are.

use mooncake_client::{Client, ClientConfig, ErrorCode, ReplicateConfig};
use mooncake_common::auth::Credential;
use mooncake_tests::{bin, http_text, node_for, store_env, value_for, Master, Store, TestDir};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

const TOKENS: &str =
    "cluster:tok-cluster-quota-1111\nalpha:tok-alpha-quota-2222\nbeta:tok-beta-quota-3333\n";
const CLUSTER: &str = "tok-cluster-quota-1111";
const ALPHA: &str = "tok-alpha-quota-2222";
const BETA: &str = "tok-beta-quota-3333";
const MIB: u64 = 1 << 20;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn quota_path(tenant: &str) -> String {
    format!("/api/v1/tenant_quotas?tenant_id={tenant}")
}

fn set_quota(m: &Master, tenant: &str, bytes: u64, token: Option<&str>) -> (u16, String) {
    let body = format!(r#"{{"requested_quota_bytes": {bytes}}}"#);
    http_text("PUT", m.metrics_port, &quota_path(tenant), &body, token)
}

/// `mooncake_cli put KEY --file F` proving `token` (none: no credential).
fn put_file(m: &Master, token: Option<&str>, key: &str, file: &PathBuf) -> Output {
    let mut c = Command::new(bin("mooncake_cli"));
    c.args(["--master", &m.addr(), "put", key, "--file"])
        .arg(file)
        .env_remove("MOONCAKE_AUTH_TOKEN")
        .env_remove("MOONCAKE_AUTH_TOKEN_FILE");
    if let Some(t) = token {
        c.env("MOONCAKE_AUTH_TOKEN", t);
    }
    c.output().expect("run mooncake_cli")
}

fn refused_for_quota(out: &Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    !out.status.success() && (err.contains("-1700") || err.contains("TENANT_QUOTA_EXCEEDED"))
}

#[test]
fn quotas_are_set_by_the_cluster_tenant_and_enforced_at_put_start() {
    let dir = TestDir::new("quotas-enforce");
    let tokens = dir.file("tokens", TOKENS.as_bytes());
    let m = Master::start(&[&format!("--auth_token_file={}", tokens.display())]);
    let mut env = store_env(&m, "64MB");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), CLUSTER.into()));
    let _store = Store::start(&env);
    let two_mib = dir.file("two", vec![7u8; 2 * MIB as usize]);
    let half_mib = dir.file("half", vec![5u8; (MIB / 2) as usize]);

    // Only the cluster tenant may set or remove quotas.
    let (status, body) = set_quota(&m, "beta", MIB, Some(BETA));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("permission denied"), "{body}");
    assert_eq!(set_quota(&m, "beta", MIB, None).0, 401);
    let (status, _) = http_text(
        "DELETE",
        m.metrics_port,
        &quota_path("beta"),
        "",
        Some(ALPHA),
    );
    assert_eq!(status, 403);
    // Bad requests name the problem.
    assert_eq!(set_quota(&m, "beta", 0, Some(CLUSTER)).0, 400);
    assert_eq!(set_quota(&m, "bad%20name", MIB, Some(CLUSTER)).0, 400);
    let (status, body) = http_text(
        "PUT",
        m.metrics_port,
        &quota_path("beta"),
        "{",
        Some(CLUSTER),
    );
    assert_eq!(status, 400);
    assert!(body.contains("requested_quota_bytes"), "{body}");

    let (status, body) = set_quota(&m, "beta", MIB, Some(CLUSTER));
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["tenant_id"], "beta");
    assert_eq!(v["data"]["requested_quota_bytes"], MIB);
    assert_eq!(v["data"]["has_explicit_policy"], true);

    // beta's 2 MiB put is refused at start; alpha's goes through.
    let out = put_file(&m, Some(BETA), "big", &two_mib);
    assert!(refused_for_quota(&out), "{out:?}");
    let out = put_file(&m, Some(ALPHA), "big", &two_mib);
    assert!(out.status.success(), "{out:?}");
    // Within its quota beta may put.
    let out = put_file(&m, Some(BETA), "small", &half_mib);
    assert!(out.status.success(), "{out:?}");

    // beta sees its own quota, not alpha's.
    let (status, body) = http_text(
        "GET",
        m.metrics_port,
        "/api/v1/tenant_quotas",
        "",
        Some(BETA),
    );
    assert_eq!(status, 200, "{body}");
    let list = json(&body)["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["tenant_id"], "beta");
    assert_eq!(list[0]["charged_bytes"], MIB / 2);
    assert_eq!(list[0]["refused_puts"], 1);
    let (status, _) = http_text("GET", m.metrics_port, &quota_path("alpha"), "", Some(BETA));
    assert_eq!(status, 403);
    // The cluster tenant sees every tenant.
    let (_, body) = http_text(
        "GET",
        m.metrics_port,
        "/api/v1/tenant_quotas",
        "",
        Some(CLUSTER),
    );
    let all = json(&body);
    let alpha = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant_id"] == "alpha")
        .cloned()
        .unwrap_or_else(|| panic!("alpha listed: {body}"));
    assert_eq!(alpha["charged_bytes"], 2 * MIB);
    assert_eq!(alpha["has_explicit_policy"], false);

    // A quota below what beta holds: accepted, admission closed, nothing removed.
    let (status, body) = set_quota(&m, "beta", 100 << 10, Some(CLUSTER));
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["data"]["over_quota"], true);
    assert_eq!(v["data"]["admission_closed"], true);
    assert_eq!(v["data"]["charged_bytes"], MIB / 2);
    let one = dir.file("one", b"x");
    assert!(refused_for_quota(&put_file(&m, Some(BETA), "tiny", &one)));
    let got = Command::new(bin("mooncake_cli"))
        .args(["--master", &m.addr(), "get", "small"])
        .env("MOONCAKE_AUTH_TOKEN", BETA)
        .output()
        .unwrap();
    assert!(got.status.success(), "beta's object stays: {got:?}");
    assert_eq!(got.stdout.len(), (MIB / 2) as usize);

    // Per-tenant metrics.
    let (_, metrics) = http_text("GET", m.metrics_port, "/metrics", "", None);
    assert!(
        metrics.contains("master_tenant_refused_puts_total{tenant=\"beta\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "master_tenant_bytes{{tenant=\"alpha\"}} {}",
            2 * MIB
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("master_tenant_quota_bytes{tenant=\"beta\"} 102400"),
        "{metrics}"
    );

    // DELETE lifts the limit; a second DELETE finds none.
    let (status, body) = http_text(
        "DELETE",
        m.metrics_port,
        &quota_path("beta"),
        "",
        Some(CLUSTER),
    );
    assert_eq!(status, 200, "{body}");
    assert!(put_file(&m, Some(BETA), "big", &two_mib).status.success());
    let (status, _) = http_text(
        "DELETE",
        m.metrics_port,
        &quota_path("beta"),
        "",
        Some(CLUSTER),
    );
    assert_eq!(status, 404);
}

#[test]
fn quotas_survive_a_restart_with_the_on_disk_index() {
    let dir = TestDir::new("quotas-restart");
    let snap = dir.path().join("snap");
    let flags = [
        "--enable_snapshot".to_string(),
        format!("--snapshot_backup_dir={}", snap.display()),
    ];
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut m = Master::start(&args);
    let (status, body) = set_quota(&m, "gamma", 5 * MIB, None);
    assert_eq!(status, 200, "{body}");
    let (rpc, met) = (m.rpc_port, m.metrics_port);
    m.proc.signal(libc::SIGTERM);
    assert_eq!(m.proc.wait_exit(Duration::from_secs(10)), Some(0));
    let m = Master::start_on_ports(rpc, met, &args);
    let (status, body) = http_text("GET", m.metrics_port, &quota_path("gamma"), "", None);
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["data"]["requested_quota_bytes"], 5 * MIB, "{body}");
    assert_eq!(v["data"]["has_explicit_policy"], true);
}

/// A client of the tenant `token` names, through the master's metadata server.
async fn tenant_client(m: &Master, token: &str) -> Client {
    let mut cfg = ClientConfig::new(node_for(m));
    cfg.tuning.credential = Some(Credential::from_token(token, "test").unwrap());
    Client::connect(cfg).await.expect("tenant client connects")
}

/// Puts `key`, waiting out NoAvailableHandle while eviction makes room.
async fn put_retrying(c: &Client, key: &str, len: usize) {
    let v = value_for(key, len);
    for _ in 0..100 {
        match c.put(key, &v, &ReplicateConfig::default()).await {
            Ok(()) => return,
            Err(e) if e.code == ErrorCode::NoAvailableHandle => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("put {key}: {e}"),
        }
    }
    panic!("put {key} never found room");
}

/// beta writes its hot set first and never reads it (the first objects the eviction
/// policy alone would take); alpha then writes five times the pool. alpha, over its
/// equal share, is evicted; every one of beta's objects reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_the_pool_is_evicted_before_another_tenants_objects() {
    let dir = TestDir::new("quotas-fair");
    let tokens = dir.file("tokens", TOKENS.as_bytes());
    let m = Master::start(&[&format!("--auth_token_file={}", tokens.display())]);
    let mut env = store_env(&m, "32MB");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), CLUSTER.into()));
    let _store = Store::start(&env);
    let beta = tenant_client(&m, BETA).await;
    let alpha = tenant_client(&m, ALPHA).await;
    let len = MIB as usize;
    for i in 0..8 {
        put_retrying(&beta, &format!("hot-{i}"), len).await;
    }
    for i in 0..160 {
        put_retrying(&alpha, &format!("flood-{i}"), len).await;
    }
    let evicted = m.metric("master_evicted_objects_total").unwrap_or(0.0);
    assert!(
        evicted >= 130.0,
        "160 MiB through a 32 MiB pool evicted {evicted}"
    );
    for i in 0..8 {
        let k = format!("hot-{i}");
        let got = beta
            .get(&k)
            .await
            .unwrap_or_else(|e| panic!("beta's {k} was evicted ({e})"));
        assert!(got == value_for(&k, len), "{k} reads back other bytes");
    }
    assert_eq!(
        alpha.get("flood-0").await.map_err(|e| e.code).err(),
        Some(ErrorCode::ObjectNotFound),
        "the flooder's oldest object stays"
    );
    let _ = beta.close().await;
    let _ = alpha.close().await;
}

/// Twelve 1 MiB puts of one tenant started at once against a 4 MiB quota: exactly
/// four are stored, the others refused with TENANT_QUOTA_EXCEEDED, and the tenant
/// holds no more than its quota (check and charge are one step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_a_tenant_never_pass_its_quota_together() {
    let dir = TestDir::new("quotas-race");
    let tokens = dir.file("tokens", TOKENS.as_bytes());
    let m = Master::start(&[&format!("--auth_token_file={}", tokens.display())]);
    let mut env = store_env(&m, "64MB");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), CLUSTER.into()));
    let _store = Store::start(&env);
    let (status, body) = set_quota(&m, "beta", 4 * MIB, Some(CLUSTER));
    assert_eq!(status, 200, "{body}");
    let beta = tenant_client(&m, BETA).await;
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..12 {
        let c = beta.clone();
        puts.spawn(async move {
            let k = format!("race-{i}");
            c.put(
                &k,
                &value_for(&k, MIB as usize),
                &ReplicateConfig::default(),
            )
            .await
            .map_err(|e| e.code)
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(r) = puts.join_next().await {
        match r.unwrap() {
            Ok(()) => stored += 1,
            Err(ErrorCode::TenantQuotaExceeded) => refused += 1,
            Err(e) => panic!("put failed with {e:?}"),
        }
    }
    assert_eq!((stored, refused), (4, 8));
    let (_, body) = http_text(
        "GET",
        m.metrics_port,
        &quota_path("beta"),
        "",
        Some(CLUSTER),
    );
    let v = json(&body);
    assert_eq!(v["data"]["charged_bytes"], 4 * MIB, "{body}");
    assert_eq!(v["data"]["refused_puts"], 8, "{body}");
    let _ = beta.close().await;
}

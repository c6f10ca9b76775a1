//! HA with authentication: two `mooncake_master --enable_ha --auth_token_file` over a
//! real etcd. The standby proves the `cluster` token to its leader before following
//! (a leader serves its replication stream to proven peers only), so an object a
//! tenant wrote before a kill -9 of the leader is still there, the tenant's own, after
//! the standby takes over.

use mooncake_client::{Client, ClientConfig};
use mooncake_common::auth::Credential;
use mooncake_tests::etcd::{etcd_available, ha_node, ha_store_env, put_until_ok};
use mooncake_tests::ha::{Admin, HaPair};
use mooncake_tests::{value_for, Store, TestDir};
use std::time::Duration;

const CLUSTER: &str = "tok-cluster-ha-0001";
const ALPHA: &str = "tok-alpha-ha-0002";
const LEN: usize = 10_000;
const PAUSE: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_proves_its_token_to_follow_and_keeps_a_tenants_objects() {
    if !etcd_available() {
        return;
    }
    let dir = TestDir::new("ha-auth");
    let tokens = dir.file("tokens", format!("cluster:{CLUSTER}\nalpha:{ALPHA}\n"));
    // The standby is in sync only if the leader accepted its proof.
    let token_flag = format!("--auth_token_file={}", tokens.display());
    let mut pair = HaPair::start("ha-auth", &[&token_flag], Admin::Bearer(CLUSTER.into()));
    let ep = pair.endpoints.clone();
    let mut env = ha_store_env(&ep, "16mb");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), CLUSTER.into()));
    let _store = Store::start(&env);

    let mut cfg = ClientConfig::new(ha_node(&format!("etcd://{ep},")));
    cfg.tuning.credential = Some(Credential::from_token(ALPHA, "test").unwrap());
    let c = Client::connect(cfg)
        .await
        .expect("alpha connects through etcd");
    put_until_ok(&c, "before", LEN, Duration::from_secs(20), PAUSE).await;

    let l = pair.leader;
    pair.masters[l].proc.kill9();
    put_until_ok(&c, "after", LEN, Duration::from_secs(30), PAUSE).await;
    assert_eq!(c.get("before").await.unwrap(), value_for("before", LEN));
    assert_eq!(c.get("after").await.unwrap(), value_for("after", LEN));
    let _ = c.close().await;
    drop(pair);
    drop(dir);
}

//! HA with authentication: two `mooncake_master --enable_ha --auth_token_file` over a
//! real etcd. The standby proves the `cluster` token to its leader before following
//! (a leader serves its replication stream to proven peers only), so an object a
//! tenant wrote before a kill -9 of the leader is still there, the tenant's own, after
//! the standby takes over. Through the store's data port too: the new leader holds no
//! grant secret for the segments it took over until their owners mount again, and
//! the grants a tenant holds from before are refused, so its calls ask again.

use mooncake_client::{Client, ClientConfig, ReplicateConfig};
use mooncake_common::auth::Credential;
use mooncake_tests::etcd::{etcd_available, ha_node, ha_store_env, put_until_ok};
use mooncake_tests::ha::{Admin, HaPair};
use mooncake_tests::{value_for, Store, TestDir};
use std::time::Duration;

const CLUSTER: &str = "tok-cluster-ha-0001";
const ALPHA: &str = "tok-alpha-ha-0002";
const BETA: &str = "tok-beta-ha-0003";
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

/// A tenant's client through etcd with every byte through the store's data port
/// (no shared memory), as from another host.
async fn data_port_client(ep: &str, token: &str) -> Client {
    let mut cfg = ClientConfig::new(ha_node(&format!("etcd://{ep},")));
    cfg.tuning.credential = Some(Credential::from_token(token, "test").unwrap());
    cfg.tuning.shm = false;
    Client::connect(cfg)
        .await
        .expect("a tenant connects through etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_takeover_a_tenant_reads_and_writes_through_the_data_port_and_no_other_does() {
    if !etcd_available() {
        return;
    }
    let dir = TestDir::new("ha-auth-grants");
    let tokens = dir.file(
        "tokens",
        format!("cluster:{CLUSTER}\nalpha:{ALPHA}\nbeta:{BETA}\n"),
    );
    let token_flag = format!("--auth_token_file={}", tokens.display());
    let mut pair = HaPair::start(
        "ha-auth-grants",
        &[&token_flag],
        Admin::Bearer(CLUSTER.into()),
    );
    let ep = pair.endpoints.clone();
    let mut env = ha_store_env(&ep, "32mb");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), CLUSTER.into()));
    let _store = Store::start(&env);

    const BIG: usize = 200_000;
    let alpha = data_port_client(&ep, ALPHA).await;
    let keys: Vec<String> = (0..6).map(|i| format!("kept-{i}")).collect();
    for k in &keys {
        put_until_ok(&alpha, k, BIG, Duration::from_secs(20), PAUSE).await;
        // Read once: the location cache remembers each key with this leader's grant.
        assert_eq!(alpha.get(k).await.unwrap(), value_for(k, BIG));
    }
    // Looked up before the kill, read after the takeover.
    let loc = alpha.locate_one(&keys[0]).await.unwrap();

    let l = pair.leader;
    pair.masters[l].proc.kill9();
    // The first put that succeeds is served by the new leader, which signed its
    // grant: the store has mounted again with the new leader's secret, and every
    // grant alpha holds from before is refused from now on.
    put_until_ok(&alpha, "after", BIG, Duration::from_secs(30), PAUSE).await;
    // First the location from before (its grant is refused: nothing since the
    // takeover granted its range on this connection), then a ranged read.
    let mut buf = vec![0u8; BIG];
    let addr = buf.as_mut_ptr() as usize;
    // Safety: `buf` outlives the client's use of it and is not moved.
    unsafe { alpha.register_buffer(addr, BIG) }.unwrap();
    // Safety: `buf` holds the object's size.
    unsafe { alpha.read_location(&loc, addr) }
        .await
        .expect("a read of a location from before the takeover");
    assert_eq!(buf, value_for(&keys[0], BIG));
    let (off, len) = (1234u64, 50_000usize);
    // Safety: `buf` holds `len` bytes.
    let n = unsafe { alpha.get_range_into(&keys[1], off, addr, len) }
        .await
        .expect("a ranged read after the takeover");
    assert_eq!(n, len);
    assert_eq!(
        buf[..len],
        value_for(&keys[1], BIG)[off as usize..off as usize + len]
    );
    alpha.unregister_buffer(addr).unwrap();
    // The rest, from the location cache's stale grants and from fresh lookups.
    for (k, got) in keys.iter().zip(alpha.get_batch(&keys).await) {
        assert_eq!(
            got.expect("a read after the takeover"),
            value_for(k, BIG),
            "{k}"
        );
    }
    for k in &keys {
        assert_eq!(alpha.get(k).await.unwrap(), value_for(k, BIG), "{k}");
    }
    // New objects, written and read through the new leader's grants.
    assert_eq!(alpha.get("after").await.unwrap(), value_for("after", BIG));
    let v = value_for("new", BIG);
    alpha
        .put("new", &v, &ReplicateConfig::default())
        .await
        .expect("a put after the takeover");
    assert_eq!(alpha.get("new").await.unwrap(), v);

    // Beta, connected after the takeover, reaches none of alpha's keys (its names
    // are its own) and works with its own.
    let beta = data_port_client(&ep, BETA).await;
    for k in keys.iter().map(String::as_str).chain(["after", "new"]) {
        match beta.get(k).await {
            Ok(got) => assert_ne!(got, value_for(k, BIG), "beta read alpha's {k}"),
            Err(e) => assert_eq!(
                e.code,
                mooncake_client::ErrorCode::ObjectNotFound,
                "{k}: {e}"
            ),
        }
        assert!(
            beta.replica_descs(&[k.to_string()]).await[0].is_err(),
            "{k}"
        );
    }
    let bv = value_for("beta-own", 50_000);
    beta.put("beta-own", &bv, &ReplicateConfig::default())
        .await
        .unwrap();
    assert_eq!(beta.get("beta-own").await.unwrap(), bv);
    assert!(alpha.get("beta-own").await.is_err());
    let _ = alpha.close().await;
    let _ = beta.close().await;
    drop(pair);
    drop(dir);
}

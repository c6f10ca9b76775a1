//! Tenant quotas under HA: two `mooncake_master --enable_ha` over a real etcd. A
//! quota set on the leader, and the removal of another, reach the standby through the
//! replication stream; after a kill -9 of the leader the new leader answers with the
//! same quotas, without anyone setting them again.

use mooncake_tests::etcd::etcd_available;
use mooncake_tests::ha::{Admin, HaPair};
use mooncake_tests::TestDir;
use std::time::{Duration, Instant};

const CLUSTER: &str = "tok-cluster-haq-0001";
const MIB: u64 = 1 << 20;

fn quota_of(pair: &HaPair, i: usize, tenant: &str) -> serde_json::Value {
    let (status, body) = pair
        .admin
        .get(
            pair.masters[i].metrics_port,
            &format!("/api/v1/tenant_quotas?tenant_id={tenant}"),
        )
        .expect("the admin port answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"].clone()
}

#[test]
fn quotas_set_on_the_leader_survive_a_failover() {
    if !etcd_available() {
        return;
    }
    let dir = TestDir::new("ha-quotas");
    let tokens = dir.file(
        "tokens",
        format!("cluster:{CLUSTER}\nbeta:tok-beta-haq-0002\n"),
    );
    let token_flag = format!("--auth_token_file={}", tokens.display());
    let mut pair = HaPair::start("ha-quotas", &[&token_flag], Admin::Bearer(CLUSTER.into()));
    let l = pair.leader;
    let leader = pair.masters[l].metrics_port;
    let admin = pair.admin.clone();
    let set = |tenant: &str, bytes: u64| {
        let (status, body) = admin
            .request(
                leader,
                "PUT",
                &format!("/api/v1/tenant_quotas?tenant_id={tenant}"),
                &format!(r#"{{"requested_quota_bytes": {bytes}}}"#),
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
    };
    set("beta", 3 * MIB);
    set("gamma", 5 * MIB);
    set("beta", 2 * MIB);
    let (status, body) = admin
        .request(
            leader,
            "DELETE",
            "/api/v1/tenant_quotas?tenant_id=gamma",
            "",
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");

    pair.masters[l].proc.kill9();
    let n = 1 - l;
    let end = Instant::now() + Duration::from_secs(30);
    while pair.health(n) != Some(200) {
        assert!(Instant::now() < end, "the standby never took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let beta = quota_of(&pair, n, "beta");
    assert_eq!(beta["requested_quota_bytes"], 2 * MIB, "{beta}");
    assert_eq!(beta["has_explicit_policy"], true, "{beta}");
    let gamma = quota_of(&pair, n, "gamma");
    assert_eq!(
        gamma["has_explicit_policy"], false,
        "lifted before the failover: {gamma}"
    );
    drop(pair);
    drop(dir);
}

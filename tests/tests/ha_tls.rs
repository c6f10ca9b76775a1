//! HA over TLS: two `mooncake_master --enable_ha --tls_cert_file ...` over a real
//! etcd. The standby reaches its leader's rpc port over TLS (trusting the group's
//! certificate) and gets in sync; before, it dialled plaintext and never followed.
//! The admin ports are HTTPS, read with `curl --cacert`.

use mooncake_tests::etcd::etcd_available;
use mooncake_tests::ha::{Admin, HaPair};
use mooncake_tests::TestDir;

#[test]
fn a_standby_follows_its_leader_over_tls() {
    if !etcd_available() {
        return;
    }
    let dir = TestDir::new("ha-tls");
    let (cert, key) = dir.self_signed("srv");
    // In sync only if the standby's TLS connection to the leader's rpc port works.
    let flags = [
        format!("--tls_cert_file={}", cert.display()),
        format!("--tls_key_file={}", key.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let pair = HaPair::start("ha-tls", &flags, Admin::Tls(cert));
    drop(pair);
    drop(dir);
}

//! Tenant byte quotas: the policy (tenant -> bytes) lives beside the usage it bounds
//! in the index (`index::usage`); this module changes it and keeps it across
//! restarts and failovers.
//!
//! Every change goes to the replication log as a [`mooncake_proto::TenantQuota`] op
//! (the quota as it is now), and snapshots carry every quota, so an HA standby has the
//! leader's quotas when it takes over and the on-disk index (`--enable_snapshot`)
//! restores them with the objects (`replication::rebuild`).
//!
//! With `--enable_snapshot` the policy is written to `tenant_quotas.json` in
//! `--snapshot_backup_dir` on every change (to a temporary file, then renamed, so a
//! crash leaves the old or the new policy, never half of one) and read back at
//! start. Without it, quotas last as long as the process: set them again after a
//! restart (the admin API is idempotent).

use crate::master::Master;
use mooncake_proto::replication_op::Op;
use mooncake_proto::ReplicationOp;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The policy file's name inside `--snapshot_backup_dir`.
pub const FILE_NAME: &str = "tenant_quotas.json";

/// Where `master` keeps its policy, if it keeps one.
pub fn file_of(master: &Master) -> Option<PathBuf> {
    let c = master.config();
    (c.enable_snapshot && !c.enable_ha && !c.snapshot_backup_dir.trim().is_empty())
        .then(|| Path::new(c.snapshot_backup_dir.trim()).join(FILE_NAME))
}

/// Reads the saved policy into `master`; a missing file is an empty policy, a bad one
/// an error naming it.
pub fn load(master: &Master) -> Result<usize, String> {
    let Some(path) = file_of(master) else {
        return Ok(0);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let policy: BTreeMap<String, u64> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a tenant quota policy ({e}); expected {{\"tenant\": bytes, ...}}",
            path.display()
        )
    })?;
    let usage = master.index.usage();
    for (tenant, bytes) in &policy {
        if !mooncake_common::auth::valid_tenant(tenant)
            || *bytes == 0
            || *bytes > crate::index::usage::MAX_QUOTA_BYTES
        {
            return Err(format!(
                "{}: tenant {tenant:?} with quota {bytes} is not valid",
                path.display()
            ));
        }
        usage.set_quota(tenant, *bytes);
    }
    Ok(policy.len())
}

/// Writes `master`'s policy where it keeps it (nothing without `--enable_snapshot`).
pub fn save(master: &Master) -> Result<(), String> {
    let Some(path) = file_of(master) else {
        return Ok(());
    };
    let policy: BTreeMap<String, u64> = master.index.usage().quotas().into_iter().collect();
    let body = serde_json::to_vec_pretty(&policy).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Sets (`Some`) or lifts (`None`) `tenant`'s quota, and records the change in the
/// replication log and the policy file. The previous quota.
pub fn change(master: &Master, tenant: &str, bytes: Option<u64>) -> Option<u64> {
    // One change at a time, so the log's order of two changes of one tenant is the
    // order they took effect in.
    static ORDER: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let old = {
        let _one = ORDER.lock();
        let usage = master.index.usage();
        let old = match bytes {
            Some(b) => {
                let old = usage.quota(tenant);
                usage.set_quota(tenant, b);
                old
            }
            None => usage.remove_quota(tenant),
        };
        master.index.log().tenant_quota(tenant, bytes);
        old
    };
    if let Err(e) = save(master) {
        tracing::error!("tenant quota of {tenant} changed but not saved: {e}");
    }
    old
}

/// Every quota as replication ops (for snapshots).
pub fn snapshot_ops(master: &Master) -> Vec<ReplicationOp> {
    master
        .index
        .usage()
        .quotas()
        .into_iter()
        .map(|(t, b)| ReplicationOp {
            seq: 0,
            op: Some(Op::TenantQuota(crate::ha::replication::log::quota_record(
                &t,
                Some(b),
            ))),
        })
        .collect()
}

/// Installs quotas a new term's master inherits (an HA takeover, the on-disk index);
/// invalid entries are skipped with a warning.
pub fn restore(master: &Master, quotas: &BTreeMap<String, u64>) {
    let usage = master.index.usage();
    for (tenant, &bytes) in quotas {
        if mooncake_common::auth::valid_tenant(tenant)
            && bytes > 0
            && bytes <= crate::index::usage::MAX_QUOTA_BYTES
        {
            usage.set_quota(tenant, bytes);
        } else {
            tracing::warn!(
                tenant,
                bytes,
                "inherited tenant quota is not valid; skipped"
            );
        }
    }
}

//! The master's settings (CONTRACT §1). Defaults match the reference's gflags so that
//! existing command lines keep their meaning. The flag parser (`flags.rs`) and the
//! `--config_path` file fill this struct; everything else only reads it.

use crate::index::IndexMemoryLimit;
use std::time::Duration;

/// How a put's replicas pick segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationStrategy {
    /// Uniformly random among segments that fit (the reference's default).
    Random,
    /// The segments with the largest free ratio first: spreads load evenly.
    FreeRatioFirst,
}

impl AllocationStrategy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "random" => Ok(Self::Random),
            "free_ratio_first" => Ok(Self::FreeRatioFirst),
            other => Err(format!(
                "invalid value for --allocation_strategy: {other:?} (use random or free_ratio_first)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::FreeRatioFirst => "free_ratio_first",
        }
    }
}

/// Bounds of `--grant_ttl_sec`.
pub const MIN_GRANT_TTL: Duration = Duration::from_secs(1);
pub const MAX_GRANT_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    pub rpc_address: String,
    pub rpc_port: u16,
    pub metrics_host: String,
    pub metrics_port: u16,
    pub enable_metric_reporting: bool,
    /// Resolved: true when `--enable_http_metadata_server` is set OR either of
    /// `--http_metadata_server_host/_port` was given explicitly (the seed's manifest).
    pub enable_http_metadata_server: bool,
    pub http_metadata_server_host: String,
    pub http_metadata_server_port: u16,
    /// TLS on the rpc, admin and metadata ports (`--tls_cert_file`, `--tls_key_file`;
    /// empty: plain). With `--tls_ca_file` clients must present a certificate that CA
    /// signed (mutual TLS).
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub tls_ca_file: String,
    pub default_kv_lease_ttl: Duration,
    pub default_kv_soft_pin_ttl: Duration,
    pub max_kv_soft_pin_ttl: Duration,
    pub allow_evict_soft_pinned_objects: bool,
    pub eviction_high_watermark_ratio: f64,
    pub eviction_ratio: f64,
    /// Which objects eviction takes first (`--eviction_policy`; see `eviction`).
    pub eviction_policy: crate::eviction::PolicyKind,
    pub client_ttl: Duration,
    pub put_start_discard_timeout: Duration,
    pub put_start_release_timeout: Duration,
    pub allocation_strategy: AllocationStrategy,
    /// Bound on the index (`--index_memory_limit`); see `index::limit`.
    pub index_memory_limit: IndexMemoryLimit,
    pub enable_ha: bool,
    pub etcd_endpoints: Vec<String>,
    pub cluster_id: String,
    /// TTL of the HA leader lease (`--ha_lease_ttl_sec`): bounds how long a dead
    /// leader holds the key, so it is most of the failover time (docs/ha.md).
    pub ha_lease_ttl: Duration,
    pub config_path: String,
    /// How long the objects of a segment whose owner went away without unmounting (a
    /// store restarting, killed or stopped) are kept for it to come back with the same
    /// memory (`--segment_restart_grace_sec`); zero drops them at once.
    pub segment_restart_grace: Duration,
    /// Keep the index on disk (`--enable_snapshot`): a snapshot plus a log of every
    /// change since, in `snapshot_backup_dir`; a restarted master serves the same
    /// objects (`persist`).
    pub enable_snapshot: bool,
    pub snapshot_backup_dir: String,
    /// The SSD tier's control plane (`--enable_offload`, `tier`): owners started with
    /// a tier path get disk replicas.
    pub enable_offload: bool,
    /// `--offload_on_evict`: write objects to the tier only when DRAM nears its high
    /// watermark (the policy's next victims first) instead of right after every put.
    pub offload_on_evict: bool,
    /// `--promotion_on_hit`: a read served from the tier copies the object back into
    /// its owner's DRAM.
    pub promotion_on_hit: bool,
    /// How often the log is folded into a fresh snapshot (`--snapshot_interval_seconds`).
    pub snapshot_interval: Duration,
    /// `--auth_token_file`: the accepted tokens (empty: authentication off). Loaded
    /// once at start into the one `auth::MasterAuth` every port shares.
    pub auth_token_file: String,
    /// How long a grant the master signs for a tenant's replica location stays good
    /// (`--grant_ttl_sec`; authentication on). A store accepts it for up to
    /// `mooncake_common::grant::CLOCK_SKEW` longer, so this plus that is how long a
    /// tenant keeps reaching an allocation after its object is gone.
    pub grant_ttl: Duration,
    /// How the rpc port treats its connections (not flags: defaults fit every
    /// deployment; tests and benchmarks set them).
    pub tuning: MasterTuning,
}

/// Limits and timing of the rpc port's connections.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterTuning {
    /// Connections served at once; more are closed as soon as they are accepted, so
    /// a flood cannot take the descriptors real clients and the admin port need.
    /// Each client keeps a handful (a framed pool and an HTTP/2 connection), so
    /// thousands of clients fit.
    pub max_connections: usize,
    /// How long a new connection may take to show which protocol it speaks (its
    /// first bytes), and a framed one to send its magic.
    pub handshake_timeout: Duration,
    /// How long a framed request may take to arrive once its first byte has: a peer
    /// that announces a frame and stalls is cut off.
    pub frame_timeout: Duration,
    /// How long a framed connection may sit idle between requests. Clients pool
    /// connections and re-dial one the master closed, so this only reclaims the
    /// descriptors of peers that went away without closing.
    pub idle_timeout: Duration,
    /// How long a connection's task keeps its worker awake for the client's next
    /// request (`service::framed::NextPoll`); zero turns it off.
    pub poll_window: Duration,
    /// The tokens peers must prove before anything is served (`--auth_token_file`,
    /// set at start; off by default).
    pub auth: crate::service::auth::RpcAuth,
    /// TLS on every connection, the handshake first (within `handshake_timeout`),
    /// then the same protocol detection on the decrypted stream. Set at start from
    /// the `--tls_*` files ([`MasterConfig::tls_acceptor`]).
    pub tls: Option<mooncake_tls::Acceptor>,
}

impl Default for MasterTuning {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            poll_window: Duration::from_micros(100),
            auth: Default::default(),
            tls: None,
        }
    }
}

impl MasterTuning {
    /// A setting no connection could work with, named.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("master tuning: max_connections must be at least 1".into());
        }
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("frame_timeout", self.frame_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("master tuning: {name} must be longer than 0"));
            }
        }
        Ok(())
    }
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            rpc_address: "0.0.0.0".into(),
            rpc_port: 50051,
            metrics_host: "0.0.0.0".into(),
            metrics_port: 9003,
            enable_metric_reporting: true,
            enable_http_metadata_server: false,
            http_metadata_server_host: "0.0.0.0".into(),
            http_metadata_server_port: 8080,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_file: String::new(),
            default_kv_lease_ttl: Duration::from_millis(10_000),
            default_kv_soft_pin_ttl: Duration::from_secs(30 * 60),
            max_kv_soft_pin_ttl: Duration::from_secs(24 * 3600),
            allow_evict_soft_pinned_objects: true,
            eviction_high_watermark_ratio: 0.9,
            eviction_ratio: 0.05,
            eviction_policy: crate::eviction::PolicyKind::TwoQueue,
            client_ttl: Duration::from_secs(10),
            put_start_discard_timeout: Duration::from_secs(30),
            put_start_release_timeout: Duration::from_secs(600),
            allocation_strategy: AllocationStrategy::Random,
            index_memory_limit: IndexMemoryLimit::Auto,
            enable_ha: false,
            etcd_endpoints: Vec::new(),
            cluster_id: "mooncake_cluster".into(),
            ha_lease_ttl: Duration::from_secs(3),
            config_path: String::new(),
            segment_restart_grace: Duration::from_secs(60),
            grant_ttl: mooncake_common::grant::GRANT_TTL,
            enable_snapshot: false,
            snapshot_backup_dir: String::new(),
            enable_offload: false,
            offload_on_evict: false,
            promotion_on_hit: false,
            snapshot_interval: Duration::from_secs(600),
            auth_token_file: String::new(),
            tuning: MasterTuning::default(),
        }
    }
}

impl MasterConfig {
    /// Checks cross-field rules; the message names the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        let ratio = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) && v.is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "invalid value for --{name}: {v} (must be between 0 and 1)"
                ))
            }
        };
        ratio(
            "eviction_high_watermark_ratio",
            self.eviction_high_watermark_ratio,
        )?;
        ratio("eviction_ratio", self.eviction_ratio)?;
        if self.default_kv_soft_pin_ttl > self.max_kv_soft_pin_ttl {
            return Err(
                "invalid value for --default_kv_soft_pin_ttl: larger than --max_kv_soft_pin_ttl"
                    .into(),
            );
        }
        if self.client_ttl.is_zero() {
            return Err("invalid value for --client_ttl: must be positive".into());
        }
        if self.put_start_release_timeout < self.put_start_discard_timeout {
            return Err("invalid value for --put_start_release_timeout_sec: smaller than --put_start_discard_timeout_sec".into());
        }
        let ttl = self.ha_lease_ttl;
        if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(300) || ttl.subsec_nanos() != 0
        {
            return Err(format!(
                "invalid value for --ha_lease_ttl_sec: {ttl:?} (whole seconds from 2 to 300; etcd grants leases in seconds and raises shorter ones to its minimum)"
            ));
        }
        let g = self.grant_ttl;
        if g < MIN_GRANT_TTL || g > MAX_GRANT_TTL {
            return Err(format!(
                "invalid value for --grant_ttl_sec: {g:?} (from {} to {} seconds: a put whose write outlasts its grant fails, and a tenant keeps reaching freed memory for this long)",
                MIN_GRANT_TTL.as_secs(),
                MAX_GRANT_TTL.as_secs()
            ));
        }
        if self.enable_snapshot && self.snapshot_backup_dir.trim().is_empty() {
            return Err("--enable_snapshot needs --snapshot_backup_dir (a directory the master keeps its index in)".into());
        }
        if self.snapshot_interval.is_zero() {
            return Err("invalid value for --snapshot_interval_seconds: must be positive".into());
        }
        let (cert, key) = (self.tls_cert_file.trim(), self.tls_key_file.trim());
        if cert.is_empty() != key.is_empty() {
            return Err(
                "--tls_cert_file and --tls_key_file go together: give both or neither".into(),
            );
        }
        if cert.is_empty() && !self.tls_ca_file.trim().is_empty() {
            return Err("--tls_ca_file (require client certificates) needs --tls_cert_file and --tls_key_file".into());
        }
        if self.enable_ha && self.etcd_endpoints.is_empty() {
            return Err("--enable_ha needs --etcd_endpoints (e.g. 127.0.0.1:2379;h2:2379)".into());
        }
        Ok(())
    }
}

impl MasterConfig {
    /// The TLS server the `--tls_*` files make (`None` without them); the error names
    /// the file at fault.
    pub fn tls_acceptor(&self) -> Result<Option<mooncake_tls::Acceptor>, String> {
        let (cert, key) = (self.tls_cert_file.trim(), self.tls_key_file.trim());
        if cert.is_empty() {
            return Ok(None);
        }
        let ca = Some(self.tls_ca_file.trim())
            .filter(|c| !c.is_empty())
            .map(std::path::Path::new);
        let cfg = mooncake_tls::server_config(cert.as_ref(), key.as_ref(), ca)
            .map_err(|e| e.to_string())?;
        Ok(Some(mooncake_tls::Acceptor::new(cfg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_contract() {
        let c = MasterConfig::default();
        c.validate().unwrap();
        assert_eq!(c.rpc_port, 50051);
        assert_eq!(c.metrics_port, 9003);
        assert_eq!(c.default_kv_lease_ttl, Duration::from_secs(10));
        assert_eq!(c.allocation_strategy, AllocationStrategy::Random);
    }

    #[test]
    fn invalid_values_name_the_flag() {
        let c = MasterConfig {
            eviction_ratio: 2.0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("eviction_ratio"));
        assert!(AllocationStrategy::parse("best")
            .unwrap_err()
            .contains("allocation_strategy"));
    }

    #[test]
    fn grant_ttl_is_from_1_to_3600_seconds() {
        for bad in [0, 999, 3_600_001] {
            let c = MasterConfig {
                grant_ttl: Duration::from_millis(bad),
                ..Default::default()
            };
            assert!(
                c.validate().unwrap_err().contains("--grant_ttl_sec"),
                "{bad}"
            );
        }
        for good in [1_000, 2_500, 60_000, 3_600_000] {
            let c = MasterConfig {
                grant_ttl: Duration::from_millis(good),
                ..Default::default()
            };
            assert!(c.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn ha_lease_ttl_is_whole_seconds_from_2_to_300() {
        for bad in [1000, 1500, 301_000] {
            let c = MasterConfig {
                ha_lease_ttl: Duration::from_millis(bad),
                ..Default::default()
            };
            assert!(c.validate().unwrap_err().contains("--ha_lease_ttl_sec"));
        }
        for good in [2, 3, 300] {
            let c = MasterConfig {
                ha_lease_ttl: Duration::from_secs(good),
                ..Default::default()
            };
            c.validate().unwrap();
        }
    }
}

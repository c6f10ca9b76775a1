//! What a client is told at start-up, and the per-put replication settings.
//!
//! `ClientConfig` keeps to the two fields of the documented seam; knobs that only the
//! segment owner needs (huge pages, the shared-memory directory) come from the
//! environment (`MOONCAKE_HUGEPAGES`, `MOONCAKE_SHM_DIR`) so the struct stays stable
//! for the Python bindings.

use mooncake_common::config::{ConfigError, NodeConfig};
use std::time::Duration;

/// Connect attempts to the master give up after this long, so a call against an
/// unreachable master fails with `RPC_FAIL` well inside the contract's 100 ms.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(80);
/// Default bound on one control-plane call once connected.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Heartbeat period; the master's `client_ttl` is counted in these.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// local_hostname, metadata_server, sizes, protocol, device, master address.
    pub node: NodeConfig,
    /// Bound on one control-plane call (connect attempts are bounded by
    /// [`CONNECT_TIMEOUT`] on top of it).
    pub rpc_timeout: Duration,
}

impl ClientConfig {
    pub fn new(node: NodeConfig) -> Self {
        Self {
            node,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
        }
    }

    /// Reads the `MOONCAKE_*` environment (CONTRACT §2).
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(NodeConfig::from_env()?))
    }
}

/// Soft pin request of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SoftPin {
    /// Keep what the object has (new objects: none).
    #[default]
    Preserve,
    /// Pin; `ttl_ms: None` = the master's default TTL.
    Enable {
        ttl_ms: Option<u64>,
    },
    Disable,
}

/// How many copies a put makes and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicateConfig {
    pub replica_num: usize,
    pub with_hard_pin: bool,
    /// Segment names tried first, in order.
    pub preferred_segments: Vec<String>,
    pub soft_pin: SoftPin,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        Self {
            replica_num: 1,
            with_hard_pin: false,
            preferred_segments: Vec::new(),
            soft_pin: SoftPin::Preserve,
        }
    }
}

impl ReplicateConfig {
    /// `n` replicas, nothing else special.
    pub fn replicas(n: usize) -> Self {
        Self {
            replica_num: n,
            ..Self::default()
        }
    }

    pub(crate) fn to_proto(&self) -> mooncake_proto::ReplicateConfig {
        use mooncake_proto::SoftPinAction;
        let (action, ttl) = match self.soft_pin {
            SoftPin::Preserve => (SoftPinAction::SoftPinPreserve, None),
            SoftPin::Enable { ttl_ms } => (SoftPinAction::SoftPinEnable, ttl_ms),
            SoftPin::Disable => (SoftPinAction::SoftPinDisable, None),
        };
        mooncake_proto::ReplicateConfig {
            replica_num: self.replica_num.clamp(1, u32::MAX as usize) as u32,
            with_hard_pin: self.with_hard_pin,
            preferred_segments: self.preferred_segments.clone(),
            soft_pin_action: action as i32,
            soft_pin_ttl_ms: ttl,
        }
    }
}

/// `health_check()` values of the Python API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Health {
    Healthy = 0,
    NotSetUp = 1,
    MasterUnreachable = 2,
}

/// Segment owner options read from the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentEnv {
    /// Directory for the shared segment file; default `/dev/shm`.
    pub shm_dir: Option<String>,
    pub hugepages: bool,
}

impl SegmentEnv {
    pub fn from_env() -> Self {
        let hugepages = std::env::var("MOONCAKE_HUGEPAGES")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        Self {
            shm_dir: std::env::var("MOONCAKE_SHM_DIR")
                .ok()
                .filter(|s| !s.is_empty()),
            hugepages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_config_maps_to_the_wire() {
        let rc = ReplicateConfig {
            replica_num: 0,
            soft_pin: SoftPin::Enable { ttl_ms: Some(5) },
            ..ReplicateConfig::default()
        };
        let p = rc.to_proto();
        assert_eq!(p.replica_num, 1, "0 replicas is read as 1");
        assert_eq!(
            p.soft_pin_action,
            mooncake_proto::SoftPinAction::SoftPinEnable as i32
        );
        assert_eq!(p.soft_pin_ttl_ms, Some(5));
        assert_eq!(ReplicateConfig::replicas(3).to_proto().replica_num, 3);
    }
}

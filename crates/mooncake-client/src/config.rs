//! What a client is told at start-up, and the per-put replication settings.
//!
//! `ClientConfig` is the node's settings (CONTRACT §2), the call deadline and the
//! client's [`ClientTuning`]. This module is the only place the client reads the
//! environment: the user-facing variables below are read once, into a `ClientTuning`,
//! when a `ClientConfig` is made; everything else (protocol, blocking calls, spin
//! budget, put pipelining, segment tables) is a field a program, bench or test sets.

use crate::framed::{CallMode, DEFAULT_SPIN};
use crate::transport::Protocol;
use mooncake_common::config::{ConfigError, NodeConfig};
use std::time::Duration;

/// `MOONCAKE_DISABLE_SHM=1`: never use the same-host path.
pub const DISABLE_SHM_ENV: &str = "MOONCAKE_DISABLE_SHM";
/// `MOONCAKE_SHM_PREFAULT=0`: map same-host peers lazily.
pub const SHM_PREFAULT_ENV: &str = "MOONCAKE_SHM_PREFAULT";
/// Directory of this process's segment file.
pub const SHM_DIR_ENV: &str = "MOONCAKE_SHM_DIR";
/// `MOONCAKE_HUGEPAGES=1`: `madvise(MADV_HUGEPAGE)` on the segment.
pub const HUGEPAGES_ENV: &str = "MOONCAKE_HUGEPAGES";
/// The transfer engine's listen address.
pub const TCP_BIND_ADDRESS_ENV: &str = "MC_TCP_BIND_ADDRESS";
/// `MOONCAKE_LOCATION_CACHE=<entries>`: how many object locations a client remembers
/// for speculative reads (0 turns them off).
pub const LOCATION_CACHE_ENV: &str = "MOONCAKE_LOCATION_CACHE";
/// The default bound of the location cache (a few hundred bytes per entry).
pub const DEFAULT_LOCATION_CACHE: usize = 65536;
/// The cluster named in etcd (the masters' `--cluster_id`).
pub const CLUSTER_ID_ENV: &str = "MOONCAKE_CLUSTER_ID";
/// The masters' default `--cluster_id`.
pub const DEFAULT_CLUSTER_ID: &str = "mooncake_cluster";
/// The longest spin budget [`ClientTuning::validate`] accepts: polling longer than a
/// master round trip many times over only burns the CPU the master needs.
pub const MAX_SPIN: Duration = Duration::from_millis(10);

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
    /// How this client talks to the master and to same-host peers.
    pub tuning: ClientTuning,
}

impl ClientConfig {
    /// `node` with the default deadline and the tuning the environment asks for
    /// ([`ClientTuning::from_env`]).
    pub fn new(node: NodeConfig) -> Self {
        Self {
            node,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            tuning: ClientTuning::from_env(),
        }
    }

    /// Reads the `MOONCAKE_*` environment (CONTRACT §2).
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(NodeConfig::from_env()?))
    }
}

/// How many copies a put makes and where: the one shape every layer shares (the
/// master, this client, the Python binding); `mooncake_proto::convert` maps it to the
/// wire.
pub use mooncake_common::{ReplicateConfig, SoftPin};

/// `health_check()` values of the Python API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Health {
    Healthy = 0,
    NotSetUp = 1,
    MasterUnreachable = 2,
}

/// How a client talks to the master and to same-host peers. `Default` is the product's
/// behaviour with no environment; [`ClientTuning::from_env`] adds the user-facing
/// variables. Read once, when the client is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTuning {
    /// The control-plane protocol: framed (default) or gRPC over HTTP/2.
    pub master_protocol: Protocol,
    /// How the caller's framed master calls do their I/O. [`CallMode::Blocking`] is
    /// for a client whose every call is driven by `Runtime::block_on` from a thread of
    /// the caller's own (the Python binding: measured faster for its single-thread
    /// calls, docs/benchmarks/python.md); background tasks (heartbeats) and overlapped
    /// calls stay asynchronous either way.
    pub master_call_mode: CallMode,
    /// How long a blocking master call polls its socket for the answer before it
    /// sleeps in `recv`, when it is the process's only waiting call; zero turns the
    /// polling off. At most [`MAX_SPIN`].
    pub master_spin: Duration,
    /// Whether a batch of 128+ registered buffers is written as two pipelined halves;
    /// `None`: only over gRPC, where it paid (over the framed protocol one batch
    /// measured faster, docs/benchmarks/python.md).
    pub put_pipeline: Option<bool>,
    /// Whether batch put starts ask for each segment once per answer instead of a
    /// full descriptor per replica (a master that predates the field ignores it).
    pub put_segment_table: bool,
    /// Whether segments of same-host peers are mapped and copied with `memcpy`
    /// (`MOONCAKE_DISABLE_SHM=1` turns it off: always the transfer engine).
    pub shm: bool,
    /// Whether a new same-host mapping's page tables are filled in the background
    /// (`MOONCAKE_SHM_PREFAULT=0` maps lazily).
    pub shm_prefault: bool,
    /// Directory of this client's segment file (`MOONCAKE_SHM_DIR`; `None`:
    /// `/dev/shm`).
    pub shm_dir: Option<String>,
    /// `madvise(MADV_HUGEPAGE)` on this client's segment (`MOONCAKE_HUGEPAGES=1`).
    pub hugepages: bool,
    /// What this process is recognised by when it restarts and takes its segment
    /// file back (`None`: its configured `local_hostname`; the store daemon adds its
    /// HTTP port, so that stores sharing a directory and a hostname stay apart).
    pub segment_identity: Option<String>,
    /// The address the transfer engine listens on (`MC_TCP_BIND_ADDRESS`); `None`:
    /// the hostname when it is an IP, loopback for `localhost`, else every interface.
    pub tcp_bind_address: Option<String>,
    /// The cluster whose leader an `etcd://` master address follows
    /// (`MOONCAKE_CLUSTER_ID`, default [`DEFAULT_CLUSTER_ID`]).
    pub cluster_id: String,
    /// The token this process proves to the master (`MOONCAKE_AUTH_TOKEN_FILE`, read
    /// again at each proof, or `MOONCAKE_AUTH_TOKEN`); `None`: none.
    pub credential: Option<mooncake_common::auth::Credential>,
    /// Why the credential the environment names could not be read (reported by
    /// [`ClientTuning::validate`], so that setup fails naming it).
    pub credential_error: Option<String>,
    /// The tenant this process declares (`MOONCAKE_TENANT_ID`, or Python's
    /// `tenant_id`): a master with authentication refuses it unless it is the token's.
    pub tenant_id: Option<String>,
    /// How many object locations are remembered for speculative reads
    /// (`MOONCAKE_LOCATION_CACHE`, default [`DEFAULT_LOCATION_CACHE`]; 0: none): a get
    /// of a remembered key reads from there while its lookup is in flight and keeps
    /// the bytes when the lookup names the same allocation.
    pub location_cache: usize,
    /// Why `MOONCAKE_LOCATION_CACHE` could not be read (reported by
    /// [`ClientTuning::validate`]).
    pub location_cache_error: Option<String>,
}

impl Default for ClientTuning {
    fn default() -> Self {
        Self {
            master_protocol: Protocol::Framed,
            master_call_mode: CallMode::Async,
            master_spin: DEFAULT_SPIN,
            put_pipeline: None,
            put_segment_table: true,
            shm: true,
            shm_prefault: true,
            shm_dir: None,
            hugepages: false,
            segment_identity: None,
            tcp_bind_address: None,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            credential: None,
            credential_error: None,
            tenant_id: None,
            location_cache: DEFAULT_LOCATION_CACHE,
            location_cache_error: None,
        }
    }
}

impl ClientTuning {
    /// The defaults with the process environment's user-facing variables applied.
    pub fn from_env() -> Self {
        let mut t = Self::from_lookup(|k| std::env::var(k).ok());
        match mooncake_common::config::credential_from_env() {
            Ok(c) => t.credential = c,
            Err(e) => t.credential_error = Some(e.0),
        }
        t.tenant_id = mooncake_common::config::tenant_from_env();
        t
    }

    /// The defaults with the variables `get` returns applied; unset and empty
    /// variables keep the default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let on = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
        let mut t = Self::default();
        if let Some(v) = set(DISABLE_SHM_ENV) {
            t.shm = v == "0";
        }
        if let Some(v) = set(SHM_PREFAULT_ENV) {
            t.shm_prefault = v != "0";
        }
        t.shm_dir = set(SHM_DIR_ENV);
        if let Some(v) = set(HUGEPAGES_ENV) {
            t.hugepages = on(&v);
        }
        t.tcp_bind_address = set(TCP_BIND_ADDRESS_ENV);
        if let Some(v) = set(CLUSTER_ID_ENV) {
            t.cluster_id = v;
        }
        if let Some(v) = set(LOCATION_CACHE_ENV) {
            match v.parse::<usize>() {
                Ok(n) => t.location_cache = n,
                Err(_) => {
                    t.location_cache_error = Some(format!(
                        "location_cache ({LOCATION_CACHE_ENV}): {v:?} is not a number of entries"
                    ))
                }
            }
        }
        t
    }

    /// Checks every field; the error names the bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.credential_error {
            return Err(ConfigError(format!("authentication: {e}")));
        }
        if let Some(e) = &self.location_cache_error {
            return Err(ConfigError(e.clone()));
        }
        if self.master_spin > MAX_SPIN {
            return Err(ConfigError(format!(
                "master_spin: {:?} exceeds the limit of {MAX_SPIN:?}",
                self.master_spin
            )));
        }
        if let Some(ip) = &self.tcp_bind_address {
            if ip.trim().parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError(format!(
                    "tcp_bind_address ({TCP_BIND_ADDRESS_ENV}): {ip:?} is not an IP address"
                )));
            }
        }
        if self.shm_dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return Err(ConfigError(format!(
                "shm_dir ({SHM_DIR_ENV}): empty; leave it unset for /dev/shm"
            )));
        }
        let id = &self.cluster_id;
        if id.is_empty() || id.chars().any(char::is_whitespace) {
            return Err(ConfigError(format!(
                "cluster_id ({CLUSTER_ID_ENV}): {id:?} must be non-empty, without spaces"
            )));
        }
        Ok(())
    }

    /// What every new master connection proves (none without a credential).
    pub fn client_auth(&self) -> Option<crate::auth::ClientAuth> {
        self.credential
            .clone()
            .map(|c| crate::auth::ClientAuth::new(c, self.tenant_id.clone()))
    }

    /// Whether large registered batches go as two pipelined halves.
    pub(crate) fn pipeline_puts(&self) -> bool {
        self.put_pipeline
            .unwrap_or(self.master_protocol == Protocol::Grpc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning(vars: &[(&str, &str)]) -> ClientTuning {
        ClientTuning::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn tuning_reads_the_user_facing_variables_only() {
        assert_eq!(tuning(&[]), ClientTuning::default());
        let t = tuning(&[
            (DISABLE_SHM_ENV, "1"),
            (SHM_PREFAULT_ENV, "0"),
            (SHM_DIR_ENV, " /mnt/seg "),
            (HUGEPAGES_ENV, "yes"),
            (TCP_BIND_ADDRESS_ENV, "10.0.0.5"),
            (CLUSTER_ID_ENV, "blue"),
            // Measurement switches are fields now, not variables.
            ("MOONCAKE_MASTER_PROTOCOL", "grpc"),
            ("MOONCAKE_PUT_PIPELINE", "1"),
        ]);
        assert!(!t.shm && !t.shm_prefault && t.hugepages);
        assert_eq!(t.shm_dir.as_deref(), Some("/mnt/seg"));
        assert_eq!(t.tcp_bind_address.as_deref(), Some("10.0.0.5"));
        assert_eq!(t.cluster_id, "blue");
        assert_eq!(t.master_protocol, Protocol::Framed);
        assert_eq!(t.put_pipeline, None);
        // `MOONCAKE_DISABLE_SHM=0` and empty values keep the defaults.
        let t = tuning(&[(DISABLE_SHM_ENV, "0"), (CLUSTER_ID_ENV, " ")]);
        assert!(t.shm);
        assert_eq!(t.cluster_id, DEFAULT_CLUSTER_ID);
        assert_eq!(t.location_cache, DEFAULT_LOCATION_CACHE);
        let t = tuning(&[(LOCATION_CACHE_ENV, " 0 ")]);
        assert_eq!(t.location_cache, 0);
        t.validate().unwrap();
        let e = tuning(&[(LOCATION_CACHE_ENV, "lots")])
            .validate()
            .unwrap_err();
        assert!(e.0.starts_with("location_cache"), "{e}");
    }

    #[test]
    fn tuning_validation_names_the_bad_field() {
        ClientTuning::default().validate().unwrap();
        let bad = |f: fn(&mut ClientTuning), field: &str| {
            let mut t = ClientTuning::default();
            f(&mut t);
            let e = t.validate().unwrap_err();
            assert!(e.0.starts_with(field), "{field}: {e}");
        };
        bad(|t| t.master_spin = Duration::from_secs(1), "master_spin");
        bad(
            |t| t.tcp_bind_address = Some("eth0".into()),
            "tcp_bind_address",
        );
        bad(|t| t.shm_dir = Some(" ".into()), "shm_dir");
        bad(|t| t.cluster_id = "a b".into(), "cluster_id");
        bad(|t| t.cluster_id = String::new(), "cluster_id");
    }

    #[test]
    fn pipelined_puts_default_to_grpc_only() {
        let mut t = ClientTuning::default();
        assert!(!t.pipeline_puts());
        t.master_protocol = Protocol::Grpc;
        assert!(t.pipeline_puts());
        t.put_pipeline = Some(false);
        assert!(!t.pipeline_puts());
    }
}

//! Engine configuration. The first six fields are the seam other crates fill in
//! (docs/internal-apis.md); [`TcpTuning`] holds the knobs of the TCP data path, with
//! defaults chosen for loopback and 25-100 GbE hosts alike. Build with
//! [`TransferConfig::new`] and adjust fields, so new knobs never break callers.

use mooncake_common::config::{Protocol, P2P_HANDSHAKE};
use std::time::Duration;

use crate::errors::TransferError;

/// Tuning of the TCP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTuning {
    /// Requests larger than this are split into slices of this size, each sent on its
    /// own path. 1 MiB keeps per-frame overhead below 0.01% while letting a 4 MiB
    /// request use four connections at once.
    pub slice_size: usize,
    /// Connections opened per (peer endpoint, local interface) pair.
    pub conns_per_path: usize,
    /// Bytes in flight per engine, across all peers (back-pressure bound).
    pub max_inflight_bytes: usize,
    /// Attach and verify a CRC32C of every payload. Off by default: TCP already
    /// checksums each segment, and the CRC costs a pass over every byte on each side.
    pub crc: bool,
    /// How many times a failed slice is retried on another path.
    pub max_retries: usize,
    /// Bound on connect + handshake.
    pub connect_timeout: Duration,
    /// SO_SNDBUF / SO_RCVBUF of data sockets (0 = kernel default / autotuning).
    pub socket_buffer: usize,
    /// Connections the data listener keeps open at once. Each peer engine holds
    /// `conns_per_path` per path (2 x NICs), so 4096 serves a thousand peers on two
    /// NICs; lowered at start to half the process's descriptor limit (`ulimit -n`) so
    /// a flood cannot take the descriptors the rest of the process needs. Over the
    /// cap, the connection idle the longest gives way (`tcp::admit`).
    pub max_connections: usize,
    /// A data connection that starts no frame for this long is closed. Long, because
    /// pooled connections legitimately sit idle between transfers (a peer reopens a
    /// closed one on its next request); it only reclaims sockets that were abandoned
    /// or opened to hold a slot.
    pub idle_timeout: Duration,
    /// A frame whose header or payload makes no progress for this long (in either
    /// direction: a peer that stops sending mid-frame, or stops reading an answer) has
    /// its connection closed. A healthy link moves some bytes every few milliseconds,
    /// even a congested one every few seconds.
    pub stall_timeout: Duration,
    /// With authentication on, a connection that has not proved a token this long
    /// after it was accepted is closed (`tcp::auth`). A real peer proves within a round
    /// trip to the listener and one to the master.
    pub auth_timeout: Duration,
}

impl Default for TcpTuning {
    fn default() -> Self {
        Self {
            slice_size: 1 << 20,
            conns_per_path: 2,
            max_inflight_bytes: 256 << 20,
            crc: false,
            max_retries: 4,
            connect_timeout: Duration::from_secs(3),
            socket_buffer: 0,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
        }
    }
}

/// What a [`crate::TransferEngine`] needs to start.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Segment name this engine publishes ("host:port").
    pub local_hostname: String,
    /// IP the data listener binds (e.g. "127.0.0.1", "0.0.0.0").
    pub bind_ip: String,
    /// Data listener port; 0 = any free port.
    pub port: u16,
    /// "P2PHANDSHAKE" | "http://host:port/metadata" | "etcd://h1:2379;h2:2379".
    pub metadata: String,
    pub protocol: Protocol,
    /// MOONCAKE_DEVICE: NIC names or IPs, comma-separated; "" = discover.
    pub devices: String,
    /// TCP data-path knobs.
    pub tcp: TcpTuning,
    /// With `protocol = rdma` and no usable RDMA device: use TCP instead of failing.
    pub rdma_fallback_to_tcp: bool,
    /// Addresses advertised to peers in the descriptor. Empty = derived from `bind_ip`
    /// (the local interfaces' addresses when bound to 0.0.0.0).
    pub advertise: Vec<String>,
    /// Authentication on the data port (`tcp::auth`): the token this engine proves to
    /// peers and how its listener checks theirs. Default: none, and the listener serves
    /// whoever connects.
    pub auth: crate::tcp::auth::DataAuth,
    /// TLS on the data port (`tcp::tls`, [`data_tls_from_env`]); `None`: plaintext.
    pub tls: Option<crate::tcp::tls::DataTls>,
}

impl TransferConfig {
    /// TCP, P2PHANDSHAKE metadata, listener on 127.0.0.1 with any free port.
    pub fn new(local_hostname: impl Into<String>) -> Self {
        Self {
            local_hostname: local_hostname.into(),
            bind_ip: "127.0.0.1".into(),
            port: 0,
            metadata: P2P_HANDSHAKE.into(),
            protocol: Protocol::Tcp,
            devices: String::new(),
            tcp: TcpTuning::default(),
            rdma_fallback_to_tcp: false,
            advertise: Vec::new(),
            auth: Default::default(),
            tls: None,
        }
    }

    /// The engine settings of a store daemon or client (CONTRACT §2): name, metadata
    /// server, protocol and devices from the shared `NodeConfig`. Binds `0.0.0.0` so
    /// peers on other hosts reach it (every selected NIC is advertised).
    pub fn from_node(node: &mooncake_common::config::NodeConfig) -> Self {
        let mut cfg = Self::new(node.local_hostname.clone());
        cfg.bind_ip = "0.0.0.0".into();
        cfg.metadata = node.metadata_server.clone();
        cfg.protocol = node.protocol;
        cfg.devices = node.device_name.clone();
        cfg
    }

    /// Rejects settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), TransferError> {
        let bad = |m: String| Err(TransferError::Config(m));
        if self.local_hostname.trim().is_empty() {
            return bad("local_hostname is empty".into());
        }
        if self.bind_ip.parse::<std::net::IpAddr>().is_err() {
            return bad(format!("bind_ip {:?} is not an IP address", self.bind_ip));
        }
        let t = &self.tcp;
        if t.slice_size < 4096 || t.slice_size > (64 << 20) {
            return bad(format!(
                "tcp.slice_size {} must be within 4 KiB..=64 MiB",
                t.slice_size
            ));
        }
        if t.conns_per_path == 0 || t.conns_per_path > 64 {
            return bad(format!(
                "tcp.conns_per_path {} must be 1..=64",
                t.conns_per_path
            ));
        }
        if t.max_inflight_bytes < t.slice_size {
            return bad(format!(
                "tcp.max_inflight_bytes {} is below tcp.slice_size {}",
                t.max_inflight_bytes, t.slice_size
            ));
        }
        if t.max_connections == 0 {
            return bad("tcp.max_connections must be at least 1".into());
        }
        if t.idle_timeout.is_zero() || t.stall_timeout.is_zero() || t.auth_timeout.is_zero() {
            return bad(format!(
                "tcp.idle_timeout ({:?}), tcp.stall_timeout ({:?}) and tcp.auth_timeout ({:?}) must be above zero",
                t.idle_timeout, t.stall_timeout, t.auth_timeout
            ));
        }
        Ok(())
    }
}

/// `MOONCAKE_TRANSFER_TLS=1`: data connections run TLS (see `tcp::tls`).
pub const TRANSFER_TLS_ENV: &str = "MOONCAKE_TRANSFER_TLS";

/// Whether a `MOONCAKE_TRANSFER_TLS` value turns TLS on; anything but a yes or a no
/// is an error naming the variable (a typo must not silently mean plaintext).
pub fn parse_transfer_tls(value: Option<&str>) -> Result<bool, TransferError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(TransferError::Config(format!(
            "{TRANSFER_TLS_ENV}={other:?}: expected 1 or 0"
        ))),
    }
}

/// The data port's TLS as the environment asks for it: `Ok(None)` unless
/// `MOONCAKE_TRANSFER_TLS` is on; then this engine's certificate and key
/// (`MOONCAKE_TLS_CERT_FILE`, `MOONCAKE_TLS_KEY_FILE`) and the CA file peers'
/// certificates must chain to (`MOONCAKE_TLS_CA_FILE`), all three required.
pub fn data_tls_from_env() -> Result<Option<crate::tcp::tls::DataTls>, TransferError> {
    let on = parse_transfer_tls(std::env::var(TRANSFER_TLS_ENV).ok().as_deref())?;
    if !on {
        return Ok(None);
    }
    let files = mooncake_tls::config::ClientFiles::from_env();
    match (&files.cert, &files.key, &files.ca) {
        (Some(cert), Some(key), Some(ca)) => crate::tcp::tls::DataTls::new(cert, key, ca).map(Some),
        _ => Err(TransferError::Config(format!(
            "{TRANSFER_TLS_ENV}=1 needs {} and {} (this process's certificate and key, which its data port presents) and {} (what peers' certificates must chain to)",
            mooncake_tls::config::CERT_FILE_ENV,
            mooncake_tls::config::KEY_FILE_ENV,
            mooncake_tls::config::CA_FILE_ENV,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_node_takes_the_shared_settings() {
        let node = mooncake_common::config::NodeConfig {
            local_hostname: "10.0.0.5".into(),
            metadata_server: "http://m:8080/metadata".into(),
            protocol: Protocol::Rdma,
            device_name: "mlx5_0".into(),
            ..Default::default()
        };
        let cfg = TransferConfig::from_node(&node);
        assert_eq!(cfg.local_hostname, "10.0.0.5");
        assert_eq!(cfg.metadata, "http://m:8080/metadata");
        assert_eq!(cfg.protocol, Protocol::Rdma);
        assert_eq!(cfg.devices, "mlx5_0");
        assert_eq!(cfg.port, 0);
        assert_eq!(cfg.bind_ip, "0.0.0.0");
    }

    #[test]
    fn transfer_tls_values() {
        for v in [None, Some(""), Some("0"), Some(" off ")] {
            assert!(!parse_transfer_tls(v).unwrap(), "{v:?}");
        }
        for v in ["1", "true", "YES"] {
            assert!(parse_transfer_tls(Some(v)).unwrap(), "{v}");
        }
        let e = parse_transfer_tls(Some("tls")).unwrap_err().to_string();
        assert!(e.contains(TRANSFER_TLS_ENV), "{e}");
    }

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        let cfg = TransferConfig::new("node:1");
        cfg.validate().unwrap();
        let mut c = cfg.clone();
        c.bind_ip = "nowhere".into();
        assert!(c.validate().unwrap_err().to_string().contains("bind_ip"));
        let mut c = cfg.clone();
        c.tcp.slice_size = 10;
        assert!(c.validate().unwrap_err().to_string().contains("slice_size"));
        let mut c = cfg.clone();
        c.tcp.conns_per_path = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("conns_per_path"));
        let mut c = cfg.clone();
        c.tcp.max_connections = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_connections"));
        let mut c = cfg;
        c.tcp.stall_timeout = Duration::ZERO;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("stall_timeout"));
    }
}

//! The environment contract (CONTRACT §2) shared by the store daemon and the client:
//! `MOONCAKE_MASTER`, `MOONCAKE_TE_META_DATA_SERVER`, `MOONCAKE_GLOBAL_SEGMENT_SIZE`,
//! `MOONCAKE_LOCAL_BUFFER_SIZE`, `MOONCAKE_PROTOCOL`, `MOONCAKE_DEVICE`,
//! `MOONCAKE_LOCAL_HOSTNAME`, and `MOONCAKE_CONFIG_PATH` (a JSON file with the same
//! settings under the reference's key names). Variables override the file.

use crate::size::parse_size;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

pub const DEFAULT_GLOBAL_SEGMENT_SIZE: u64 = 3_355_443_200;
pub const DEFAULT_LOCAL_BUFFER_SIZE: u64 = 1_073_741_824;
pub const P2P_HANDSHAKE: &str = "P2PHANDSHAKE";

/// Transport protocol between clients and stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Rdma,
}

impl Protocol {
    pub fn parse(what: &str, s: &str) -> Result<Protocol, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" | "" => Ok(Protocol::Tcp),
            "rdma" => Ok(Protocol::Rdma),
            other => Err(ConfigError(format!(
                "invalid protocol for {what}: {other:?} (use tcp or rdma)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Rdma => "rdma",
        }
    }
}

/// A configuration problem; the message names the variable or key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What a store daemon or a client needs to join the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// `host:port` of the master, or `etcd://h1:2379;h2:2379` in HA mode.
    pub master_server_address: String,
    /// `P2PHANDSHAKE`, `http://host:port/metadata`, or an etcd address.
    pub metadata_server: String,
    pub global_segment_size: u64,
    pub local_buffer_size: u64,
    pub protocol: Protocol,
    /// Comma-separated NIC names or addresses; empty = discover.
    pub device_name: String,
    pub local_hostname: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            master_server_address: String::new(),
            metadata_server: P2P_HANDSHAKE.to_string(),
            global_segment_size: DEFAULT_GLOBAL_SEGMENT_SIZE,
            local_buffer_size: DEFAULT_LOCAL_BUFFER_SIZE,
            protocol: Protocol::Tcp,
            device_name: String::new(),
            local_hostname: "localhost".to_string(),
        }
    }
}

/// `MOONCAKE_CONFIG_PATH` JSON; sizes may be numbers or size strings.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    local_hostname: Option<String>,
    metadata_server: Option<String>,
    master_server_address: Option<String>,
    global_segment_size: Option<serde_json::Value>,
    local_buffer_size: Option<serde_json::Value>,
    protocol: Option<String>,
    device_name: Option<String>,
}

fn json_size(what: &str, v: &serde_json::Value) -> Result<u64, ConfigError> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| ConfigError(format!("invalid size for {what}: {n}"))),
        serde_json::Value::String(s) => parse_size(what, s).map_err(|e| ConfigError(e.0)),
        other => Err(ConfigError(format!("invalid size for {what}: {other}"))),
    }
}

impl NodeConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<NodeConfig, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("MOONCAKE_"))
            .collect();
        Self::from_vars(&vars)
    }

    /// Reads the settings from `vars` (the environment, or a test's map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<NodeConfig, ConfigError> {
        let mut cfg = NodeConfig::default();
        if let Some(path) = vars.get("MOONCAKE_CONFIG_PATH") {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read MOONCAKE_CONFIG_PATH {path:?}: {e}"))
            })?;
            let file: FileConfig = serde_json::from_str(&text).map_err(|e| {
                ConfigError(format!(
                    "invalid JSON in MOONCAKE_CONFIG_PATH {path:?}: {e}"
                ))
            })?;
            cfg.apply_file(file)?;
        }
        let get = |k: &str| vars.get(k).map(|s| s.as_str());
        if let Some(v) = get("MOONCAKE_MASTER") {
            cfg.master_server_address = v.trim().to_string();
        }
        if let Some(v) = get("MOONCAKE_TE_META_DATA_SERVER") {
            cfg.metadata_server = v.trim().to_string();
        }
        if let Some(v) = get("MOONCAKE_GLOBAL_SEGMENT_SIZE") {
            cfg.global_segment_size =
                parse_size("MOONCAKE_GLOBAL_SEGMENT_SIZE", v).map_err(|e| ConfigError(e.0))?;
        }
        if let Some(v) = get("MOONCAKE_LOCAL_BUFFER_SIZE") {
            cfg.local_buffer_size =
                parse_size("MOONCAKE_LOCAL_BUFFER_SIZE", v).map_err(|e| ConfigError(e.0))?;
        }
        if let Some(v) = get("MOONCAKE_PROTOCOL") {
            cfg.protocol = Protocol::parse("MOONCAKE_PROTOCOL", v)?;
        }
        if let Some(v) = get("MOONCAKE_DEVICE") {
            cfg.device_name = v.trim().to_string();
        }
        if let Some(v) = get("MOONCAKE_LOCAL_HOSTNAME") {
            cfg.local_hostname = v.trim().to_string();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<(), ConfigError> {
        if let Some(v) = f.local_hostname {
            self.local_hostname = v;
        }
        if let Some(v) = f.metadata_server {
            self.metadata_server = v;
        }
        if let Some(v) = f.master_server_address {
            self.master_server_address = v;
        }
        if let Some(v) = f.global_segment_size {
            self.global_segment_size = json_size("global_segment_size", &v)?;
        }
        if let Some(v) = f.local_buffer_size {
            self.local_buffer_size = json_size("local_buffer_size", &v)?;
        }
        if let Some(v) = f.protocol {
            self.protocol = Protocol::parse("protocol", &v)?;
        }
        if let Some(v) = f.device_name {
            self.device_name = v;
        }
        Ok(())
    }

    /// Checks what can be checked without touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.master_server_address.trim().is_empty() {
            return Err(ConfigError(
                "MOONCAKE_MASTER is required (host:port or etcd://h1:2379;h2:2379)".into(),
            ));
        }
        if self.local_hostname.trim().is_empty() {
            return Err(ConfigError("MOONCAKE_LOCAL_HOSTNAME is empty".into()));
        }
        Ok(())
    }
}

/// The credential this process proves, from `MOONCAKE_AUTH_TOKEN_FILE` (preferred: the
/// file is read again when the token rotates) or `MOONCAKE_AUTH_TOKEN`; `None` when
/// neither is set. A set but unreadable or empty file is an error, not "no token".
pub fn credential_from_env() -> Result<Option<crate::auth::Credential>, crate::auth::AuthError> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    if let Some(path) = var("MOONCAKE_AUTH_TOKEN_FILE") {
        return crate::auth::Credential::from_file(std::path::Path::new(path.trim())).map(Some);
    }
    match var("MOONCAKE_AUTH_TOKEN") {
        Some(t) => crate::auth::Credential::from_token(&t, "MOONCAKE_AUTH_TOKEN").map(Some),
        None => Ok(None),
    }
}

/// The tenant this process declares (`MOONCAKE_TENANT_ID`), if any.
pub fn tenant_from_env() -> Option<String> {
    std::env::var("MOONCAKE_TENANT_ID")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_seed_environment() {
        let cfg = NodeConfig::from_vars(&vars(&[
            ("MOONCAKE_MASTER", "master:50051"),
            (
                "MOONCAKE_TE_META_DATA_SERVER",
                "http://master:8080/metadata",
            ),
            ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "50gb"),
            ("MOONCAKE_LOCAL_BUFFER_SIZE", "0"),
            ("MOONCAKE_PROTOCOL", "TCP"),
            ("MOONCAKE_DEVICE", ""),
        ]))
        .unwrap();
        assert_eq!(cfg.global_segment_size, 50 << 30);
        assert_eq!(cfg.local_buffer_size, 0);
        assert_eq!(cfg.protocol, Protocol::Tcp);
        assert_eq!(cfg.local_hostname, "localhost");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = NodeConfig::from_vars(&vars(&[
            ("MOONCAKE_MASTER", "m:1"),
            ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "lots"),
        ]))
        .unwrap_err();
        assert!(e.0.contains("MOONCAKE_GLOBAL_SEGMENT_SIZE"), "{e}");
        let e = NodeConfig::from_vars(&vars(&[
            ("MOONCAKE_MASTER", "m:1"),
            ("MOONCAKE_PROTOCOL", "carrier-pigeon"),
        ]))
        .unwrap_err();
        assert!(e.0.contains("MOONCAKE_PROTOCOL"), "{e}");
        let e = NodeConfig::from_vars(&vars(&[])).unwrap_err();
        assert!(e.0.contains("MOONCAKE_MASTER"), "{e}");
    }

    #[test]
    fn config_file_then_environment() {
        let dir = std::env::temp_dir().join(format!("mc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        std::fs::write(
            &path,
            r#"{"master_server_address":"a:1","global_segment_size":"1gb","protocol":"rdma","local_hostname":"n1"}"#,
        )
        .unwrap();
        let cfg = NodeConfig::from_vars(&vars(&[
            ("MOONCAKE_CONFIG_PATH", path.to_str().unwrap()),
            ("MOONCAKE_PROTOCOL", "tcp"),
        ]))
        .unwrap();
        assert_eq!(cfg.master_server_address, "a:1");
        assert_eq!(cfg.global_segment_size, 1 << 30);
        assert_eq!(cfg.protocol, Protocol::Tcp);
        assert_eq!(cfg.local_hostname, "n1");
    }
}

//! The daemon's settings: the seed's `MOONCAKE_*` environment (CONTRACT §2), with
//! command-line flags taking precedence. Flags are merged into the variable map before
//! parsing, so one parser validates both and its errors name the variable.

use clap::Parser;
use mooncake_common::config::NodeConfig;
use mooncake_common::size::parse_size;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "mooncake_store",
    about = "Mooncake store daemon: contributes memory to the pool"
)]
pub struct StoreArgs {
    /// HTTP port for /health and the REST API (0 = any free port; HTTPS only with
    /// MOONCAKE_REST_TLS=1).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address the HTTP port binds.
    #[arg(long = "http_host", alias = "http-host", default_value = "0.0.0.0")]
    pub http_host: String,
    /// Master `host:port` (overrides MOONCAKE_MASTER).
    #[arg(long, alias = "master_server_address")]
    pub master: Option<String>,
    /// Overrides MOONCAKE_TE_META_DATA_SERVER.
    #[arg(long = "metadata_server", alias = "metadata-server")]
    pub metadata_server: Option<String>,
    /// Overrides MOONCAKE_GLOBAL_SEGMENT_SIZE (`50gb`, `4194304`...).
    #[arg(long = "global_segment_size", alias = "global-segment-size")]
    pub global_segment_size: Option<String>,
    /// Overrides MOONCAKE_LOCAL_BUFFER_SIZE.
    #[arg(long = "local_buffer_size", alias = "local-buffer-size")]
    pub local_buffer_size: Option<String>,
    /// Overrides MOONCAKE_LOCAL_HOSTNAME.
    #[arg(long = "local_hostname", alias = "local-hostname")]
    pub local_hostname: Option<String>,
    /// Overrides MOONCAKE_PROTOCOL (tcp or rdma).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Overrides MOONCAKE_DEVICE.
    #[arg(long = "device_name", alias = "device-name")]
    pub device_name: Option<String>,
    /// JSON config file (overrides MOONCAKE_CONFIG_PATH).
    #[arg(long, alias = "config_path")]
    pub config: Option<String>,
    /// Back the segment with transparent huge pages when the kernel allows it.
    #[arg(long)]
    pub hugepages: bool,
    /// Bytes of the segment kept faulted in ahead of the bytes peers have written
    /// (`50mb`, `1gb`; 0 = pages fault in on first write). Also MOONCAKE_WARM_AHEAD.
    #[arg(
        long = "warm_ahead",
        alias = "warm-ahead",
        env = "MOONCAKE_WARM_AHEAD",
        default_value = "256mb",
        value_parser = parse_warm
    )]
    pub warm_ahead: u64,
    /// Seconds to keep trying to mount before giving up (0 = forever).
    #[arg(
        long = "max_wait_time",
        alias = "max-wait-time",
        default_value_t = 60.0
    )]
    pub max_wait_time: f64,
}

impl StoreArgs {
    /// The node settings from `env` (the process's `MOONCAKE_*` variables) and the flags.
    pub fn node_config(&self, mut env: HashMap<String, String>) -> Result<NodeConfig, String> {
        let mut set = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                env.insert(k.to_string(), v.clone());
            }
        };
        set("MOONCAKE_MASTER", &self.master);
        set("MOONCAKE_TE_META_DATA_SERVER", &self.metadata_server);
        set("MOONCAKE_LOCAL_HOSTNAME", &self.local_hostname);
        set("MOONCAKE_PROTOCOL", &self.protocol);
        set("MOONCAKE_DEVICE", &self.device_name);
        set("MOONCAKE_CONFIG_PATH", &self.config);
        for (flag, var, v) in [
            (
                "--global_segment_size",
                "MOONCAKE_GLOBAL_SEGMENT_SIZE",
                &self.global_segment_size,
            ),
            (
                "--local_buffer_size",
                "MOONCAKE_LOCAL_BUFFER_SIZE",
                &self.local_buffer_size,
            ),
        ] {
            if let Some(v) = v {
                let n = parse_size(flag, v).map_err(|e| e.0)?;
                env.insert(var.to_string(), n.to_string());
            }
        }
        let cfg = NodeConfig::from_vars(&env).map_err(|e| e.0)?;
        if cfg.global_segment_size == 0 {
            return Err("MOONCAKE_GLOBAL_SEGMENT_SIZE is 0: a store must contribute memory".into());
        }
        Ok(cfg)
    }

    pub fn max_wait(&self) -> Option<Duration> {
        (self.max_wait_time > 0.0 && self.max_wait_time.is_finite())
            .then(|| Duration::from_secs_f64(self.max_wait_time))
    }
}

/// `--warm_ahead`'s value: a size (`0` turns warm-ahead off).
fn parse_warm(v: &str) -> Result<u64, String> {
    parse_size("--warm_ahead", v).map_err(|e| e.to_string())
}

/// The file written once the segment is mounted (and removed at exit), for drivers
/// that wait for the store: `MOONCAKE_READY_FILE`.
pub fn ready_file() -> Option<PathBuf> {
    std::env::var_os("MOONCAKE_READY_FILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The process's `MOONCAKE_*` variables.
pub fn env_vars() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("MOONCAKE_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_override_the_environment() {
        let a = StoreArgs::parse_from([
            "mooncake_store",
            "--port",
            "0",
            "--global_segment_size",
            "1gb",
            "--master=m:2",
        ]);
        let cfg = a
            .node_config(env(&[
                ("MOONCAKE_MASTER", "m:1"),
                ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "50gb"),
            ]))
            .unwrap();
        assert_eq!(cfg.master_server_address, "m:2");
        assert_eq!(cfg.global_segment_size, 1 << 30);
        assert_eq!(a.port, 0);
    }

    #[test]
    fn warm_ahead_is_a_size() {
        let a = StoreArgs::parse_from(["mooncake_store"]);
        assert_eq!(a.warm_ahead, 256 << 20);
        let a = StoreArgs::parse_from(["mooncake_store", "--warm_ahead", "0"]);
        assert_eq!(a.warm_ahead, 0);
        let e = StoreArgs::try_parse_from(["mooncake_store", "--warm_ahead", "lots"]).unwrap_err();
        assert!(e.to_string().contains("--warm_ahead"), "{e}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let a = StoreArgs::parse_from(["mooncake_store"]);
        let e = a
            .node_config(env(&[
                ("MOONCAKE_MASTER", "m:1"),
                ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "50%"),
            ]))
            .unwrap_err();
        assert!(e.contains("MOONCAKE_GLOBAL_SEGMENT_SIZE"), "{e}");
        let e = a.node_config(env(&[])).unwrap_err();
        assert!(e.contains("MOONCAKE_MASTER"), "{e}");
        let e = a
            .node_config(env(&[
                ("MOONCAKE_MASTER", "m:1"),
                ("MOONCAKE_GLOBAL_SEGMENT_SIZE", "0"),
            ]))
            .unwrap_err();
        assert!(e.contains("0"), "{e}");
        let b = StoreArgs::parse_from(["mooncake_store", "--global_segment_size", "huge"]);
        let e = b
            .node_config(env(&[("MOONCAKE_MASTER", "m:1")]))
            .unwrap_err();
        assert!(e.contains("--global_segment_size"), "{e}");
    }
}

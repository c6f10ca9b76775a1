//! `mooncake_client`'s settings: the reference's flags (gflags style, `--name=value`
//! or `--name value`), optionally read from a file first: `--flagfile=PATH` (one
//! flag per line, `#` comments, as gflags reads it) or `--config_path=PATH` (a JSON
//! object whose keys are the flag names). Flags on the command line win over the
//! file's.

use clap::Parser;
use mooncake_common::config::{NodeConfig, Protocol};
use mooncake_common::hostname::split_host_port;
use mooncake_common::size::parse_size;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "mooncake_client",
    about = "Mooncake real client: contributes this node's memory to the pool and serves \
             the node's dummy clients (setup_dummy) on --port",
    args_override_self = true
)]
pub struct ClientArgs {
    /// Master `host:port`.
    #[arg(long = "master_server_address", default_value = "127.0.0.1:50051")]
    pub master_server_address: String,
    /// This node's name in the pool (`host` or `host:port`; without a port the
    /// transfer engine picks one in 12300..14300). The RPC port binds its host.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// The port dummy clients connect to.
    #[arg(long, default_value_t = 50052)]
    pub port: u16,
    /// Memory this node contributes (`4 GB`, `512mb`, bytes).
    #[arg(long = "global_segment_size", default_value = "4 GB")]
    pub global_segment_size: String,
    /// Accepted for the reference's flag set; transfers need no staging buffer here.
    #[arg(long = "local_buffer_size", default_value = "0")]
    pub local_buffer_size: String,
    /// `tcp` or `rdma`.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// RDMA devices (or NICs) to use, comma-separated.
    #[arg(long = "device_names", alias = "device_name", default_value = "")]
    pub device_names: String,
    /// `http://host:port/metadata`, `etcd://...` or `P2PHANDSHAKE`.
    #[arg(
        long = "metadata_server",
        default_value = "http://127.0.0.1:8080/metadata"
    )]
    pub metadata_server: String,
    /// Worker threads of the client's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Accepted for the reference's flag set (one tenant here).
    #[arg(long = "tenant_id", default_value = "default")]
    pub tenant_id: String,
    /// Requires the SSD tier (its directory: `MOONCAKE_OFFLOAD_FILE_STORAGE_PATH`,
    /// which alone also opens it).
    #[arg(long = "enable_offload", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = parse_bool)]
    pub enable_offload: bool,
    /// Serve `/health`, `/metrics` and `/metrics/summary` on `--http_port`.
    #[arg(long = "enable_http_server", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = parse_bool)]
    pub enable_http_server: bool,
    /// The health and metrics port (with `--enable_http_server`); it binds the
    /// RPC port's host.
    #[arg(long = "http_port", default_value_t = 9300)]
    pub http_port: u16,
    /// Most dummy connections served at once; one more is closed at once.
    #[arg(long = "max_dummy_connections", default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a dummy connection may stay silent before it is closed (the dummy
    /// reconnects on its next call).
    #[arg(long = "dummy_idle_timeout", default_value_t = 600)]
    pub idle_timeout_secs: u64,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// Everything the binary needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: NodeConfig,
    /// Address the RPC port binds.
    pub bind_host: String,
    pub port: u16,
    pub threads: usize,
    pub enable_offload: bool,
    /// The health and metrics port, when `--enable_http_server` asks for one.
    pub http_port: Option<u16>,
    pub limits: crate::server::Limits,
}

impl ClientArgs {
    /// Parses `argv` (program name first), reading `--flagfile` / `--config_path`
    /// first. Errors name the flag or the file at fault.
    pub fn from_argv(argv: Vec<String>) -> Result<ClientArgs, String> {
        let mut it = argv.into_iter();
        let prog = it.next().unwrap_or_else(|| "mooncake_client".into());
        let mut from_file = Vec::new();
        let mut rest = Vec::new();
        let mut args: Vec<String> = it.collect();
        args.reverse();
        while let Some(a) = args.pop() {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (a.clone(), None),
            };
            let file_kind = match name.trim_start_matches('-') {
                "flagfile" => Some(false),
                "config_path" | "config" => Some(true),
                _ => None,
            };
            let Some(json) = file_kind else {
                rest.push(a);
                continue;
            };
            let path = match inline.or_else(|| args.pop()) {
                Some(p) => p,
                None => return Err(format!("{name} needs a file path")),
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{name}: cannot read {path}: {e}"))?;
            let flags = if json {
                flags_from_json(&text).map_err(|e| format!("{name} {path}: {e}"))?
            } else {
                flags_from_flagfile(&text)
            };
            from_file.extend(flags);
        }
        let all = std::iter::once(prog).chain(from_file).chain(rest);
        ClientArgs::try_parse_from(all).map_err(|e| e.to_string())
    }

    pub fn settings(&self) -> Result<Settings, String> {
        let size = |flag: &str, v: &str| parse_size(flag, v).map_err(|e| e.0);
        let global_segment_size = size("--global_segment_size", &self.global_segment_size)?;
        if global_segment_size == 0 {
            return Err(
                "--global_segment_size is 0: the real client owns the node's memory".into(),
            );
        }
        let local_buffer_size = size("--local_buffer_size", &self.local_buffer_size)?;
        let protocol = Protocol::parse("--protocol", &self.protocol).map_err(|e| e.0)?;
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.port == 0 {
            return Err("--port must be a port dummies can be told (not 0)".into());
        }
        let host = self.host.trim();
        let (bind_host, _) = split_host_port(host);
        if bind_host.is_empty() {
            return Err(format!("--host {:?} has no host name", self.host));
        }
        let node = NodeConfig {
            master_server_address: self.master_server_address.trim().to_string(),
            metadata_server: self.metadata_server.trim().to_string(),
            global_segment_size,
            local_buffer_size,
            protocol,
            device_name: self.device_names.trim().to_string(),
            local_hostname: host.to_string(),
        };
        node.validate().map_err(|e| e.0)?;
        if self.enable_http_server && self.http_port == self.port {
            return Err(format!(
                "--http_port {} is also --port: the health and metrics port needs its own",
                self.http_port
            ));
        }
        if self.max_connections == 0 {
            return Err("--max_dummy_connections must be at least 1".into());
        }
        Ok(Settings {
            node,
            bind_host: bind_host.trim_matches(['[', ']']).to_string(),
            port: self.port,
            threads: self.threads,
            enable_offload: self.enable_offload,
            http_port: self.enable_http_server.then_some(self.http_port),
            limits: crate::server::Limits {
                max_connections: self.max_connections,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
                ..crate::server::Limits::default()
            },
        })
    }
}

/// gflags' flagfile: one `--name=value` per line; blank lines and `#` comments skipped.
fn flags_from_flagfile(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A JSON object of flag names to values (strings, numbers or booleans).
fn flags_from_json(text: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("the file must hold a JSON object of flag names to values")?;
    obj.iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => return Err(format!("{k}: {other} is not a string, number or boolean")),
            };
            Ok(format!("--{k}={value}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        std::iter::once("mooncake_client")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn the_reference_flags_parse() {
        let a = ClientArgs::from_argv(argv(&[
            "--master_server_address=10.0.0.1:50051",
            "--host=10.0.0.2:13000",
            "--port",
            "50060",
            "--global_segment_size=4 GB",
            "--protocol=tcp",
            "--device_names=eth0",
            "--metadata_server=http://10.0.0.1:8080/metadata",
            "--threads=4",
            "--enable_offload",
        ]))
        .unwrap();
        let s = a.settings().unwrap();
        assert_eq!(s.node.global_segment_size, 4 << 30);
        assert_eq!(s.node.local_hostname, "10.0.0.2:13000");
        assert_eq!(s.bind_host, "10.0.0.2");
        assert_eq!(s.port, 50060);
        assert_eq!(s.threads, 4);
        assert_eq!(s.node.device_name, "eth0");
        assert!(s.enable_offload);
        assert_eq!(s.http_port, None);
        let d = ClientArgs::from_argv(argv(&[])).unwrap();
        assert_eq!(d.port, 50052);
        let h = ClientArgs::from_argv(argv(&["--enable_http_server=true"])).unwrap();
        assert_eq!(h.settings().unwrap().http_port, Some(9300));
        let h = ClientArgs::from_argv(argv(&["--enable_http_server", "--http_port=9400"]));
        assert_eq!(h.unwrap().settings().unwrap().http_port, Some(9400));
        let off = ClientArgs::from_argv(argv(&["--http_port=9400"])).unwrap();
        assert_eq!(
            off.settings().unwrap().http_port,
            None,
            "only with the switch"
        );
        assert_eq!(d.settings().unwrap().node.global_segment_size, 4 << 30);
    }

    #[test]
    fn the_http_port_cannot_be_the_rpc_port() {
        let e = ClientArgs::from_argv(argv(&["--enable_http_server", "--http_port=50052"]))
            .unwrap()
            .settings()
            .unwrap_err();
        assert!(e.contains("--http_port") && e.contains("--port"), "{e}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = ClientArgs::from_argv(argv(&["--global_segment_size=lots"]))
            .unwrap()
            .settings()
            .unwrap_err();
        assert!(e.contains("--global_segment_size"), "{e}");
        let e = ClientArgs::from_argv(argv(&["--protocol=carrier-pigeon"]))
            .unwrap()
            .settings()
            .unwrap_err();
        assert!(e.contains("protocol"), "{e}");
        let e = ClientArgs::from_argv(argv(&["--global_segment_size=0"]))
            .unwrap()
            .settings()
            .unwrap_err();
        assert!(e.contains("0"), "{e}");
        let e = ClientArgs::from_argv(argv(&["--port=70000"])).unwrap_err();
        assert!(e.contains("port"), "{e}");
        let e = ClientArgs::from_argv(argv(&["--threads=0"]))
            .unwrap()
            .settings()
            .unwrap_err();
        assert!(e.contains("--threads"), "{e}");
        let e = ClientArgs::from_argv(argv(&["--hots=a"])).unwrap_err();
        assert!(e.contains("--hots"), "{e}");
        let e = ClientArgs::from_argv(argv(&["--enable_offload=maybe"])).unwrap_err();
        assert!(e.contains("maybe"), "{e}");
    }

    #[test]
    fn files_give_flags_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ff = dir.path().join("client.flags");
        std::fs::write(
            &ff,
            "# node 3\n--port=50070\n--global_segment_size=2 GB\n\n--protocol=tcp\n",
        )
        .unwrap();
        let a = ClientArgs::from_argv(argv(&[
            &format!("--flagfile={}", ff.display()),
            "--port=50071",
        ]))
        .unwrap();
        assert_eq!(a.port, 50071);
        assert_eq!(a.settings().unwrap().node.global_segment_size, 2 << 30);
        let js = dir.path().join("client.json");
        std::fs::write(
            &js,
            r#"{"port": 50080, "global_segment_size": "1GB", "enable_offload": false}"#,
        )
        .unwrap();
        let b = ClientArgs::from_argv(argv(&["--config_path", js.to_str().unwrap()])).unwrap();
        assert_eq!(b.port, 50080);
        std::fs::write(&js, "[1, 2]").unwrap();
        let e =
            ClientArgs::from_argv(argv(&[&format!("--config_path={}", js.display())])).unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
        let e = ClientArgs::from_argv(argv(&["--flagfile=/nonexistent/x"])).unwrap_err();
        assert!(e.contains("/nonexistent/x"), "{e}");
    }
}

//! The table of `mooncake_master` flags (CONTRACT §1): names, aliases, defaults, help,
//! and how each value lands in [`MasterConfig`]. One row per flag so that `--help`, the
//! command line and the `--config_path` file all read the same source.

use crate::config::{AllocationStrategy, MasterConfig};
use crate::index::IndexMemoryLimit;
use mooncake_common::duration::{parse_millis, parse_secs};
use std::time::Duration;

/// Whether a flag takes a value or is a gflags boolean (bare `--name` means true).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Value,
}

/// Stores one parsed value; the error names the flag.
pub type Apply = fn(&mut MasterConfig, &str) -> Result<(), String>;

pub struct FlagSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// The default as the user would type it; a unit test checks it matches
    /// `MasterConfig::default()`.
    pub default: &'static str,
    pub help: &'static str,
    pub apply: Apply,
}

/// Flags of the reference master that do not live in `MasterConfig`. The two thread
/// counts size the process's runtime (`Parsed::rpc_threads`); the rest (its RPC
/// library's knobs) are accepted with a warning so that existing command lines keep
/// starting. Anything else unknown is an error.
pub const COMPAT_FLAGS: &[(&str, Kind)] = &[
    ("rpc_thread_num", Kind::Value),
    ("max_threads", Kind::Value),
    ("rpc_conn_timeout_seconds", Kind::Value),
    ("rpc_enable_tcp_no_delay", Kind::Bool),
    ("enable_gc", Kind::Bool),
    ("memory_allocator", Kind::Value),
    ("root_fs_dir", Kind::Value),
    // The on-disk index always restores when enabled; its retention is one snapshot.
    ("enable_snapshot_restore", Kind::Bool),
    ("snapshot_retention_count", Kind::Value),
    ("snapshot_child_timeout_seconds", Kind::Value),
];

pub fn bad(flag: &str, value: &str, why: impl std::fmt::Display) -> String {
    format!("invalid value for --{flag}: {value:?} ({why})")
}

/// gflags' boolean spellings.
pub fn parse_bool(flag: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Ok(true),
        "false" | "f" | "no" | "n" | "0" => Ok(false),
        _ => Err(bad(flag, v, "expected true or false")),
    }
}

fn port(flag: &str, v: &str) -> Result<u16, String> {
    v.trim()
        .parse::<u16>()
        .map_err(|_| bad(flag, v, "expected a port number 0-65535"))
}

fn ratio(flag: &str, v: &str) -> Result<f64, String> {
    let r: f64 = v
        .trim()
        .parse()
        .map_err(|_| bad(flag, v, "expected a number between 0 and 1"))?;
    if r.is_finite() && (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(bad(flag, v, "must be between 0 and 1"))
    }
}

fn host(flag: &str, v: &str) -> Result<String, String> {
    let h = v.trim();
    if h.is_empty() {
        return Err(bad(flag, v, "empty address"));
    }
    Ok(h.to_string())
}

fn millis(flag: &str, v: &str) -> Result<Duration, String> {
    parse_millis(&format!("--{flag}"), v)
}

fn secs(flag: &str, v: &str) -> Result<Duration, String> {
    parse_secs(&format!("--{flag}"), v)
}

/// Splits `h1:2379;h2:2379` (commas accepted too), dropping empty entries.
pub fn endpoints(v: &str) -> Vec<String> {
    v.split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

macro_rules! flag {
    ($name:literal, [$($alias:literal),*], $kind:ident, $default:literal, $help:literal,
     |$c:ident, $v:ident, $f:ident| $body:expr) => {
        FlagSpec {
            name: $name,
            aliases: &[$($alias),*],
            kind: Kind::$kind,
            default: $default,
            help: $help,
            apply: |$c: &mut MasterConfig, $v: &str| -> Result<(), String> {
                #[allow(unused_variables)]
                let $f = $name;
                $body;
                Ok(())
            },
        }
    };
}

pub const FLAGS: &[FlagSpec] = &[
    flag!(
        "rpc_address",
        [],
        Value,
        "0.0.0.0",
        "address the gRPC service binds and advertises",
        |c, v, flag| c.rpc_address = host(flag, v)?
    ),
    flag!(
        "rpc_port",
        ["port"],
        Value,
        "50051",
        "gRPC port",
        |c, v, flag| c.rpc_port = port(flag, v)?
    ),
    flag!(
        "metrics_host",
        [],
        Value,
        "0.0.0.0",
        "bind address of the admin/metrics HTTP port",
        |c, v, flag| c.metrics_host = host(flag, v)?
    ),
    flag!(
        "metrics_port",
        [],
        Value,
        "9003",
        "admin HTTP port: /metrics, /health, /get_all_segments, /query_key, /get_all_keys",
        |c, v, flag| c.metrics_port = port(flag, v)?
    ),
    flag!(
        "enable_metric_reporting",
        [],
        Bool,
        "true",
        "log a Storage/Keys summary line every 10 s",
        |c, v, flag| c.enable_metric_reporting = parse_bool(flag, v)?
    ),
    flag!(
        "enable_http_metadata_server",
        [],
        Bool,
        "false",
        "run the embedded HTTP metadata server",
        |c, v, flag| c.enable_http_metadata_server = parse_bool(flag, v)?
    ),
    flag!(
        "http_metadata_server_host",
        [],
        Value,
        "0.0.0.0",
        "metadata server bind address (giving it starts the server)",
        |c, v, flag| c.http_metadata_server_host = host(flag, v)?
    ),
    flag!(
        "http_metadata_server_port",
        [],
        Value,
        "8080",
        "metadata server port (giving it starts the server)",
        |c, v, flag| c.http_metadata_server_port = port(flag, v)?
    ),
    flag!(
        "tls_cert_file",
        [],
        Value,
        "",
        "PEM certificate (chain): TLS on the rpc, admin and metadata ports (with --tls_key_file)",
        |c, v, flag| c.tls_cert_file = v.trim().to_string()
    ),
    flag!(
        "tls_key_file",
        [],
        Value,
        "",
        "PEM private key of --tls_cert_file",
        |c, v, flag| c.tls_key_file = v.trim().to_string()
    ),
    flag!(
        "tls_ca_file",
        [],
        Value,
        "",
        "PEM CA certificates: clients must present a certificate one of them signed (mutual TLS)",
        |c, v, flag| c.tls_ca_file = v.trim().to_string()
    ),
    flag!(
        "default_kv_lease_ttl",
        [],
        Value,
        "10000",
        "lease granted by exist/get: ms, or 500ms / 10s / 1m",
        |c, v, flag| c.default_kv_lease_ttl = millis(flag, v)?
    ),
    flag!(
        "default_kv_soft_pin_ttl",
        [],
        Value,
        "1800000",
        "soft-pin TTL when a put asks for one without a TTL: ms or a duration",
        |c, v, flag| c.default_kv_soft_pin_ttl = millis(flag, v)?
    ),
    flag!(
        "max_kv_soft_pin_ttl",
        [],
        Value,
        "86400000",
        "longest soft-pin TTL a put may ask for: ms or a duration",
        |c, v, flag| c.max_kv_soft_pin_ttl = millis(flag, v)?
    ),
    flag!(
        "allow_evict_soft_pinned_objects",
        [],
        Bool,
        "true",
        "a second eviction pass may take soft-pinned objects",
        |c, v, flag| c.allow_evict_soft_pinned_objects = parse_bool(flag, v)?
    ),
    flag!(
        "eviction_high_watermark_ratio",
        [],
        Value,
        "0.9",
        "usage ratio that starts eviction",
        |c, v, flag| c.eviction_high_watermark_ratio = ratio(flag, v)?
    ),
    flag!(
        "eviction_ratio",
        [],
        Value,
        "0.05",
        "share of capacity evicted per round",
        |c, v, flag| c.eviction_ratio = ratio(flag, v)?
    ),
    flag!(
        "eviction_policy",
        [],
        Value,
        "2q",
        "which objects eviction takes first: 2q (one-hit blocks before reused ones) or lru (least recently used)",
        |c, v, flag| c.eviction_policy = crate::eviction::PolicyKind::parse(flag, v)?
    ),
    flag!(
        "client_ttl",
        [],
        Value,
        "10",
        "seconds without heartbeat before a client's segments are unmounted (or a duration)",
        |c, v, flag| c.client_ttl = secs(flag, v)?
    ),
    flag!(
        "put_start_discard_timeout_sec",
        [],
        Value,
        "30",
        "seconds after which a stuck put may be taken over",
        |c, v, flag| c.put_start_discard_timeout = secs(flag, v)?
    ),
    flag!(
        "put_start_release_timeout_sec",
        [],
        Value,
        "600",
        "seconds after which a stuck put's space is freed",
        |c, v, flag| c.put_start_release_timeout = secs(flag, v)?
    ),
    flag!(
        "allocation_strategy",
        [],
        Value,
        "random",
        "replica placement: random or free_ratio_first",
        |c, v, flag| c.allocation_strategy = AllocationStrategy::parse(v)?
    ),
    flag!(
        "index_memory_limit",
        [],
        Value,
        "auto",
        "memory the object index may use (auto = a quarter of RAM, 0 = no limit, or a size like 8GB); a put of a new key beyond it evicts LRU objects",
        |c, v, flag| c.index_memory_limit = IndexMemoryLimit::parse(flag, v)?
    ),
    flag!(
        "enable_ha",
        [],
        Bool,
        "false",
        "high availability through etcd leader election",
        |c, v, flag| c.enable_ha = parse_bool(flag, v)?
    ),
    flag!(
        "etcd_endpoints",
        [],
        Value,
        "",
        "etcd endpoints for HA, ';'-separated (h1:2379;h2:2379)",
        |c, v, flag| c.etcd_endpoints = endpoints(v)
    ),
    flag!(
        "cluster_id",
        [],
        Value,
        "mooncake_cluster",
        "cluster name in the etcd keys",
        |c, v, flag| c.cluster_id = v.trim().to_string()
    ),
    flag!(
        "ha_lease_ttl_sec",
        [],
        Value,
        "3",
        "HA leader lease in seconds (2-300): a killed leader is replaced about this long after it dies",
        |c, v, flag| c.ha_lease_ttl = secs(flag, v)?
    ),
    flag!(
        "segment_restart_grace_sec",
        [],
        Value,
        "60",
        "seconds a segment whose owner went away without unmounting keeps its objects for the owner to come back with the same memory (0 = drop at once)",
        |c, v, flag| c.segment_restart_grace = secs(flag, v)?
    ),
    flag!(
        "grant_ttl_sec",
        [],
        Value,
        "60",
        "seconds a tenant's grant to an allocation on a store's data port stays good (1-3600; stores allow 30 s of clock difference on top)",
        |c, v, flag| c.grant_ttl = secs(flag, v)?
    ),
    flag!(
        "enable_offload",
        [],
        Bool,
        "false",
        "the SSD tier: owners started with MOONCAKE_OFFLOAD_FILE_STORAGE_PATH keep disk replicas of objects evicted from DRAM",
        |c, v, flag| c.enable_offload = parse_bool(flag, v)?
    ),
    flag!(
        "offload_on_evict",
        [],
        Bool,
        "false",
        "write objects to the SSD tier only as DRAM nears its high watermark (false: right after each put)",
        |c, v, flag| c.offload_on_evict = parse_bool(flag, v)?
    ),
    flag!(
        "promotion_on_hit",
        [],
        Bool,
        "false",
        "copy an object read from the SSD tier back into DRAM",
        |c, v, flag| c.promotion_on_hit = parse_bool(flag, v)?
    ),
    flag!(
        "enable_snapshot",
        [],
        Bool,
        "false",
        "keep the index on disk in --snapshot_backup_dir (a snapshot plus a log of every change): a restarted master serves the same objects",
        |c, v, flag| c.enable_snapshot = parse_bool(flag, v)?
    ),
    flag!(
        "snapshot_backup_dir",
        [],
        Value,
        "",
        "directory of the on-disk index (--enable_snapshot)",
        |c, v, flag| c.snapshot_backup_dir = v.trim().to_string()
    ),
    flag!(
        "snapshot_interval_seconds",
        [],
        Value,
        "600",
        "how often the on-disk log is folded into a fresh snapshot (seconds or a duration)",
        |c, v, flag| c.snapshot_interval = secs(flag, v)?
    ),
    flag!(
        "auth_token_file",
        [],
        Value,
        "",
        "turns authentication on: a file of accepted tokens, one `token` (the cluster tenant's) or `tenant:token` per line; re-read when it changes",
        |c, v, flag| c.auth_token_file = v.trim().to_string()
    ),
    flag!(
        "config_path",
        ["conf_path"],
        Value,
        "",
        "JSON or YAML file with the same keys; flags override it",
        |c, v, flag| c.config_path = v.trim().to_string()
    ),
];

/// The row for `name` or one of its aliases.
pub fn lookup(name: &str) -> Option<&'static FlagSpec> {
    FLAGS
        .iter()
        .find(|f| f.name == name || f.aliases.contains(&name))
}

/// The kind of a reference-only flag we accept and ignore.
pub fn compat(name: &str) -> Option<Kind> {
    COMPAT_FLAGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

//! The environment the CLI reads beyond its flags (the only module that reads it):
//! where the pure client it starts registers, as the store daemon's
//! `MOONCAKE_TE_META_DATA_SERVER` / `MOONCAKE_LOCAL_HOSTNAME` do.

use mooncake_common::config::{NodeConfig, P2P_HANDSHAKE};

/// A pure client's node settings for `master`: the metadata server and hostname from
/// the environment (defaults: P2P handshake, `127.0.0.1`), no memory contributed.
pub fn node_config(master: String) -> NodeConfig {
    NodeConfig {
        master_server_address: master,
        metadata_server: std::env::var("MOONCAKE_TE_META_DATA_SERVER")
            .unwrap_or_else(|_| P2P_HANDSHAKE.to_string()),
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: std::env::var("MOONCAKE_LOCAL_HOSTNAME")
            .unwrap_or_else(|_| "127.0.0.1".into()),
        ..NodeConfig::default()
    }
}

//! Helpers shared by the integration tests: engines on 127.0.0.1:0 and patterned buffers.
#![allow(dead_code)]

use mooncake_transfer::{Opcode, TransferConfig, TransferEngine, TransferRequest};
use std::sync::Arc;

/// An engine named `127.0.0.1:<port>` (so P2PHANDSHAKE finds it by name).
pub async fn engine() -> Arc<TransferEngine> {
    engine_with(|_| {}).await
}

pub async fn engine_with(f: impl FnOnce(&mut TransferConfig)) -> Arc<TransferEngine> {
    let mut cfg = TransferConfig::new("127.0.0.1");
    cfg.devices = "127.0.0.1".into();
    f(&mut cfg);
    TransferEngine::start(cfg).await.expect("engine starts")
}

/// Bytes that differ at every position and per seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn req(op: Opcode, local: &[u8], target: &TransferEngine, remote_addr: u64) -> TransferRequest {
    TransferRequest {
        opcode: op,
        local_addr: local.as_ptr() as usize,
        length: local.len(),
        target: target.segment_name().to_string(),
        target_endpoint: None,
        remote_addr,
        grant: None,
    }
}

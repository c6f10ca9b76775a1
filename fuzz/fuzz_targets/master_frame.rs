//! The master's framed protocol: any bytes as one request frame (method path, then the
//! message), answered by a live in-process master with one mounted segment. A decoder
//! or handler that panics, or an answer that is not a well-formed frame, is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_common::types::SegmentDesc;
use mooncake_master::config::MasterConfig;
use mooncake_master::service::framed::answer;
use mooncake_master::Master;
use std::sync::{Arc, OnceLock};

fn master() -> &'static (tokio::runtime::Runtime, Arc<Master>) {
    static M: OnceLock<(tokio::runtime::Runtime, Arc<Master>)> = OnceLock::new();
    M.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let m = rt.block_on(async { Master::new(MasterConfig::default()) });
        let seg = SegmentDesc {
            name: "fuzz-seg".into(),
            owner: "fuzz-owner".into(),
            base: 1 << 30,
            size: 64 << 20,
            protocol: "tcp".into(),
            transport_endpoint: "127.0.0.1:1".into(),
            ..Default::default()
        };
        m.mount_segment("fuzz-client", seg).expect("mount");
        (rt, m)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, m) = master();
    let out = rt.block_on(answer(m, data));
    // Every answer is one frame the client side can decode.
    if mooncake_proto::frame::decode_answer(&out).is_err() {
        panic!(
            "the master answered {} bytes that are not an answer frame",
            out.len()
        );
    }
});

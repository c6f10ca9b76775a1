//! Every request a client sends and every answer a client reads, decoded from any
//! bytes, and the wire-to-domain conversions the master applies to them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_common::types::{ReplicateConfig, SegmentDesc};
use mooncake_proto as p;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = p::PutStartRequest::decode(data) {
        if let Some(c) = r.config.as_ref() {
            let _ = ReplicateConfig::try_from(c);
        }
    }
    if let Ok(r) = p::BatchPutStartRequest::decode(data) {
        if let Some(c) = r.config.as_ref() {
            let _ = ReplicateConfig::try_from(c);
        }
    }
    if let Ok(r) = p::MountSegmentRequest::decode(data) {
        if let Some(s) = r.segment {
            let _ = SegmentDesc::from(s);
        }
    }
    let _ = p::BatchKeyRequest::decode(data);
    let _ = p::RemoveRequest::decode(data);
    let _ = p::BatchGetReplicaListResponse::decode(data);
    let _ = p::BatchPutStartResponse::decode(data);
});

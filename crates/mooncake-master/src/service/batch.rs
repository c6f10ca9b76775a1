//! Batch forms: one round trip, results in request order. Mismatched lengths fail
//! every item with -600 (the caller learns which call was malformed, not which item).

use super::counted;
use crate::master::counters::count;
use crate::master::Master;
use mooncake_common::ErrorCode;
use mooncake_proto::{
    BatchCodeResponse, BatchPutEndRequest, BatchPutStartRequest, BatchPutStartResponse,
    PutStartResponse,
};

const BAD: i32 = ErrorCode::InvalidParams as i32;

pub fn starts(m: &Master, r: BatchPutStartRequest, upsert: bool) -> BatchPutStartResponse {
    let results: Vec<PutStartResponse> = if r.keys.len() != r.sizes.len() {
        r.keys
            .iter()
            .map(|_| PutStartResponse {
                code: BAD,
                ..Default::default()
            })
            .collect()
    } else {
        r.keys
            .iter()
            .zip(&r.sizes)
            .map(|(k, &size)| {
                if upsert {
                    m.upsert_start(&r.client_id, k, size, r.config.as_ref())
                } else {
                    m.put_start(&r.client_id, k, size, r.config.as_ref())
                }
            })
            .collect()
    };
    for out in &results {
        if upsert {
            counted!(m, upsert_start, upsert_start_failures, out.code);
        } else {
            counted!(m, put_start, put_start_failures, out.code);
        }
    }
    BatchPutStartResponse { results }
}

#[derive(Debug, Clone, Copy)]
pub enum EndKind {
    PutEnd,
    PutRevoke,
    UpsertEnd,
    UpsertRevoke,
}

pub fn ends(m: &Master, r: BatchPutEndRequest, kind: EndKind) -> BatchCodeResponse {
    let codes: Vec<i32> = if r.keys.len() != r.put_ids.len() {
        vec![BAD; r.keys.len()]
    } else {
        r.keys
            .iter()
            .zip(&r.put_ids)
            .map(|(k, &id)| match kind {
                EndKind::PutEnd | EndKind::UpsertEnd => m.write_end(&r.client_id, k, id),
                EndKind::PutRevoke | EndKind::UpsertRevoke => m.write_revoke(&r.client_id, k, id),
            })
            .collect()
    };
    let kind = match kind {
        EndKind::PutEnd => CodeKind::PutEnd,
        EndKind::PutRevoke => CodeKind::PutRevoke,
        EndKind::UpsertEnd => CodeKind::UpsertEnd,
        EndKind::UpsertRevoke => CodeKind::UpsertRevoke,
    };
    count_codes(m, &codes, kind);
    BatchCodeResponse { codes }
}

/// Which counters a batch of codes goes to.
#[derive(Debug, Clone, Copy)]
pub enum CodeKind {
    PutEnd,
    PutRevoke,
    UpsertEnd,
    UpsertRevoke,
    Exist,
    Remove,
}

pub fn count_codes(m: &Master, codes: &[i32], kind: CodeKind) {
    for &code in codes {
        match kind {
            CodeKind::PutEnd => counted!(m, put_end, put_end_failures, code),
            CodeKind::PutRevoke => counted!(m, put_revoke, put_revoke_failures, code),
            CodeKind::UpsertEnd => counted!(m, upsert_end, upsert_end_failures, code),
            CodeKind::UpsertRevoke => counted!(m, upsert_revoke, upsert_revoke_failures, code),
            CodeKind::Exist => counted!(m, exist, exist_failures, code),
            CodeKind::Remove => counted!(m, remove, remove_failures, code),
        }
    }
}

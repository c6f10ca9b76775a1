//! Batch forms: one round trip, results in request order. Mismatched lengths fail
//! every item with -600 (the caller learns which call was malformed, not which item).

use crate::master::counters::add;
use crate::master::{Master, WriteKind};
use mooncake_common::ErrorCode;
use mooncake_proto::{
    BatchCodeResponse, BatchPutEndRequest, BatchPutStartRequest, BatchPutStartResponse,
    PutStartResponse,
};

const BAD: i32 = ErrorCode::InvalidParams as i32;

pub fn starts(m: &Master, r: BatchPutStartRequest, upsert: bool) -> BatchPutStartResponse {
    let (results, segments): (Vec<PutStartResponse>, _) = if r.keys.len() != r.sizes.len() {
        let bad = r
            .keys
            .iter()
            .map(|_| PutStartResponse {
                code: BAD,
                ..Default::default()
            })
            .collect();
        (bad, Vec::new())
    } else {
        let kind = if upsert {
            WriteKind::Upsert
        } else {
            WriteKind::Put
        };
        let rc = r.config.as_ref();
        if r.segment_table {
            m.batch_write_start_table(kind, &r.client_id, &r.keys, &r.sizes, rc)
        } else {
            let results = m.batch_write_start(kind, &r.client_id, &r.keys, &r.sizes, rc);
            (results, Vec::new())
        }
    };
    let failed = results.iter().filter(|r| r.code < 0).count();
    let kind = if upsert {
        CodeKind::UpsertStart
    } else {
        CodeKind::PutStart
    };
    count_batch(m, results.len(), failed, kind);
    BatchPutStartResponse { results, segments }
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
        let revoke = matches!(kind, EndKind::PutRevoke | EndKind::UpsertRevoke);
        m.batch_write_finish(&r.client_id, &r.keys, &r.put_ids, revoke)
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
    PutStart,
    UpsertStart,
    GetReplicaList,
    PutEnd,
    PutRevoke,
    UpsertEnd,
    UpsertRevoke,
    Exist,
    Remove,
}

/// Counts a batch in bulk: one atomic add per counter, not one per item (a 1024-key
/// exist would otherwise do 1024 read-modify-writes on a shared cache line).
pub fn count_codes(m: &Master, codes: &[i32], kind: CodeKind) {
    count_batch(
        m,
        codes.len(),
        codes.iter().filter(|&&c| c < 0).count(),
        kind,
    );
}

/// Adds `items` requests of `kind`, `failed` of them failures.
pub fn count_batch(m: &Master, items: usize, failed: usize, kind: CodeKind) {
    let c = m.counters();
    let (total, failures) = match kind {
        CodeKind::PutStart => (&c.put_start, &c.put_start_failures),
        CodeKind::UpsertStart => (&c.upsert_start, &c.upsert_start_failures),
        CodeKind::PutEnd => (&c.put_end, &c.put_end_failures),
        CodeKind::PutRevoke => (&c.put_revoke, &c.put_revoke_failures),
        CodeKind::UpsertEnd => (&c.upsert_end, &c.upsert_end_failures),
        CodeKind::UpsertRevoke => (&c.upsert_revoke, &c.upsert_revoke_failures),
        CodeKind::GetReplicaList => (&c.get_replica_list, &c.get_replica_list_failures),
        CodeKind::Exist => (&c.exist, &c.exist_failures),
        CodeKind::Remove => (&c.remove, &c.remove_failures),
    };
    add(total, items as u64);
    if failed > 0 {
        add(failures, failed as u64);
        add(&c.failures, failed as u64);
    }
}

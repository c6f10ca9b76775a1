//! One function per method (and the wire shapes of domain answers: contract codes,
//! replica locations): the wire request in, the [`Master`] operation, the wire
//! answer out, and the method's counters. The gRPC service and the framed protocol
//! both call these (through the gate, `service::run`), so a method is decoded,
//! served and counted the same way whichever protocol carried it.
//!
//! Every handler gets the [`Tenant`] its call runs as: keys are namespaced by it on
//! the way in (`Tenant::key`), and whatever names keys or segments shows only what the
//! tenant may see. The `cluster` tenant (everyone's without authentication) is served
//! exactly as before.
//!
//! Per-item outcomes are contract codes in the answer; a batch whose parallel lists
//! differ in length answers -600 for every item (the caller learns which call was
//! malformed, not which item).

use super::auth::Tenant;
use crate::api::{Placed, Refused};
use crate::master::counters::{add, count};
use crate::master::{Master, WriteKind};
use mooncake_common::ErrorCode;
use mooncake_proto::convert::replicate_config;
use mooncake_proto::status::to_status;
use mooncake_proto::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use tonic::Status;

const BAD: i32 = ErrorCode::InvalidParams as i32;

/// Runs `$body` with `$k` bound to `$keys` as the master stores them for tenant `$t`:
/// the request's own slice for the cluster tenant (no copy), namespaced copies else.
macro_rules! tenant_keys {
    ($t:expr, $keys:expr, |$k:ident| $body:expr) => {
        if $t.is_cluster() {
            let $k = $keys;
            $body
        } else {
            let owned = $t.keys($keys);
            let strs = owned.strs();
            let $k = &strs[..];
            $body
        }
    };
}

macro_rules! counted {
    ($m:expr, $kind:ident, $kind_fail:ident, $code:expr) => {{
        let c = $m.counters();
        count(&c.$kind, &c.$kind_fail, &c.failures, $code);
    }};
}

/// Which counters a batch of outcomes goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CodeKind {
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

/// Adds `items` requests of `kind`, `failed` of them failures: one atomic add per
/// counter, not one per item (a 1024-key exist would otherwise do 1024
/// read-modify-writes on a shared cache line).
pub(crate) fn count_batch(m: &Master, items: usize, failed: usize, kind: CodeKind) {
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

fn count_codes(m: &Master, codes: &[i32], kind: CodeKind) {
    count_batch(
        m,
        codes.len(),
        codes.iter().filter(|&&c| c < 0).count(),
        kind,
    );
}

pub(crate) fn mount_segment(
    m: &Master,
    t: &Tenant,
    r: MountSegmentRequest,
    remount: bool,
) -> Result<MountSegmentResponse, Status> {
    let mut secret = Vec::new();
    let out = match r.segment {
        None => Err(ErrorCode::InvalidParams),
        Some(desc) => match m.segment_tenants.may_claim(t, segment_id(m, &desc.name)) {
            Err(e) => Err(e),
            Ok(()) => {
                let name = desc.name.clone();
                let out = if remount {
                    m.remount_segment(&r.client_id, desc.into())
                } else {
                    m.mount_segment(&r.client_id, desc.into())
                };
                if out.is_ok() {
                    if let Some(seg) = m.segments.by_name(&name) {
                        m.segment_tenants.mounted(t, seg.id);
                    }
                }
                secret = grant_secret(m, &name, &out);
                out
            }
        },
    };
    let code = code_of(&out);
    counted!(m, mount, mount_failures, code);
    Ok(MountSegmentResponse {
        code,
        view_id: m.view_id(),
        grant_secret: secret,
    })
}

/// The grant secret a mount answers (authentication on): a new one whenever the
/// caller (allowed to claim the segment) mounted it or found it mounted already;
/// nothing otherwise. Never the current one: whoever held the name before (say a
/// tenant that mounted it while its real owner was away) must not know the secret
/// the owner's data port checks grants with.
fn grant_secret<T>(m: &Master, name: &str, out: &Result<T, ErrorCode>) -> Vec<u8> {
    if !m.config().tuning.auth.is_on() {
        return Vec::new();
    }
    match out {
        Ok(_) | Err(ErrorCode::SegmentAlreadyExists) => m.grant_secrets.draw(name).to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Adds to each wire replica (of `placed`, in order) the grant of tenant `t` for its
/// allocation. Nothing for the `cluster` tenant (trusted with all memory; also every
/// call without authentication), nor for a segment without a secret yet.
fn with_grants(m: &Master, t: &Tenant, replicas: &mut [Replica], placed: &[Placed]) {
    if t.is_cluster() {
        return;
    }
    for (r, p) in replicas.iter_mut().zip(placed) {
        let d = &p.segment.desc;
        r.grant = m.grant_secrets.sign(
            t.name(),
            &d.name,
            d.base + r.offset,
            r.size,
            r.generation.unwrap_or(0),
            m.config().grant_ttl,
        );
    }
}

pub(crate) fn unmount_segment(
    m: &Master,
    t: &Tenant,
    r: UnmountSegmentRequest,
) -> Result<UnmountSegmentResponse, Status> {
    let out = m
        .segment_tenants
        .may_claim(t, segment_id(m, &r.segment_name))
        .and_then(|()| m.unmount_segment(&r.client_id, &r.segment_name));
    if out.is_ok() {
        m.grant_secrets.forget(&r.segment_name);
    }
    let code = code_of(&out);
    counted!(m, unmount, unmount_failures, code);
    Ok(UnmountSegmentResponse {
        code,
        objects_dropped: out.unwrap_or(0),
    })
}

pub(crate) fn heartbeat(m: &Master, r: HeartbeatRequest) -> Result<HeartbeatResponse, Status> {
    let code = if r.client_id.is_empty() { BAD } else { 0 };
    counted!(m, heartbeat, heartbeat_failures, code);
    if code < 0 {
        return Err(to_status(
            ErrorCode::InvalidParams,
            "heartbeat without client_id",
        ));
    }
    let h = m.heartbeat(&r.client_id);
    // A segment restored without its grant secret (after a restart or a takeover)
    // is mounted again by its owner, which learns a fresh one.
    let remount_needed = h.remount_needed
        || (m.config().tuning.auth.is_on() && m.owns_segment_without_secret(&r.client_id));
    Ok(HeartbeatResponse {
        view_id: h.view_id,
        remount_needed,
    })
}

pub(crate) fn list_segments(
    m: &Master,
    t: &Tenant,
    _: ListSegmentsRequest,
) -> Result<ListSegmentsResponse, Status> {
    let mut segs = m.segments.list();
    if !t.is_cluster() {
        // A tenant sees the segments that may hold its objects: the cluster's, its own.
        segs.retain(|s| t.may_use_segment_of(&m.segment_tenants.of(s.id)));
    }
    segs.sort_by(|a, b| a.desc.name.cmp(&b.desc.name));
    let segments = segs
        .iter()
        .map(|s| SegmentStatus {
            segment: Some((&s.desc).into()),
            used: s.used(),
            client_id: s.client_id.to_string(),
        })
        .collect();
    Ok(ListSegmentsResponse { segments })
}

/// The id of the segment mounted as `name` now, if any.
fn segment_id(m: &Master, name: &str) -> Option<u32> {
    m.segments.by_name(name).map(|s| s.id)
}

fn write_kind(upsert: bool) -> WriteKind {
    if upsert {
        WriteKind::Upsert
    } else {
        WriteKind::Put
    }
}

pub(crate) fn write_start(
    m: &Master,
    t: &Tenant,
    r: PutStartRequest,
    upsert: bool,
) -> Result<PutStartResponse, Status> {
    let key = t.key(&r.key);
    let out = replicate_config(r.config.as_ref())
        .and_then(|rc| m.write_start(write_kind(upsert), &r.client_id, &key, r.size, &rc));
    let code = code_of(&out);
    if upsert {
        counted!(m, upsert_start, upsert_start_failures, code);
    } else {
        counted!(m, put_start, put_start_failures, code);
    }
    Ok(match out {
        Ok(w) => {
            let mut replicas =
                with_generations(Replicas::plain().of(&w.replicas, w.size), &w.generations);
            with_grants(m, t, &mut replicas, &w.replicas);
            PutStartResponse {
                code: 0,
                replicas,
                put_id: w.put_id,
            }
        }
        Err(e) => PutStartResponse {
            code: e.code(),
            ..Default::default()
        },
    })
}

pub(crate) fn batch_write_start(
    m: &Master,
    t: &Tenant,
    r: BatchPutStartRequest,
    upsert: bool,
) -> Result<BatchPutStartResponse, Status> {
    let fail_all = |code: i32| {
        r.keys
            .iter()
            .map(|_| PutStartResponse {
                code,
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    let (results, segments) = if r.keys.len() != r.sizes.len() {
        (fail_all(BAD), Vec::new())
    } else {
        match replicate_config(r.config.as_ref()) {
            Err(e) => (fail_all(e.code()), Vec::new()),
            Ok(rc) => {
                let kind = write_kind(upsert);
                let starts = tenant_keys!(t, &r.keys[..], |keys| m.batch_write_start(
                    kind,
                    &r.client_id,
                    keys,
                    &r.sizes,
                    &rc
                ));
                let mut wire = if r.segment_table {
                    Replicas::with_table()
                } else {
                    Replicas::plain()
                };
                let results = starts
                    .into_iter()
                    .map(|s| match s {
                        Ok(w) => {
                            let mut replicas =
                                with_generations(wire.of(&w.replicas, w.size), &w.generations);
                            with_grants(m, t, &mut replicas, &w.replicas);
                            PutStartResponse {
                                code: 0,
                                replicas,
                                put_id: w.put_id,
                            }
                        }
                        Err(e) => PutStartResponse {
                            code: e.code(),
                            ..Default::default()
                        },
                    })
                    .collect();
                (results, wire.into_table())
            }
        }
    };
    let failed = results.iter().filter(|r| r.code < 0).count();
    let kind = if upsert {
        CodeKind::UpsertStart
    } else {
        CodeKind::PutStart
    };
    count_batch(m, results.len(), failed, kind);
    Ok(BatchPutStartResponse { results, segments })
}

/// How a write ends: which counters, and whether its space is given back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EndKind {
    PutEnd,
    PutRevoke,
    UpsertEnd,
    UpsertRevoke,
}

impl EndKind {
    fn revoke(self) -> bool {
        matches!(self, EndKind::PutRevoke | EndKind::UpsertRevoke)
    }

    fn counters(self) -> CodeKind {
        match self {
            EndKind::PutEnd => CodeKind::PutEnd,
            EndKind::PutRevoke => CodeKind::PutRevoke,
            EndKind::UpsertEnd => CodeKind::UpsertEnd,
            EndKind::UpsertRevoke => CodeKind::UpsertRevoke,
        }
    }
}

pub(crate) fn write_finish(
    m: &Master,
    t: &Tenant,
    r: PutEndRequest,
    kind: EndKind,
) -> Result<CodeResponse, Status> {
    let key = t.key(&r.key);
    let out = if kind.revoke() {
        m.write_revoke(&r.client_id, &key, r.put_id)
    } else {
        m.write_end(&r.client_id, &key, r.put_id)
    };
    let code = code_of(&out);
    count_codes(m, &[code], kind.counters());
    Ok(CodeResponse { code })
}

pub(crate) fn batch_write_finish(
    m: &Master,
    t: &Tenant,
    r: BatchPutEndRequest,
    kind: EndKind,
) -> Result<BatchCodeResponse, Status> {
    let codes: Vec<i32> = if r.keys.len() != r.put_ids.len() {
        vec![BAD; r.keys.len()]
    } else {
        tenant_keys!(t, &r.keys[..], |keys| m
            .batch_write_finish(&r.client_id, keys, &r.put_ids, kind.revoke())
            .iter()
            .map(code_of)
            .collect())
    };
    count_codes(m, &codes, kind.counters());
    Ok(BatchCodeResponse { codes })
}

/// `replicas` (the wire form of a lookup's or a write start's `Placed`) with each
/// one's generation.
fn with_generations(mut replicas: Vec<Replica>, gens: &[u64]) -> Vec<Replica> {
    for (r, g) in replicas.iter_mut().zip(gens) {
        r.generation = Some(*g);
    }
    replicas
}

fn replica_list(
    m: &Master,
    t: &Tenant,
    out: Result<crate::api::ReplicaList, ErrorCode>,
    wire: &mut Replicas,
) -> GetReplicaListResponse {
    match out {
        Ok(l) => {
            let mut replicas = with_generations(wire.of(&l.replicas, l.size), &l.generations);
            with_grants(m, t, &mut replicas, &l.replicas);
            GetReplicaListResponse {
                code: 0,
                replicas,
                size: l.size,
                lease_ttl_ms: l.lease_ttl_ms,
            }
        }
        Err(e) => GetReplicaListResponse {
            code: e.code(),
            ..Default::default()
        },
    }
}

pub(crate) fn get_replica_list(
    m: &Master,
    t: &Tenant,
    r: KeyRequest,
) -> Result<GetReplicaListResponse, Status> {
    let out = replica_list(
        m,
        t,
        m.get_replica_list(&t.key(&r.key)),
        &mut Replicas::plain(),
    );
    counted!(m, get_replica_list, get_replica_list_failures, out.code);
    Ok(out)
}

pub(crate) fn batch_get_replica_list(
    m: &Master,
    t: &Tenant,
    r: BatchKeyRequest,
) -> Result<BatchGetReplicaListResponse, Status> {
    let mut wire = Replicas::plain();
    let results: Vec<_> = tenant_keys!(t, &r.keys[..], |keys| m.batch_get_replica_list(keys))
        .into_iter()
        .map(|o| replica_list(m, t, o, &mut wire))
        .collect();
    let failed = results.iter().filter(|r| r.code < 0).count();
    count_batch(m, results.len(), failed, CodeKind::GetReplicaList);
    Ok(BatchGetReplicaListResponse { results })
}

/// 1 when it exists, 0 when not, the contract code on a bad key.
fn exist_code(out: &Result<bool, ErrorCode>) -> i32 {
    match out {
        Ok(e) => i32::from(*e),
        Err(e) => e.code(),
    }
}

pub(crate) fn exist(m: &Master, t: &Tenant, r: KeyRequest) -> Result<CodeResponse, Status> {
    let code = exist_code(&m.exist(&t.key(&r.key)));
    counted!(m, exist, exist_failures, code);
    Ok(CodeResponse { code })
}

/// `BatchExist` over keys that may be borrowed from the request's bytes (the framed
/// protocol's decoder) or owned (gRPC's).
pub(crate) fn batch_exist<K: AsRef<str>>(
    m: &Master,
    t: &Tenant,
    keys: &[K],
) -> Result<BatchCodeResponse, Status> {
    let codes: Vec<i32> = tenant_keys!(t, keys, |ks| m.batch_exist(ks))
        .iter()
        .map(exist_code)
        .collect();
    count_codes(m, &codes, CodeKind::Exist);
    Ok(BatchCodeResponse { codes })
}

pub(crate) fn remove(m: &Master, t: &Tenant, r: RemoveRequest) -> Result<CodeResponse, Status> {
    let code = code_of(&m.remove(&t.key(&r.key), r.force));
    counted!(m, remove, remove_failures, code);
    Ok(CodeResponse { code })
}

pub(crate) fn batch_remove(
    m: &Master,
    t: &Tenant,
    r: BatchRemoveRequest,
) -> Result<BatchCodeResponse, Status> {
    let codes: Vec<i32> = r
        .keys
        .iter()
        .map(|k| code_of(&m.remove(&t.key(k), r.force)))
        .collect();
    count_codes(m, &codes, CodeKind::Remove);
    Ok(BatchCodeResponse { codes })
}

pub(crate) fn remove_by_regex(
    m: &Master,
    t: &Tenant,
    r: RemoveByRegexRequest,
) -> Result<CountResponse, Status> {
    let out = m.remove_by_regex_of(t.name(), &r.pattern, r.force);
    counted!(m, remove_by_regex, remove_by_regex_failures, code_of(&out));
    Ok(CountResponse {
        count: out.map_or_else(|e| i64::from(e.code()), |n| n as i64),
    })
}

pub(crate) fn remove_all(
    m: &Master,
    t: &Tenant,
    r: RemoveAllRequest,
) -> Result<CountResponse, Status> {
    let count = m.remove_all_of(t.name(), r.force) as i64;
    counted!(m, remove_all, remove_all_failures, 0);
    Ok(CountResponse { count })
}

pub(crate) fn query_key(m: &Master, t: &Tenant, r: KeyRequest) -> Result<QueryKeyResponse, Status> {
    let fail = |e: ErrorCode| QueryKeyResponse {
        code: e.code(),
        ..Default::default()
    };
    if r.key.is_empty() {
        return Ok(fail(ErrorCode::InvalidParams));
    }
    let Some(info) = m.query_key(&t.key(&r.key)) else {
        return Ok(fail(ErrorCode::ObjectNotFound));
    };
    let replicas = info
        .replicas
        .iter()
        .filter_map(|r| {
            let seg = m.segments.by_name(&r.segment)?;
            let grant = (!t.is_cluster())
                .then(|| {
                    m.grant_secrets.sign(
                        t.name(),
                        &seg.desc.name,
                        seg.desc.base + r.offset,
                        r.size,
                        0,
                        m.config().grant_ttl,
                    )
                })
                .flatten();
            Some(Replica {
                segment: Some((&seg.desc).into()),
                offset: r.offset,
                size: r.size,
                segment_index: None,
                generation: None,
                grant,
            })
        })
        .collect();
    Ok(QueryKeyResponse {
        code: 0,
        size: info.size,
        complete: info.complete,
        replicas,
        lease_remaining_ms: info.lease_remaining_ms,
        hard_pinned: info.hard_pinned,
        soft_pinned: info.soft_pinned,
    })
}

pub(crate) fn get_stats(m: &Master, _: GetStatsRequest) -> Result<GetStatsResponse, Status> {
    let s = m.stats();
    Ok(GetStatsResponse {
        key_count: s.key_count,
        soft_pin_key_count: s.soft_pin_key_count,
        allocated_bytes: s.allocated_bytes,
        total_capacity_bytes: s.total_capacity_bytes,
        active_clients: s.active_clients,
        segment_count: s.segment_count,
        view_id: s.view_id,
        evicted_objects: m.counters().evicted_objects.load(Ordering::Relaxed),
        role: "leader".into(),
    })
}

/// A refusal as the status clients recognise (`UNAVAILABLE_IN_CURRENT_MODE`).
pub fn refusal(r: Refused) -> Status {
    to_status(ErrorCode::UnavailableInCurrentMode, r.0)
}

/// The contract code of an outcome: 0, or the error's (negative) code.
pub(crate) fn code_of<T>(out: &Result<T, ErrorCode>) -> i32 {
    match out {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

/// Turns replica locations into wire replicas: each with its segment's descriptor,
/// or (a batch put that asked for a segment table) with the segment's position in
/// a table that lists each distinct segment once.
pub(crate) struct Replicas {
    table: Option<Table>,
}

#[derive(Default)]
struct Table {
    /// segment id -> position in `descs`
    at: HashMap<u32, u32>,
    descs: Vec<SegmentDesc>,
}

impl Replicas {
    pub(crate) fn plain() -> Self {
        Self { table: None }
    }

    pub(crate) fn with_table() -> Self {
        Self {
            table: Some(Table::default()),
        }
    }

    /// The wire form of `placed`, each `size` bytes.
    pub(crate) fn of(&mut self, placed: &[Placed], size: u64) -> Vec<Replica> {
        placed
            .iter()
            .map(|p| {
                let Some(t) = &mut self.table else {
                    return Replica {
                        segment: Some((&p.segment.desc).into()),
                        offset: p.offset,
                        size,
                        segment_index: None,
                        generation: None,
                        grant: None,
                    };
                };
                let next = t.descs.len() as u32;
                let at = *t.at.entry(p.segment.id).or_insert(next);
                if at == next {
                    t.descs.push((&p.segment.desc).into());
                }
                Replica {
                    segment: None,
                    offset: p.offset,
                    size,
                    segment_index: Some(at),
                    generation: None,
                    grant: None,
                }
            })
            .collect()
    }

    /// The segment table's descriptors (empty without a table).
    pub(crate) fn into_table(self) -> Vec<SegmentDesc> {
        self.table.map(|t| t.descs).unwrap_or_default()
    }
}

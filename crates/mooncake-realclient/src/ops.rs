//! The messages between a dummy client and the real client. A request is an op
//! byte and its fields; an answer is the fields of that op's reply. The shapes are
//! documented per op below; `dummy.rs` writes requests and reads answers,
//! `server/dispatch.rs` the other way round.

use crate::wire::{Dec, Enc, WireError};
use mooncake_client::{ReplicateConfig, SoftPin};

/// The first 8 bytes of a connection's first request.
pub const MAGIC: &[u8; 8] = b"MCDUMMY1";
pub const VERSION: u32 = 1;

/// `MAGIC, u32 version, u64 token` -> `u64 instance, str hostname, str ipc_name`.
pub const HELLO: u8 = 1;
/// Unix socket only, with the pool's file descriptor attached:
/// `u64 token, u64 dummy_base, u64 len` -> `i32 code, str message`.
pub const REGISTER_POOL: u8 = 2;
/// `u64 dummy_base` -> `i32`.
pub const UNREGISTER_POOL: u8 = 3;
/// The dummy is closing: its pools are unmapped. -> `i32`.
pub const BYE: u8 = 4;
/// `u8 upsert, rc, n, n x (str key, u32 parts, parts x bytes)` -> `i32 x n`.
pub const PUT_VALUES: u8 = 10;
/// `strs keys` -> `n x (i32 code, bytes value)`.
pub const GET_VALUES: u8 = 11;
/// `strs keys` -> `i32s` (1, 0 or a negative code).
pub const EXIST: u8 = 12;
/// `str key` -> `i64` size or code.
pub const GET_SIZE: u8 = 13;
/// `strs keys, bool force` -> `i32s`.
pub const REMOVE: u8 = 14;
/// `bool force` -> `i64`.
pub const REMOVE_ALL: u8 = 15;
/// `str pattern, bool force` -> `i64`.
pub const REMOVE_BY_REGEX: u8 = 16;
/// `u8 upsert, rc, n, n x (str key, bufs)` -> `i64s` (0 or a code).
pub const PUT_FROM: u8 = 20;
/// `n, n x (str key, bufs)` -> `i64s` (bytes read or a code).
pub const GET_INTO: u8 = 21;
/// `n, n x (str key, u64 src_offset, u64 ptr, u64 len)` -> `i64s`.
pub const GET_RANGES: u8 = 22;
/// -> `i32` (0 healthy, 2 master unreachable).
pub const HEALTH: u8 = 30;
/// `strs keys` -> `n x (i32 code, u64 size, m, m x replica)`, a replica being
/// `str segment, str endpoint, u64 address, u64 size`.
pub const REPLICA_DESC: u8 = 31;
/// -> `u64 hits, u64 misses, u64 stale, u64 entries`: the real client's location
/// cache, which serves every dummy attached to it.
pub const LOCATION_STATS: u8 = 32;

/// Unknown op, or a request the server could not read.
pub const ANSWER_MALFORMED: i32 = -600;

pub fn put_rc(e: &mut Enc, rc: &ReplicateConfig) {
    e.u32(rc.replica_num as u32)
        .bool(rc.with_hard_pin)
        .strs(&rc.preferred_segments);
    match rc.soft_pin {
        SoftPin::Preserve => e.u8(0).u64(0),
        SoftPin::Enable { ttl_ms: None } => e.u8(1).u64(0),
        SoftPin::Enable { ttl_ms: Some(t) } => e.u8(2).u64(t),
        SoftPin::Disable => e.u8(3).u64(0),
    };
}

pub fn get_rc(d: &mut Dec<'_>) -> Result<ReplicateConfig, WireError> {
    let replica_num = d.u32()? as usize;
    let with_hard_pin = d.bool()?;
    let preferred_segments = d.strs()?;
    let kind = d.u8()?;
    let ttl = d.u64()?;
    let soft_pin = match kind {
        0 => SoftPin::Preserve,
        1 => SoftPin::Enable { ttl_ms: None },
        2 => SoftPin::Enable { ttl_ms: Some(ttl) },
        3 => SoftPin::Disable,
        k => return Err(WireError::Malformed(format!("soft pin kind {k}"))),
    };
    Ok(ReplicateConfig {
        replica_num,
        with_hard_pin,
        preferred_segments,
        soft_pin,
        // The dummy protocol does not carry it: only a writer's own retry sets it.
        avoid_segments: Vec::new(),
    })
}

/// One object's buffers: `(address, length)` pairs in the dummy's address space.
pub fn put_bufs(e: &mut Enc, bufs: &[(usize, usize)]) {
    e.len(bufs.len());
    for &(p, l) in bufs {
        e.u64(p as u64).u64(l as u64);
    }
}

pub fn get_bufs(d: &mut Dec<'_>) -> Result<Vec<(u64, u64)>, WireError> {
    let n = d.len(16)?;
    (0..n).map(|_| Ok((d.u64()?, d.u64()?))).collect()
}

/// One replica as `get_replica_desc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub segment: String,
    pub endpoint: String,
    pub address: u64,
    pub size: u64,
}

pub fn put_replica(e: &mut Enc, r: &ReplicaView) {
    e.str(&r.segment)
        .str(&r.endpoint)
        .u64(r.address)
        .u64(r.size);
}

pub fn get_replica(d: &mut Dec<'_>) -> Result<ReplicaView, WireError> {
    Ok(ReplicaView {
        segment: d.string()?,
        endpoint: d.string()?,
        address: d.u64()?,
        size: d.u64()?,
    })
}

/// The view of the master's replica record.
pub fn replica_view(r: &mooncake_proto::Replica) -> ReplicaView {
    let seg = r.segment.clone().unwrap_or_default();
    ReplicaView {
        address: seg.base.wrapping_add(r.offset),
        segment: seg.name,
        endpoint: seg.transport_endpoint,
        size: r.size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_configs_round_trip() {
        for soft_pin in [
            SoftPin::Preserve,
            SoftPin::Enable { ttl_ms: None },
            SoftPin::Enable { ttl_ms: Some(7) },
            SoftPin::Disable,
        ] {
            let rc = ReplicateConfig {
                replica_num: 3,
                with_hard_pin: true,
                preferred_segments: vec!["a:1".into()],
                soft_pin,
                avoid_segments: Vec::new(),
            };
            let mut e = Enc::default();
            put_rc(&mut e, &rc);
            let mut d = Dec::new(&e.buf);
            assert_eq!(get_rc(&mut d).unwrap(), rc);
            d.end().unwrap();
        }
    }
}

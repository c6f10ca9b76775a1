//! Objects and segments as replication records: everything a standby needs to
//! rebuild them (replica locations in allocation units, pins, a write in flight).
//! Leases and LRU order are not replicated: a new term restarts them.

use crate::index::{Object, Replica, SoftPinChange};
use crate::segments::Segment;
use mooncake_proto::{ObjectRecord, ReplicaLoc, SegmentRecord};

/// `pending_soft_pin` values.
pub const SOFT_PRESERVE: i32 = 0;
pub const SOFT_UNTIL: i32 = 1;
pub const SOFT_CLEAR: i32 = 2;

fn locs(replicas: &[Replica]) -> Vec<ReplicaLoc> {
    replicas
        .iter()
        .map(|r| ReplicaLoc {
            segment_id: r.seg,
            offset_units: r.handle.offset,
        })
        .collect()
}

/// The record of `key`'s object as it is now.
pub fn object(key: &str, o: &Object) -> ObjectRecord {
    let mut r = ObjectRecord {
        key: key.to_string(),
        size: o.size,
        replicas: locs(&o.replicas),
        hard_pin: o.hard_pin(),
        soft_pin_until_ms: o.soft_pin_until_ms(),
        ..Default::default()
    };
    if let Some(p) = &o.pending {
        r.pending_put_id = p.put_id;
        r.pending_size = p.size;
        r.pending_replicas = locs(&p.replicas);
        r.pending_hard_pin = p.hard_pin;
        (r.pending_soft_pin, r.pending_soft_pin_until_ms) = match p.soft_pin {
            SoftPinChange::Preserve => (SOFT_PRESERVE, 0),
            SoftPinChange::Until(t) => (SOFT_UNTIL, t),
            SoftPinChange::Clear => (SOFT_CLEAR, 0),
        };
    }
    r
}

pub fn segment(seg: &Segment) -> SegmentRecord {
    SegmentRecord {
        id: seg.id,
        client_id: seg.client_id.to_string(),
        desc: Some(seg.desc.clone()),
    }
}

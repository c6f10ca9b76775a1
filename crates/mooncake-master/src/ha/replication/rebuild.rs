//! A new term's master built from the standby's shadow of the previous leader.
//!
//! - Same `view_id`: stores' heartbeats see no new view, and their `client_id`s are
//!   known again (each gets a fresh `client_ttl` from the takeover), so nobody has to
//!   re-mount. A store that re-mounts anyway with the same client id keeps its
//!   segment and objects (an idempotent mount).
//! - Segments are mounted again from their full descriptors; each allocator is
//!   rebuilt holding exactly the ranges of complete AND in-flight replicas (a slow
//!   writer of the old term still owns its range) with `SegmentAllocator::reproduce`.
//!   A range that cannot be reproduced stays reserved and its replica is dropped;
//!   no range is ever handed out twice.
//! - Objects come back with their pins; every object is leased (and guarded from
//!   eviction) for `default_kv_lease_ttl` from the takeover, since a reader of the
//!   old term may still be copying it. A write in flight keeps its put id, so its
//!   writer can still end or revoke it; its discard timeout restarts.

use super::log::{SOFT_CLEAR, SOFT_UNTIL};
use super::shadow::Shadow;
use crate::alloc::AllocHandle;
use crate::config::MasterConfig;
use crate::index::{Object, Pending, Replica, Replicas, SoftPinChange};
use crate::master::Master;
use crate::segments::{Mounted, Segment};
use mooncake_proto::{ObjectRecord, ReplicaLoc};
use std::collections::HashMap;
use std::sync::Arc;

/// Put ids skipped at a takeover: the old leader may have handed out ids after the
/// last batch this standby saw (their writes were never acknowledged).
const PUT_ID_GAP: u64 = 1 << 32;

/// What a rebuild kept and dropped (logged, and checked by tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub segments: usize,
    pub objects: usize,
    pub in_flight: usize,
    pub dropped_replicas: usize,
    pub dropped_objects: usize,
}

/// One segment's ranges `(offset, units)` and, for each, where it belongs.
type SegmentRanges = (Vec<(u32, u32)>, Vec<Slot>);

/// Which replica list of which object a range belongs to.
#[derive(Clone, Copy)]
struct Slot {
    object: usize,
    pending: bool,
    index: usize,
}

/// Builds the master of a new term from `shadow`.
pub fn master_from(cfg: MasterConfig, shadow: Shadow) -> (Arc<Master>, RebuildReport) {
    let m = Master::with_view_id(cfg, shadow.view_id);
    m.advance_put_ids(shadow.next_put_id.saturating_add(PUT_ID_GAP));
    crate::quota::restore(&m, &shadow.quotas);
    let mut report = RebuildReport::default();
    let now = m.now_ms();
    // Segments, by the old leader's id.
    let mut segs: HashMap<u32, Arc<Segment>> = HashMap::new();
    for (old_id, rec) in &shadow.segments {
        let Some(desc) = rec.desc.clone() else {
            continue;
        };
        let name = desc.name.clone();
        match m.segments.mount(&rec.client_id, desc.into()) {
            Ok(Mounted::New(s)) => {
                m.liveness.add_segment(&rec.client_id, &name, now);
                segs.insert(*old_id, s);
            }
            Ok(Mounted::Existing(_)) | Err(_) => {
                tracing::warn!(segment = %name, "HA rebuild: segment listed twice or invalid; skipped");
            }
        }
    }
    report.segments = segs.len();
    // Every range, per segment.
    let objects: Vec<(String, ObjectRecord)> = shadow.objects.into_iter().collect();
    let mut ranges: HashMap<u32, SegmentRanges> = HashMap::new();
    let mut handles: Vec<[Vec<Option<Replica>>; 2]> = objects
        .iter()
        .map(|(_, r)| {
            [
                vec![None; r.replicas.len()],
                vec![None; r.pending_replicas.len()],
            ]
        })
        .collect();
    for (oi, (_, r)) in objects.iter().enumerate() {
        let lists: [(&[ReplicaLoc], u64, bool); 2] = [
            (&r.replicas, r.size, false),
            (&r.pending_replicas, r.pending_size, true),
        ];
        for (locs, size, pending) in lists {
            for (index, loc) in locs.iter().enumerate() {
                let Some(seg) = segs.get(&loc.segment_id) else {
                    continue;
                };
                let Some(units) = seg.with_allocator(|a| a.units_of(size)) else {
                    continue;
                };
                let e = ranges.entry(loc.segment_id).or_default();
                e.0.push((loc.offset_units, units));
                e.1.push(Slot {
                    object: oi,
                    pending,
                    index,
                });
            }
        }
    }
    for (old_id, (rs, slots)) in ranges {
        let seg = &segs[&old_id];
        let size = seg.capacity();
        let got = seg.with_allocator(|a| match a.reproduce(&rs) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(segment = %seg.desc.name, "HA rebuild: {e}; the segment starts empty");
                if let Ok(fresh) = crate::alloc::SegmentAllocator::new(size) {
                    *a = fresh;
                }
                vec![None; rs.len()]
            }
        });
        for (slot, h) in slots.into_iter().zip(got) {
            let h: Option<AllocHandle> = h;
            match h {
                Some(handle) => {
                    handles[slot.object][usize::from(slot.pending)][slot.index] = Some(Replica {
                        seg: seg.id,
                        handle,
                    });
                }
                None => report.dropped_replicas += 1,
            }
        }
    }
    let lease = m.lease_ms();
    let tick = crate::eviction::EvictState::new(m.eviction.now(), 0, false);
    for ((key, r), [complete, pending]) in objects.into_iter().zip(handles) {
        let complete: Replicas = complete.into_iter().flatten().collect();
        let pending: Replicas = pending.into_iter().flatten().collect();
        let soft_deadline = |t: u64| now + t.saturating_sub(shadow.leader_now_ms);
        let pending = (r.pending_put_id != 0 && !pending.is_empty()).then(|| {
            Box::new(Pending {
                put_id: r.pending_put_id,
                client: 0,
                started_ms: now,
                size: r.pending_size,
                replicas: pending,
                hard_pin: r.pending_hard_pin,
                soft_pin: match r.pending_soft_pin {
                    SOFT_UNTIL => SoftPinChange::Until(soft_deadline(r.pending_soft_pin_until_ms)),
                    SOFT_CLEAR => SoftPinChange::Clear,
                    _ => SoftPinChange::Preserve,
                },
            })
        });
        if complete.is_empty() && pending.is_none() {
            report.dropped_objects += 1;
            tracing::warn!(key = %key, "HA rebuild: object dropped (none of its ranges could be reproduced)");
            continue;
        }
        report.in_flight += usize::from(pending.is_some());
        let was_pending = pending.is_some();
        let mut o = Object::in_progress(
            pending.unwrap_or_else(|| {
                Box::new(Pending {
                    put_id: 0,
                    client: 0,
                    started_ms: now,
                    size: 0,
                    replicas: Replicas::None,
                    hard_pin: false,
                    soft_pin: SoftPinChange::Preserve,
                })
            }),
            tick,
        );
        if !was_pending {
            o.pending = None;
        }
        if !complete.is_empty() {
            o.size = r.size;
            o.replicas = complete;
            let soft = if r.soft_pin_until_ms > shadow.leader_now_ms {
                SoftPinChange::Until(soft_deadline(r.soft_pin_until_ms))
            } else {
                SoftPinChange::Clear
            };
            o.apply_pins(r.hard_pin, soft);
            o.grant_lease(now + lease, now + lease);
        }
        m.index.lock(&key).insert(key.into_boxed_str(), o);
        report.objects += 1;
    }
    (m, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_common::{ReplicateConfig, SegmentDesc};
    use mooncake_proto::SegmentRecord;

    fn desc(name: &str, size: u64) -> SegmentDesc {
        SegmentDesc {
            name: name.into(),
            owner: name.into(),
            size,
            ..Default::default()
        }
    }

    /// A leader with objects (one with two replicas, one in flight) rebuilt on a
    /// standby: same view, same replica offsets, ranges not handed out again.
    #[tokio::test]
    async fn a_rebuilt_master_has_the_same_objects_at_the_same_offsets() {
        let cfg = MasterConfig::default();
        let leader = Master::new(cfg.clone());
        for (c, n) in [("c1", "s1:1"), ("c2", "s2:1")] {
            assert_eq!(leader.mount_segment(c, desc(n, 1 << 20)), Ok(()));
        }
        let rc2 = ReplicateConfig::replicas(2);
        let rc1 = ReplicateConfig::default();
        let mut keys = Vec::new();
        for i in 0..50u64 {
            let key = format!("k{i}");
            let rc = if i % 5 == 0 { &rc2 } else { &rc1 };
            let s = leader
                .put_start("c1", &key, 1000 + i * 37, rc)
                .expect("put_start");
            if i % 7 != 3 {
                assert_eq!(leader.write_end("c1", &key, s.put_id), Ok(()));
            }
            keys.push(key);
        }
        for k in ["k1", "k2"] {
            leader.remove(k, true).expect("remove");
        }
        let mut shadow = Shadow {
            view_id: leader.view_id(),
            leader_now_ms: leader.now_ms(),
            next_put_id: leader.put_id_watermark(),
            ..Default::default()
        };
        for s in leader.segments.list() {
            shadow.segments.insert(
                s.id,
                SegmentRecord {
                    id: s.id,
                    client_id: s.client_id.to_string(),
                    desc: Some((&s.desc).into()),
                },
            );
        }
        for i in 0..crate::index::SHARDS {
            for (k, o) in leader.index.lock_shard(i).iter() {
                shadow
                    .objects
                    .insert(k.to_string(), super::super::log::object_record(k, o));
            }
        }
        let (m, report) = master_from(cfg, shadow);
        assert_eq!(m.view_id(), leader.view_id());
        assert_eq!(report.dropped_replicas, 0);
        assert_eq!(report.objects, 48);
        assert_eq!(m.all_keys(), leader.all_keys());
        for k in &keys {
            assert_eq!(
                m.query_key(k).map(|i| (i.complete, i.replicas)),
                leader.query_key(k).map(|i| (i.complete, i.replicas)),
                "{k}"
            );
        }
        assert_eq!(m.segments.totals(), leader.segments.totals());
        // An in-flight write of the old term can still be ended with its put id.
        let pending_key = "k3";
        let id = leader.index.lock(pending_key)[pending_key]
            .pending
            .as_ref()
            .unwrap()
            .put_id;
        assert_eq!(m.write_end("c1", pending_key, id), Ok(()));
        // New puts never land on a rebuilt range.
        let mut taken: Vec<(String, u64, u64)> = Vec::new();
        for k in m.all_keys() {
            for r in m.query_key(&k).unwrap().replicas {
                taken.push((r.segment, r.offset, r.offset + r.size));
            }
        }
        for i in 0..200 {
            let key = format!("new{i}");
            let Ok(s) = m.put_start("c1", &key, 3000, &rc1) else {
                continue;
            };
            m.write_end("c1", &key, s.put_id).expect("put_end");
            taken.extend(
                m.query_key(&key)
                    .unwrap()
                    .replicas
                    .into_iter()
                    .map(|r| (r.segment, r.offset, r.offset + r.size)),
            );
        }
        taken.sort();
        for w in taken.windows(2) {
            assert!(
                w[0].0 != w[1].0 || w[0].2 <= w[1].1,
                "overlap {:?} {:?}",
                w[0],
                w[1]
            );
        }
        // Heartbeats of the old term's clients: known, same view, no re-mount.
        let hb = m.heartbeat("c1");
        assert!(!hb.remount_needed);
        assert_eq!(hb.view_id, leader.view_id());
    }

    /// How long a takeover's rebuild takes per object (prints; run with
    /// `cargo test --release -p mooncake-master --lib rebuild_time -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn rebuild_time() {
        let n: u64 = 1_000_000;
        let mut shadow = Shadow {
            view_id: 7,
            ..Default::default()
        };
        for s in 0..4u32 {
            shadow.segments.insert(
                s,
                SegmentRecord {
                    id: s,
                    client_id: format!("c{s}"),
                    desc: Some(desc(&format!("s{s}:1"), 64 << 30).into()),
                },
            );
        }
        // 4 KiB objects packed with a one-unit gap, spread over the segments.
        for i in 0..n {
            let seg = (i % 4) as u32;
            let slot = (i / 4) as u32;
            shadow.objects.insert(
                format!("key-{i:012}"),
                ObjectRecord {
                    size: 4096,
                    replicas: vec![ReplicaLoc {
                        segment_id: seg,
                        offset_units: slot * 65,
                    }],
                    ..Default::default()
                },
            );
        }
        let t0 = std::time::Instant::now();
        let (m, r) = master_from(MasterConfig::default(), shadow);
        let took = t0.elapsed();
        assert_eq!(r.objects as u64, n);
        assert_eq!(r.dropped_replicas, 0);
        eprintln!(
            "rebuilt {n} objects in {took:?} ({:?} per object), {} keys",
            took / n as u32,
            m.index.len()
        );
    }
}

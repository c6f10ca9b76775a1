//! Read-only views of the master for the admin port, the CLI and tests.

use super::Master;
use crate::index::{memory, SHARDS};
use serde::Serialize;

/// Cluster-wide numbers (the 10-second log line, `/metrics`, `GetStats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MasterStats {
    pub allocated_bytes: u64,
    pub total_capacity_bytes: u64,
    pub key_count: u64,
    pub soft_pin_key_count: u64,
    pub active_clients: u64,
    pub segment_count: u64,
    pub view_id: u64,
    /// Estimated bytes of the object index (`index::memory`).
    pub index_memory_bytes: u64,
    /// `--index_memory_limit` resolved (0 = no limit).
    pub index_memory_limit_bytes: u64,
    /// The object count that limit allows (0 = no limit).
    pub object_count_limit: u64,
}

/// One mounted segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    pub name: String,
    pub owner: String,
    pub client_id: String,
    pub base: u64,
    pub size: u64,
    pub used: u64,
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaInfo {
    pub segment: String,
    pub offset: u64,
    pub size: u64,
    /// "memory", or "disk" for a replica in the segment owner's SSD tier.
    pub medium: &'static str,
}

/// One object, as `/query_key` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub size: u64,
    pub complete: bool,
    pub replicas: Vec<ReplicaInfo>,
    pub lease_remaining_ms: u64,
    pub hard_pinned: bool,
    pub soft_pinned: bool,
}

impl Master {
    pub fn stats(&self) -> MasterStats {
        let now = self.now_ms();
        let (mut keys, mut soft, mut index_bytes) = (0u64, 0u64, 0u64);
        for i in 0..SHARDS {
            let shard = self.index.lock_shard(i);
            keys += shard.len() as u64;
            index_bytes += memory::table_bytes(&shard) as u64;
            for (k, o) in shard.iter() {
                soft += u64::from(o.is_soft_pinned(now));
                index_bytes += memory::entry_heap_bytes(k, o) as u64;
            }
        }
        let limit = self.index_limit();
        let (used, cap) = self.segments.totals();
        MasterStats {
            allocated_bytes: used,
            total_capacity_bytes: cap,
            key_count: keys,
            soft_pin_key_count: soft,
            active_clients: self.liveness.count() as u64,
            segment_count: self.segments.count() as u64,
            view_id: self.view_id(),
            index_memory_bytes: index_bytes,
            index_memory_limit_bytes: limit.bytes.unwrap_or(0),
            object_count_limit: limit.bytes.map_or(0, |_| limit.objects),
        }
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        let mut v: Vec<SegmentInfo> = self
            .segments
            .list()
            .iter()
            .map(|s| SegmentInfo {
                name: s.desc.name.clone(),
                owner: s.desc.owner.clone(),
                client_id: s.client_id.to_string(),
                base: s.desc.base,
                size: s.capacity(),
                used: s.used(),
                endpoint: s.desc.transport_endpoint.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// An object's metadata, without granting a lease.
    pub fn query_key(&self, key: &str) -> Option<KeyInfo> {
        let now = self.now_ms();
        let shard = self.index.lock(key);
        let Some(o) = shard.get(key) else {
            drop(shard);
            return self.tier_query(key, now);
        };
        let (size, reps) = match (&o.pending, o.is_complete()) {
            (Some(p), false) => (p.size, &p.replicas),
            _ => (o.size, &o.replicas),
        };
        let replicas = reps
            .iter()
            .filter_map(|r| {
                let seg = self.segments.get(r.seg)?;
                Some(ReplicaInfo {
                    segment: seg.desc.name.clone(),
                    offset: seg.offset_of(r.handle),
                    size,
                    medium: "memory",
                })
            })
            .collect::<Vec<_>>();
        let mut info = KeyInfo {
            size,
            complete: o.is_complete(),
            replicas,
            lease_remaining_ms: o.lease_until_ms.saturating_sub(now),
            hard_pinned: o.hard_pin(),
            soft_pinned: o.is_soft_pinned(now),
        };
        drop(shard);
        info.replicas.extend(self.tier_replica_info(key));
        Some(info)
    }

    /// Every key in the index (complete or not), sorted.
    pub fn all_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for i in 0..SHARDS {
            keys.extend(self.index.lock_shard(i).keys().map(|k| k.to_string()));
        }
        keys.sort();
        keys
    }
}

//! Reads: replica lists and existence checks. Both grant a lease of
//! `default_kv_lease_ttl` on complete objects they find (CONTRACT §5): while it runs,
//! remove answers -706 and eviction skips the object.

use super::Master;
use crate::index::Replica;
use mooncake_common::ErrorCode;
use mooncake_proto::GetReplicaListResponse;

fn miss(code: ErrorCode) -> GetReplicaListResponse {
    GetReplicaListResponse {
        code: code.code(),
        ..Default::default()
    }
}

impl Master {
    /// Where a complete object's replicas are. -704 missing, -703 still being written.
    pub fn get_replica_list(&self, key: &str) -> GetReplicaListResponse {
        if key.is_empty() {
            return miss(ErrorCode::InvalidParams);
        }
        let now = self.now_ms();
        let lease = self.lease_ms();
        let tick = self.tick();
        let (size, replicas): (u64, Box<[Replica]>) = {
            let mut shard = self.index.lock(key);
            let Some(o) = shard.get_mut(key) else {
                return miss(ErrorCode::ObjectNotFound);
            };
            if !o.is_complete() {
                return miss(ErrorCode::ReplicaIsNotReady);
            }
            o.grant_lease(now + lease);
            o.last_access = tick;
            (o.size, o.replicas.clone())
        };
        GetReplicaListResponse {
            code: 0,
            replicas: replicas
                .iter()
                .filter_map(|r| self.replica_proto(r, size))
                .collect(),
            size,
            lease_ttl_ms: lease,
        }
    }

    /// 1 when a complete object exists (and leases it), 0 when not (also while it is
    /// being written), negative on a bad key.
    pub fn exist(&self, key: &str) -> i32 {
        if key.is_empty() {
            return ErrorCode::InvalidParams.code();
        }
        let until = self.now_ms() + self.lease_ms();
        let mut shard = self.index.lock(key);
        match shard.get_mut(key) {
            Some(o) if o.is_complete() => {
                o.grant_lease(until);
                o.last_access = self.tick();
                1
            }
            _ => 0,
        }
    }

    /// `exist` for many keys; one clock read and one LRU tick for the whole batch.
    pub fn batch_exist(&self, keys: &[String]) -> Vec<i32> {
        let until = self.now_ms() + self.lease_ms();
        // One LRU tick for the batch: its keys were used together.
        let tick = self.tick();
        keys.iter()
            .map(|key| {
                if key.is_empty() {
                    return ErrorCode::InvalidParams.code();
                }
                let mut shard = self.index.lock(key);
                match shard.get_mut(key.as_str()) {
                    Some(o) if o.is_complete() => {
                        o.grant_lease(until);
                        o.last_access = tick;
                        1
                    }
                    _ => 0,
                }
            })
            .collect()
    }
}

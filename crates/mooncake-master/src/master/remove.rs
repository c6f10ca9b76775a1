//! Removal: one key, a regex over all keys, or everything. A leased object answers
//! -706 unless forced; an object still being written answers -703 and is never
//! removed by the bulk forms (its writer still holds the space).

use super::Master;
use crate::index::{Object, SHARDS};
use mooncake_common::ErrorCode;
use regex::Regex;

impl Master {
    pub fn remove(&self, key: &str, force: bool) -> i32 {
        if key.is_empty() {
            return ErrorCode::InvalidParams.code();
        }
        let now = self.now_ms();
        let mut shard = self.index.lock(key);
        let Some(o) = shard.get(key) else {
            return ErrorCode::ObjectNotFound.code();
        };
        if !o.is_complete() {
            return ErrorCode::ReplicaIsNotReady.code();
        }
        if o.is_leased(now) && !force {
            return ErrorCode::ObjectHasLease.code();
        }
        let o = shard.remove(key);
        drop(shard);
        if let Some(o) = o {
            self.free_object(&o);
        }
        0
    }

    /// Removes every removable key matching `pattern`; the count, or -600 for a bad
    /// pattern.
    pub fn remove_by_regex(&self, pattern: &str, force: bool) -> i64 {
        match Regex::new(pattern) {
            Ok(re) => self.remove_where(force, |k| re.is_match(k)) as i64,
            Err(_) => i64::from(ErrorCode::InvalidParams.code()),
        }
    }

    pub fn remove_all(&self, force: bool) -> i64 {
        self.remove_where(force, |_| true) as i64
    }

    fn remove_where(&self, force: bool, matches: impl Fn(&str) -> bool) -> u64 {
        let now = self.now_ms();
        let mut count = 0;
        for i in 0..SHARDS {
            let mut shard = self.index.lock_shard(i);
            let doomed: Vec<Box<str>> = shard
                .iter()
                .filter(|(k, o)| o.is_complete() && (force || !o.is_leased(now)) && matches(k))
                .map(|(k, _)| k.clone())
                .collect();
            let removed: Vec<Object> = doomed.iter().filter_map(|k| shard.remove(k)).collect();
            drop(shard);
            count += removed.len() as u64;
            for o in &removed {
                self.free_object(o);
            }
        }
        count
    }

    /// Frees all space an object holds (complete replicas and any write in flight).
    pub(crate) fn free_object(&self, o: &Object) {
        self.free_replicas(&o.replicas, o.size);
        if let Some(p) = &o.pending {
            self.free_replicas(&p.replicas, p.size);
        }
    }
}

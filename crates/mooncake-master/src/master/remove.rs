//! Removal: one key, a regex over all keys, or everything. A leased object answers
//! -706 unless forced; an object still being written answers -703 unless forced, and
//! is never removed by the bulk forms (a writer in flight keeps its put through a
//! `remove_all`). A forced remove of one key reclaims a write in flight at once (its
//! space freed; its writer's end answers -704): the way to take back space held by
//! puts that started and never ended (`/get_all_keys` lists their keys).

use super::Master;
use crate::index::{Object, SHARDS};
use mooncake_common::auth::{visible_key, CLUSTER_TENANT};
use mooncake_common::ErrorCode;
use regex::RegexBuilder;

/// The longest pattern `remove_by_regex` compiles. Patterns select key prefixes and
/// families (`^session-42/.*`); a 32 MB one took 3.4 GB to parse before this bound.
pub const MAX_REGEX_LEN: usize = 4096;
/// What the compiled pattern (and its lazy DFA) may take.
const REGEX_MEMORY: usize = 8 << 20;

impl Master {
    pub fn remove(&self, key: &str, force: bool) -> Result<(), ErrorCode> {
        if key.is_empty() {
            return Err(ErrorCode::InvalidParams);
        }
        let now = self.now_ms();
        let mut shard = self.index.lock(key);
        let Some(o) = shard.get(key) else {
            drop(shard);
            // Only in the SSD tier (or nowhere).
            return match self.tier_remove(key, force, now)? {
                true => Ok(()),
                false => Err(ErrorCode::ObjectNotFound),
            };
        };
        if !o.is_complete() && !force {
            return Err(ErrorCode::ReplicaIsNotReady);
        }
        if o.is_leased(now) && !force {
            return Err(ErrorCode::ObjectHasLease);
        }
        let o = shard.remove(key);
        drop(shard);
        if let Some(o) = o {
            self.free_object(&o);
        }
        self.tiers.forget(key);
        Ok(())
    }

    /// Removes every removable key matching `pattern`; how many, or `INVALID_PARAMS`
    /// for a pattern that is not a regex, is longer than [`MAX_REGEX_LEN`], or compiles
    /// to more than the master lets one request take.
    pub fn remove_by_regex(&self, pattern: &str, force: bool) -> Result<u64, ErrorCode> {
        self.remove_by_regex_of(CLUSTER_TENANT, pattern, force)
    }

    /// [`Master::remove_by_regex`] as `tenant` sees the keys: the pattern is matched
    /// against its own keys as it named them; other tenants' keys are never touched
    /// (the cluster tenant sees every key whole).
    pub fn remove_by_regex_of(
        &self,
        tenant: &str,
        pattern: &str,
        force: bool,
    ) -> Result<u64, ErrorCode> {
        if pattern.len() > MAX_REGEX_LEN {
            tracing::warn!(
                len = pattern.len(),
                max = MAX_REGEX_LEN,
                "remove_by_regex: pattern refused as too long"
            );
            return Err(ErrorCode::InvalidParams);
        }
        let re = RegexBuilder::new(pattern)
            .size_limit(REGEX_MEMORY)
            .dfa_size_limit(REGEX_MEMORY)
            .build()
            .map_err(|_| ErrorCode::InvalidParams)?;
        if tenant == CLUSTER_TENANT {
            return Ok(self.remove_where(force, |k| re.is_match(k)));
        }
        Ok(self.remove_where(force, |k| {
            visible_key(tenant, k).is_some_and(|k| re.is_match(k))
        }))
    }

    /// Removes every removable key; how many.
    pub fn remove_all(&self, force: bool) -> u64 {
        self.remove_where(force, |_| true)
    }

    /// Removes every removable key of `tenant` (every key for the cluster tenant).
    pub fn remove_all_of(&self, tenant: &str, force: bool) -> u64 {
        if tenant == CLUSTER_TENANT {
            return self.remove_all(force);
        }
        self.remove_where(force, |k| visible_key(tenant, k).is_some())
    }

    fn remove_where(&self, force: bool, matches: impl Fn(&str) -> bool) -> u64 {
        let now = self.now_ms();
        let mut count = 0;
        // Keys removed from DRAM, so that their SSD copies are not counted twice.
        let tiered = self.tiers.has_owners();
        let mut gone: std::collections::HashSet<Box<str>> = Default::default();
        for i in 0..SHARDS {
            let mut shard = self.index.lock_shard(i);
            let doomed: Vec<Box<str>> = shard
                .iter()
                .filter(|(k, o)| o.is_complete() && (force || !o.is_leased(now)) && matches(k))
                .map(|(k, _)| k.clone())
                .collect();
            let removed: Vec<Object> = doomed.iter().filter_map(|k| shard.remove(k)).collect();
            drop(shard);
            if tiered {
                for k in &doomed {
                    self.tiers.forget(k);
                }
                gone.extend(doomed);
            }
            count += removed.len() as u64;
            for o in &removed {
                self.free_object(o);
            }
        }
        if tiered {
            let disk_only = self
                .tier_remove_where(force, now, &|k| matches(k))
                .into_iter()
                .filter(|k| !gone.contains(k))
                .count();
            count += disk_only as u64;
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

//! Finishing writes: end (the new replicas become the object's) and revoke (the
//! write's space is freed). Both check the writer's `put_id`, so a writer whose put
//! was taken over after the discard timeout gets -601 instead of clobbering.
//!
//! An upsert's old replicas may still be read by a client holding a lease; their
//! space is returned only when that lease runs out (deferred free), so a new put
//! cannot overwrite bytes under a reader.

use super::Master;
use crate::index::Replicas;
use mooncake_common::ErrorCode;

/// Space to free once no reader can hold a lease on it.
#[derive(Debug)]
pub(crate) struct DeferredFree {
    pub until_ms: u64,
    pub size: u64,
    pub replicas: Replicas,
}

impl Master {
    /// Completes a put or upsert: the new replicas become the object's (an upsert's
    /// old replicas are freed). A writer whose put was taken over gets -601.
    pub fn write_end(&self, client_id: &str, key: &str, put_id: u64) -> Result<(), ErrorCode> {
        self.write_end_with(client_id, key, put_id, true)
    }

    /// `write_end` of a promotion from the SSD tier: the value came from the disk
    /// replica, which stays (nothing new to write there).
    pub(crate) fn write_end_promoted(
        &self,
        client_id: &str,
        key: &str,
        put_id: u64,
    ) -> Result<(), ErrorCode> {
        self.write_end_with(client_id, key, put_id, false)
    }

    fn write_end_with(
        &self,
        client_id: &str,
        key: &str,
        put_id: u64,
        new_value: bool,
    ) -> Result<(), ErrorCode> {
        let now = self.now_ms();
        self.liveness.touch(client_id, now);
        if key.is_empty() {
            return Err(ErrorCode::InvalidParams);
        }
        let mut shard = self.index.lock(key);
        let Some(mut o) = shard.edit(key) else {
            return Err(ErrorCode::ObjectNotFound);
        };
        let Some(p) = o.pending.take_if(|p| p.put_id == put_id) else {
            o.unchanged();
            return Err(ErrorCode::IllegalClient);
        };
        let old_size = std::mem::replace(&mut o.size, p.size);
        let old = std::mem::replace(&mut o.replicas, p.replicas);
        o.apply_pins(p.hard_pin, p.soft_pin);
        let lease_until = o.lease_until_ms;
        let (size, replicas) = (o.size, o.replicas.clone());
        drop(o);
        drop(shard);
        if new_value {
            self.tier_put_ended(key, size, &replicas);
        }
        if lease_until > now && !old.is_empty() {
            self.deferred.lock().push(DeferredFree {
                until_ms: lease_until,
                size: old_size,
                replicas: old,
            });
        } else {
            self.free_replicas(&old, old_size);
        }
        Ok(())
    }

    /// Abandons a put or upsert: its space is freed; a first put's object goes away.
    pub fn write_revoke(&self, client_id: &str, key: &str, put_id: u64) -> Result<(), ErrorCode> {
        let now = self.now_ms();
        self.liveness.touch(client_id, now);
        if key.is_empty() {
            return Err(ErrorCode::InvalidParams);
        }
        let mut shard = self.index.lock(key);
        let Some(mut o) = shard.edit(key) else {
            return Err(ErrorCode::ObjectNotFound);
        };
        let Some(p) = o.pending.take_if(|p| p.put_id == put_id) else {
            o.unchanged();
            return Err(ErrorCode::IllegalClient);
        };
        let complete = o.is_complete();
        drop(o);
        if !complete {
            shard.remove(key);
        }
        drop(shard);
        self.free_replicas(&p.replicas, p.size);
        Ok(())
    }
}

impl Master {
    /// `write_end` (`revoke` false) or `write_revoke` for a batch: one liveness touch
    /// and one clock read, each key hashed once and each shard locked once; the space
    /// given back is freed after the shard locks are released. Codes come in the
    /// request's order; `keys` and `put_ids` have the same length.
    pub fn batch_write_finish<K: AsRef<str>>(
        &self,
        client_id: &str,
        keys: &[K],
        put_ids: &[u64],
        revoke: bool,
    ) -> Vec<Result<(), ErrorCode>> {
        debug_assert_eq!(keys.len(), put_ids.len());
        let now = self.now_ms();
        self.liveness.touch(client_id, now);
        let groups = self.index.group(keys);
        let mut codes = vec![Err(ErrorCode::InvalidParams); keys.len()];
        // (lease end, size, replicas) to give back once no shard is locked.
        let mut freed: Vec<(u64, u64, Replicas)> = Vec::new();
        // Ended writes, for the SSD tier (key index, size, replicas).
        let mut ended: Vec<(usize, u64, Replicas)> = Vec::new();
        for (s, positions) in groups.runs() {
            let mut shard = self.index.lock_shard(s);
            for &i in positions {
                let i = i as usize;
                let key = keys[i].as_ref();
                if key.is_empty() {
                    continue;
                }
                let hash = groups.hashes[i];
                let Some(mut o) = shard.edit_hashed(key, hash) else {
                    codes[i] = Err(ErrorCode::ObjectNotFound);
                    continue;
                };
                let Some(p) = o.pending.take_if(|p| p.put_id == put_ids[i]) else {
                    o.unchanged();
                    codes[i] = Err(ErrorCode::IllegalClient);
                    continue;
                };
                codes[i] = Ok(());
                if revoke {
                    let complete = o.is_complete();
                    drop(o);
                    if !complete {
                        shard.remove_hashed(key, hash);
                    }
                    freed.push((0, p.size, p.replicas));
                } else {
                    let old_size = std::mem::replace(&mut o.size, p.size);
                    let old = std::mem::replace(&mut o.replicas, p.replicas);
                    o.apply_pins(p.hard_pin, p.soft_pin);
                    let lease_until = o.lease_until_ms;
                    ended.push((i, o.size, o.replicas.clone()));
                    drop(o);
                    if !old.is_empty() {
                        freed.push((lease_until, old_size, old));
                    }
                }
            }
        }
        for (i, size, replicas) in ended {
            self.tier_put_ended(keys[i].as_ref(), size, &replicas);
        }
        let mut deferred = Vec::new();
        for (until_ms, size, replicas) in freed {
            if until_ms > now {
                deferred.push(DeferredFree {
                    until_ms,
                    size,
                    replicas,
                });
            } else {
                self.free_replicas(&replicas, size);
            }
        }
        if !deferred.is_empty() {
            self.deferred.lock().append(&mut deferred);
        }
        codes
    }

    /// Frees deferred space whose lease ran out; returns how many frees ran.
    pub fn run_deferred_frees(&self) -> usize {
        let now = self.now_ms();
        let due: Vec<DeferredFree> = {
            let mut d = self.deferred.lock();
            if d.is_empty() {
                return 0;
            }
            let (due, keep) = std::mem::take(&mut *d)
                .into_iter()
                .partition(|f| f.until_ms <= now);
            *d = keep;
            due
        };
        for f in &due {
            self.free_replicas(&f.replicas, f.size);
        }
        due.len()
    }
}

//! The stuck-put reaper: a write in flight for longer than
//! `put_start_release_timeout` is abandoned and its space freed (a first put's object
//! disappears; an upsert's old value stays).

use super::Master;
use crate::index::{Pending, Walked, SHARDS};
use crate::lease::ms;

impl Master {
    /// Frees writes older than the release timeout; returns how many.
    pub fn reap_stuck_puts(&self) -> u64 {
        let now = self.now_ms();
        let limit = ms(self.config().put_start_release_timeout);
        let mut reaped = 0;
        for i in 0..SHARDS {
            let mut freed: Vec<Box<Pending>> = Vec::new();
            let mut shard = self.index.lock_shard(i);
            shard.edit_each(|_, o| {
                let stuck = o
                    .pending
                    .as_ref()
                    .is_some_and(|p| now.saturating_sub(p.started_ms) >= limit);
                if !stuck {
                    return Walked::Untouched;
                }
                freed.extend(o.pending.take());
                if o.is_complete() {
                    Walked::Changed
                } else {
                    Walked::Remove
                }
            });
            drop(shard);
            for p in freed {
                reaped += 1;
                self.free_replicas(&p.replicas, p.size);
            }
        }
        reaped
    }
}

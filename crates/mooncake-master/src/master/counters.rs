//! Per-RPC request counters. Plain atomics owned by one `Master`, so that several
//! masters in one test process never mix counts; the admin port exports them.
//! Batch RPCs count one per item.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// One counter per RPC kind, one per failure of that kind, and eviction counts.
        #[derive(Debug, Default)]
        pub struct MasterCounters {
            $($(#[$m])* pub $name: AtomicU64,)*
        }

        impl MasterCounters {
            /// Every counter with its field name, for exporters.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters!(
    put_start,
    put_end,
    put_revoke,
    upsert_start,
    upsert_end,
    upsert_revoke,
    get_replica_list,
    exist,
    remove,
    remove_by_regex,
    remove_all,
    mount,
    unmount,
    heartbeat,
    put_start_failures,
    put_end_failures,
    put_revoke_failures,
    upsert_start_failures,
    upsert_end_failures,
    upsert_revoke_failures,
    get_replica_list_failures,
    exist_failures,
    remove_failures,
    remove_by_regex_failures,
    remove_all_failures,
    mount_failures,
    unmount_failures,
    heartbeat_failures,
    /// All failures of any kind.
    failures,
    eviction_runs,
    evicted_objects,
    evicted_bytes,
    /// Puts that found no space but succeeded after evicting at once.
    sync_evictions,
    /// Objects evicted because their shard was at its share of the object limit.
    limit_evictions,
    /// Clients whose segments were unmounted for missing heartbeats.
    expired_clients,
    /// Segments whose owner came back with the same memory and got its objects back.
    resumed_segments,
);

/// `counter += n`.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Counts one request and, when `code` is negative, one failure of it.
pub fn count(total: &AtomicU64, failures: &AtomicU64, all_failures: &AtomicU64, code: i32) {
    total.fetch_add(1, Ordering::Relaxed);
    if code < 0 {
        failures.fetch_add(1, Ordering::Relaxed);
        all_failures.fetch_add(1, Ordering::Relaxed);
    }
}

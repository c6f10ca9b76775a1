//! Admission for the data listener: a cap on open connections, and which connection
//! gives way when a new one arrives over the cap.
//!
//! Over the cap, the listener closes the connection that has waited longest for its
//! next frame, preferring one that never sent a valid frame, and admits the new one.
//! Neither simpler policy keeps peers working through a flood of sockets that connect
//! and send nothing:
//! - not accepting until a slot frees leaves a real peer queued in the kernel's backlog
//!   behind the flood for as long as the idle timeout (minutes, see
//!   [`crate::TcpTuning::idle_timeout`]);
//! - closing new connections at once refuses every real peer for that long.
//!
//! With eviction, a flood only ever displaces idle connections: a pooled connection
//! that loses its slot is reopened by its owner on the next request (the pool treats
//! it as dead), and a connection serving a frame (its whole header arrived) is never
//! chosen. Only when every connection is serving one is a newcomer closed at once.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// One admitted connection, as the admission table sees it.
pub struct Slot {
    /// Nanoseconds after the table's epoch since which the connection has been waiting
    /// for a frame; 0 while it is serving one. A connection that sent part of a header
    /// is still waiting: only a whole, valid header makes it a frame worth protecting,
    /// so half-sent headers (the cheapest way to hold a slot) stay evictable.
    idle_since: AtomicU64,
    /// Has sent at least one valid frame header.
    served: AtomicBool,
    /// Chosen to give way; set once.
    evicted: AtomicBool,
    /// Wakes the connection's task when it is chosen.
    pub evict: Notify,
    epoch: Instant,
}

impl Slot {
    /// The connection waits for its next frame from now on.
    pub fn idle(&self) {
        let ns = self.epoch.elapsed().as_nanos() as u64;
        self.idle_since.store(ns.max(1), Relaxed);
    }

    /// A valid frame header arrived: the connection serves it until its answer is
    /// sent, and has shown it speaks the protocol.
    pub fn in_frame(&self) {
        self.idle_since.store(0, Relaxed);
        if !self.served.load(Relaxed) {
            self.served.store(true, Relaxed);
        }
    }
}

/// The open connections of one listener.
pub struct ConnTable {
    epoch: Instant,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// Removes its slot from the table when the connection's task ends.
pub struct Registration {
    table: Arc<ConnTable>,
    id: u64,
    pub slot: Arc<Slot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.slots.lock().remove(&self.id);
    }
}

impl ConnTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a new connection, idle from now.
    pub fn register(self: &Arc<Self>) -> Registration {
        let slot = Arc::new(Slot {
            idle_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        slot.idle();
        let id = self.next_id.fetch_add(1, Relaxed);
        self.slots.lock().insert(id, slot.clone());
        Registration {
            table: self.clone(),
            id,
            slot,
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells the connection that should give way to close: the longest idle among
    /// those that never sent a valid frame, else the longest idle of all. `false` when
    /// every connection is inside a frame (nothing may be evicted).
    pub fn evict_one(&self) -> bool {
        let slots = self.slots.lock();
        let victim = slots
            .values()
            .filter(|s| !s.evicted.load(Relaxed))
            .filter_map(|s| {
                let since = s.idle_since.load(Relaxed);
                (since != 0).then_some((s.served.load(Relaxed), since, s))
            })
            .min_by_key(|(served, since, _)| (*served, *since))
            .map(|(_, _, s)| s.clone());
        drop(slots);
        match victim {
            Some(s) => {
                s.evicted.store(true, Relaxed);
                s.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The process's soft limit on open descriptors, if it can be read.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every target
pub fn descriptor_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (rc == 0 && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur as u64)
}

/// `wanted`, lowered to half the descriptor limit so that a full listener still leaves
/// descriptors for outgoing connections, other ports and files (never below 16).
pub fn effective_cap(wanted: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(l) => wanted.min(((l / 2) as usize).max(16)),
        None => wanted,
    }
    .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_give_way_before_peers_and_busy_connections_never() {
        let t = ConnTable::new();
        let peer = t.register();
        peer.slot.in_frame();
        peer.slot.idle();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let stranger = t.register();
        let busy = t.register();
        busy.slot.in_frame();
        assert_eq!(t.len(), 3);
        // the stranger goes first although the peer has been idle longer
        assert!(t.evict_one());
        assert!(stranger.slot.evicted.load(Relaxed));
        assert!(!peer.slot.evicted.load(Relaxed));
        // then the idle peer; never the busy one
        assert!(t.evict_one());
        assert!(peer.slot.evicted.load(Relaxed));
        assert!(!t.evict_one());
        assert!(!busy.slot.evicted.load(Relaxed));
        drop(stranger);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn cap_leaves_room_under_the_descriptor_limit() {
        assert_eq!(effective_cap(4096, Some(1024)), 512);
        assert_eq!(effective_cap(4096, Some(1 << 20)), 4096);
        assert_eq!(effective_cap(4096, None), 4096);
        assert_eq!(effective_cap(4096, Some(8)), 16);
        assert_eq!(effective_cap(0, None), 1);
    }
}

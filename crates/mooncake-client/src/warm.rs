//! Warm-ahead: a background thread that faults in this process's segment a window
//! ahead of the bytes peers have written into it, so a put lands in pages that exist.
//!
//! Why: a page's first write costs far more than the write itself. The kernel
//! allocates and zeroes the page inside the `recv` that copies the put's bytes; on the
//! VMs we measured that ran at ~1 GB/s against ~8 GB/s for a copy into a page that
//! exists, and a put of 32 x 512 KiB into a fresh segment spent about half of the
//! store's time in page faults (a get of the same bytes pays none). Faulting pages in
//! from a thread of our own moves that cost out of the put, into time the store is
//! idle. Why only ahead of the writes: a segment faulted in whole would make an idle
//! store hold its full size (`mooncake_segment::SegmentMemory`), so this thread keeps
//! at most `window` bytes beyond what peers have written so far
//! (`bytes_served_in`): a fresh segment is filled from its start by the master's
//! allocator, so the next puts land there. Under churn (writes that reuse freed space)
//! the count outruns the space really used and the whole segment ends up faulted in,
//! at the pace of the writes.
//!
//! Why at the lowest priority (nice 19): it must never take CPU from the puts it is
//! preparing for; when every core is busy it waits, and a put simply faults its pages
//! in itself as before. Why in small steps under the segment's lock: `close` takes the
//! memory out under that lock, so a step never runs on unmapped memory, and a step is
//! short (2 MiB) so `close` never waits long.

use crate::client::{Client, Inner};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Bytes faulted in per step (and per hold of the segment's lock).
const STEP: u64 = 2 << 20;
/// How often an idle thread looks at the bytes written so far.
const TICK: Duration = Duration::from_millis(10);

/// The running warm-ahead thread; dropping it stops the thread.
pub struct WarmAhead {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WarmAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the populated prefix should end: `window` beyond the bytes written so far,
/// rounded up to a whole step, never beyond the segment.
pub(crate) fn target(size: u64, written: u64, window: u64) -> u64 {
    let want = written.saturating_add(window);
    want.div_ceil(STEP).saturating_mul(STEP).min(size)
}

impl Client {
    /// Starts keeping this client's segment faulted in `window` bytes ahead of the
    /// bytes peers have written into it (module docs). `None` without a segment, with a
    /// zero window, or when no thread could be started (pages then fault in on first
    /// write, as without it).
    pub fn spawn_warm_ahead(&self, window: u64) -> Option<WarmAhead> {
        let size = self.inner.segment.as_ref()?.desc.size;
        if window == 0 || size == 0 {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&self.inner);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mooncake-warm".into())
            .spawn(move || {
                // Safety: lowering this thread's own priority.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
                }
                run(weak, &flag, size, window);
            });
        match thread {
            Ok(t) => Some(WarmAhead {
                stop,
                thread: Some(t),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no warm-ahead thread; pages fault in on first write");
                None
            }
        }
    }
}

fn run(weak: Weak<Inner>, stop: &AtomicBool, size: u64, window: u64) {
    let mut done = 0u64;
    let t = std::time::Instant::now();
    while !stop.load(Ordering::Acquire) {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(seg) = inner.segment.as_ref() else {
            return;
        };
        let written = inner.data.engine.metrics().bytes_served_in;
        let goal = target(size, written, window);
        if done >= goal {
            drop(inner);
            std::thread::sleep(TICK);
            continue;
        }
        let n = STEP.min(goal - done);
        {
            let mem = seg.memory.lock();
            let Some(mem) = mem.as_ref() else { return };
            if let Err(e) = mem.populate(done as usize, n as usize) {
                tracing::debug!(error = %e, "warm-ahead stopped; pages fault in on first write");
                return;
            }
        }
        done += n;
        if done == size {
            tracing::debug!(bytes = done, elapsed = ?t.elapsed(), "whole segment faulted in");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_stays_a_window_ahead_within_the_segment() {
        let mib = 1u64 << 20;
        assert_eq!(target(1024 * mib, 0, 256 * mib), 256 * mib);
        // Rounded up to a whole step.
        assert_eq!(target(1024 * mib, mib + 1, 256 * mib), 258 * mib);
        assert_eq!(target(1024 * mib, 900 * mib, 256 * mib), 1024 * mib);
        assert_eq!(target(1000, u64::MAX, u64::MAX), 1000);
    }
}

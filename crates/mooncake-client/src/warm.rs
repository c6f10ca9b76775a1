//! Warm-ahead: a background thread that faults in this process's segment a window
//! ahead of the furthest byte peers have written into it, so a put lands in pages
//! that exist.
//!
//! Why: a page's first write costs far more than the write itself. The kernel
//! allocates and zeroes the page inside the `recv` that copies the put's bytes; on the
//! VMs we measured that ran at ~1 GB/s against ~8 GB/s for a copy into a page that
//! exists, and a put of 32 x 512 KiB into a fresh segment spent about half of the
//! store's time in page faults (a get of the same bytes pays none). Faulting pages in
//! from a thread of our own moves that cost out of the put, into time the store is
//! idle. Why only ahead of the writes: a segment faulted in whole would make an idle
//! store hold its full size (`mooncake_segment::SegmentMemory`), so this thread keeps
//! at most `window` bytes beyond the end of the furthest write peers have made
//! (`TransferEngine::written_end`): a fresh segment is filled from its start by the
//! master's allocator, so the next puts land there. Why the furthest write and not
//! the bytes written: puts that reuse freed space (after removes, under eviction)
//! land in pages that exist already, and counting their bytes would send the thread
//! on through the rest of the segment, taking CPU from those very puts and holding
//! memory nothing uses yet.
//!
//! Why at idle priority (`SCHED_IDLE`, nice 19 where that is refused): it must never
//! take CPU from the puts it is preparing for. Nice 19 was not enough: the kernel's
//! scheduler lets a running task finish its slice before a woken one of higher
//! priority takes the core, so a store thread (or the master) woken for a put waited
//! behind this one for milliseconds; measured with 1 MiB puts over TCP into a fresh
//! store, one put in twenty took 1.5-8 ms instead of 0.5. A `SCHED_IDLE` task gives
//! way at once. What it risks: a step preempted while it holds the address-space lock
//! (read side) keeps a thread of this process that maps memory waiting until the step
//! gets CPU again; the store's data path maps nothing while it serves puts (its
//! buffers and threads exist before), so that is heap growth or a new thread, rarely.
//!
//! Why in small steps under the segment's lock: `close` takes the memory out under
//! that lock, so a step never runs on unmapped memory, and a step is short (2 MiB) so
//! `close` never waits long.

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

/// Where the populated prefix should end: `window` beyond the furthest write so far,
/// rounded up to a whole step, never beyond the segment.
pub(crate) fn target(size: u64, written: u64, window: u64) -> u64 {
    let want = written.saturating_add(window);
    want.div_ceil(STEP).saturating_mul(STEP).min(size)
}

impl Client {
    /// Starts keeping this client's segment faulted in `window` bytes beyond the
    /// furthest byte peers have written into it (module docs). `None` without a
    /// segment, with a zero window, or when no thread could be started (pages then
    /// fault in on first write, as without it).
    pub fn spawn_warm_ahead(&self, window: u64) -> Option<WarmAhead> {
        let seg = self.inner.segment.as_ref()?;
        let size = seg.desc.size;
        let base = seg.memory.lock().as_ref()?.addr();
        if window == 0 || size == 0 {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&self.inner);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mooncake-warm".into())
            .spawn(move || {
                idle_priority();
                run(weak, &flag, base, size, window);
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

/// Puts the calling thread at the lowest priority there is (module docs).
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // Safety: changes the calling thread's own policy (0 = this thread); needs no
    // privilege.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    let e = std::io::Error::last_os_error();
    tracing::debug!(error = %e, "warm-ahead: no SCHED_IDLE; running at nice 19");
    // Safety: lowering this thread's own priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
}

fn run(weak: Weak<Inner>, stop: &AtomicBool, base: usize, size: u64, window: u64) {
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
        let written = inner.data.engine.written_end(base).unwrap_or(0) as u64;
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

    #[test]
    fn the_thread_runs_at_idle_priority() {
        let policy = std::thread::spawn(|| {
            idle_priority();
            // Safety: reads the calling thread's own policy.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE, "the warm-ahead thread's policy");
        // Only that thread changed: this one keeps the normal policy.
        // Safety: as above, for this thread.
        let here = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(here, libc::SCHED_OTHER);
    }
}

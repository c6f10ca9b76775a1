//! Faulting a mapping's pages in from a background thread, for the segment a process
//! owns (`memory.rs`) and for the same-host segments it maps (`shm.rs`).
//!
//! Why in the background: faulting in a fresh 4 GiB shared-memory segment took 6.5 s on
//! the VMs we measured (two stores starting together: 12 s), and nothing should wait for
//! that. Why at the lowest priority (nice 19): a benchmark or an inference engine that
//! starts using the pool at once must not lose its CPU to it; the pages it touches
//! first it faults in itself. Why in small steps: each `madvise` call holds the
//! process's address-space lock (read side), and a thread that maps or unmaps memory
//! meanwhile (heap growth, thread stacks) waits for the call to end; at the lowest
//! priority a long call could keep it waiting for a long time.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// Bytes faulted in per `madvise` call: about 2,000 pages, a few milliseconds of work.
pub(crate) const STEP: usize = 8 << 20;

/// The `[offset, len)` pieces one pass advises, in order.
pub(crate) fn steps(len: usize, step: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = step.max(1);
    (0..len)
        .step_by(step)
        .map(move |off| (off, step.min(len - off)))
}

/// A running prefault: it can be told to stop and waited for, or left alone.
pub(crate) struct Prefault {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Prefault {
    /// Whether every page was faulted in (or the thread gave up).
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Stops after the current step and waits; the mapping may be unmapped afterwards.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Starts faulting in `[addr, addr+len)` for writing; `keep` lives as long as the
/// thread (a handle that keeps the mapping alive, or `()` when the caller calls
/// [`Prefault::stop`] before unmapping). `None` when no thread could be started: the
/// pages then fault in on first use.
///
/// # Safety
/// The range stays mapped writable until the thread ends: `keep` keeps it mapped, or
/// the caller stops the prefault before unmapping.
pub(crate) unsafe fn spawn<K: Send + 'static>(
    name: &str,
    addr: usize,
    len: usize,
    keep: K,
) -> Option<Prefault> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (stop2, done2) = (stop.clone(), done.clone());
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _keep = keep;
            // Safety: lowering this thread's own priority. Nice 19 still gets a share
            // of CPU, so a step never waits indefinitely.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
            }
            let t = std::time::Instant::now();
            let mut completed = true;
            for (off, n) in steps(len, STEP) {
                if stop2.load(Ordering::Acquire) {
                    completed = false;
                    break;
                }
                // Safety: the caller keeps the range mapped (see above).
                if let Err(e) = unsafe { populate((addr + off) as *mut u8, n) } {
                    tracing::debug!(error = %e, "prefault stopped; pages fault in on first use");
                    completed = false;
                    break;
                }
            }
            if completed {
                tracing::debug!(bytes = len, elapsed = ?t.elapsed(), "pages faulted in");
            }
            done2.store(true, Ordering::Release);
        });
    match spawned {
        Ok(thread) => Some(Prefault { stop, done, thread }),
        Err(e) => {
            tracing::warn!(error = %e, "no prefault thread; pages fault in on first use");
            None
        }
    }
}

/// Faults in `[ptr, ptr+len)` for writing.
///
/// # Safety
/// The range is mapped writable by this process for the whole call.
pub(crate) unsafe fn populate(ptr: *mut u8, len: usize) -> std::io::Result<()> {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    // Safety: the caller's range.
    if unsafe { libc::madvise(ptr.cast(), len, MADV_POPULATE_WRITE) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(err);
    }
    // Older kernels: a write fault per page. Puts may be writing the same pages
    // meanwhile: an atomic `or 0` faults a page in for writing without ever storing
    // over a byte a put wrote.
    for (off, _) in steps(len, 4096) {
        // Safety: inside the caller's range; one-byte atomics need no alignment.
        unsafe { (*(ptr.add(off) as *const AtomicU8)).fetch_or(0, Ordering::Relaxed) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_bounded_and_cover_the_mapping() {
        let four_gib = 4usize << 30;
        let all: Vec<_> = steps(four_gib, STEP).collect();
        assert_eq!(all.len(), four_gib / STEP);
        assert!(all.iter().all(|&(_, l)| l <= STEP && l > 0));
        // Contiguous, in order, and covering every byte, also for a ragged tail.
        for len in [1usize, 4096, STEP, STEP + 4096, four_gib + 12288] {
            let mut next = 0;
            for (off, l) in steps(len, STEP) {
                assert_eq!(off, next);
                next = off + l;
            }
            assert_eq!(next, len, "len {len}");
        }
        assert_eq!(steps(0, STEP).count(), 0);
    }

    #[test]
    fn faults_in_anonymous_memory_and_keeps_its_bytes() {
        let len = 3 * STEP + 4096;
        let mut v = vec![0u8; len];
        v[len - 1] = 7;
        v[0] = 9;
        let p = unsafe { spawn("t-prefault", v.as_mut_ptr() as usize, len, ()) }.unwrap();
        while !p.done() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        p.stop();
        assert_eq!((v[0], v[len - 1]), (9, 7));
    }
}

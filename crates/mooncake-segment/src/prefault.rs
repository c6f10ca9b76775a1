//! Faulting a mapping's pages in: the head of the segment a process owns
//! (`memory.rs`, synchronously) and, from a background thread, the pages of same-host
//! segments it maps (`shm.rs`) that their owner has already used.
//!
//! Why only pages in use: a segment's memory is the pool's, and faulting it all in
//! makes an idle store hold its whole size (3.2 GB of RSS within seconds for the
//! default segment) before it holds a byte; a peer that faulted in every page of a
//! mapped segment would allocate them for the owner. So the owner's pages fault in on
//! first write, and a peer fills its page tables only for pages that already exist.
//! Why in the background: filling a 4 GiB mapping's tables took seconds on the VMs we
//! measured, and nothing should wait for that. Why at the lowest priority (nice 19): a benchmark or an inference engine that
//! starts using the pool at once must not lose its CPU to it; the pages it touches
//! first it faults in itself. Why in small steps: each `madvise` call holds the
//! process's address-space lock (read side), and a thread that maps or unmaps memory
//! meanwhile (heap growth, thread stacks) waits for the call to end; at the lowest
//! priority a long call could keep it waiting for a long time.

use std::sync::atomic::{AtomicU8, Ordering};

/// Bytes faulted in per `madvise` call: about 2,000 pages, a few milliseconds of work.
pub(crate) const STEP: usize = 8 << 20;

/// The `[offset, len)` pieces one pass advises, in order.
pub(crate) fn steps(len: usize, step: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = step.max(1);
    (0..len)
        .step_by(step)
        .map(move |off| (off, step.min(len - off)))
}

/// Starts faulting in, for writing, the pages of `[addr, addr+len)` that are resident
/// already (in the page cache of the file behind the mapping); `keep` lives as long as
/// the thread (a handle that keeps the mapping alive). `None` when no thread could be
/// started: the pages then fault in on first use.
///
/// # Safety
/// The range stays mapped writable until the thread ends (`keep` keeps it mapped).
pub(crate) unsafe fn spawn<K: Send + 'static>(
    name: &str,
    addr: usize,
    len: usize,
    keep: K,
) -> Option<std::thread::JoinHandle<()>> {
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
            for (off, n) in steps(len, STEP) {
                // Safety: `keep` keeps the range mapped (see above).
                if let Err(e) = unsafe { populate_resident((addr + off) as *mut u8, n) } {
                    tracing::debug!(error = %e, "prefault stopped; pages fault in on first use");
                    return;
                }
            }
            tracing::debug!(bytes = len, elapsed = ?t.elapsed(), "used pages faulted in");
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(e) => {
            tracing::warn!(error = %e, "no prefault thread; pages fault in on first use");
            None
        }
    }
}

/// Faults in, for writing, the runs of pages of `[ptr, ptr+len)` that `mincore` reports
/// resident; a page that does not exist yet is left alone (no memory is allocated).
///
/// # Safety
/// The range is mapped writable by this process for the whole call.
pub(crate) unsafe fn populate_resident(ptr: *mut u8, len: usize) -> std::io::Result<()> {
    const PAGE: usize = 4096;
    // mincore wants a page-aligned start: look at whole pages, advise only our range.
    let lead = ptr as usize % PAGE;
    let total = lead + len;
    // Safety: the page holding the caller's first byte is mapped.
    let base = unsafe { ptr.sub(lead) };
    let pages = total.div_ceil(PAGE);
    let mut resident = vec![0u8; pages];
    // Safety: the pages of the caller's mapped range; one byte per page.
    if unsafe { libc::mincore(base.cast(), total, resident.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut page = 0;
    while page < pages {
        if resident[page] & 1 == 0 {
            page += 1;
            continue;
        }
        let start = page;
        while page < pages && resident[page] & 1 != 0 {
            page += 1;
        }
        let (lo, hi) = ((start * PAGE).max(lead), (page * PAGE).min(total));
        // Safety: a sub-range of the caller's range.
        unsafe { populate(base.add(lo), hi - lo) }?;
    }
    Ok(())
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
        let mut v = vec![1u8; len];
        v[len - 1] = 7;
        v[0] = 9;
        let p = unsafe { spawn("t-prefault", v.as_mut_ptr() as usize, len, ()) }.unwrap();
        p.join().unwrap();
        assert_eq!((v[0], v[len - 1]), (9, 7));
    }

    /// Pages of a tmpfs file nobody wrote stay unallocated; pages someone wrote are
    /// faulted in, with their bytes.
    #[test]
    fn only_resident_pages_of_a_shared_file_are_faulted_in() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let Ok(dir) = std::fs::create_dir_all("/dev/shm").map(|_| "/dev/shm") else {
            return;
        };
        let path = format!("{dir}/mc-prefault-resident-{}", std::process::id());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let len = 4 * STEP;
        file.set_len(len as u64).unwrap();
        let map = |f: &std::fs::File| unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            ) as *mut u8
        };
        let (owner, peer) = (map(&file), map(&file));
        assert!(owner as isize != -1 && peer as isize != -1);
        // The owner writes one page in the middle: the only page that exists.
        unsafe { *owner.add(2 * STEP + 8192) = 0x42 };
        unsafe { populate_resident(peer, len) }.unwrap();
        let backed = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            backed <= 64 << 10,
            "{backed} bytes allocated for one written page"
        );
        assert_eq!(unsafe { *peer.add(2 * STEP + 8192) }, 0x42);
        unsafe {
            libc::munmap(owner.cast(), len);
            libc::munmap(peer.cast(), len);
        }
        let _ = std::fs::remove_file(&path);
    }
}

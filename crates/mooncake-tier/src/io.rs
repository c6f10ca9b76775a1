//! How the tier reads its file: page cache first, without waiting; O_DIRECT otherwise.
//!
//! A read first asks whether the page cache holds the bytes (`cachestat`, which reads
//! nothing) and takes them from it with `preadv2(RWF_NOWAIT)`: a range the cache holds
//! whole (a record written or read lately) is a memory copy, faster than any disk
//! read. A range it does not hold is read with O_DIRECT into an aligned
//! buffer: no readahead of bytes nobody asked for, no copy through the page cache, and
//! no filling the cache (and pushing DRAM objects' memory out) with records that are
//! read once. The buffer is kept for the next read (no page faults on a fresh
//! allocation per read), and what the transfer engine sends is a view into it: the
//! bytes are read once, checked in place and sent from there.

use parking_lot::Mutex;
use std::alloc::Layout;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

/// O_DIRECT's alignment of offsets, lengths and buffers (the largest logical block
/// size in use; 512-byte devices accept it too).
pub const ALIGN: u64 = 4096;
/// Buffers kept for reuse, and the largest kept.
const POOL_BUFFERS: usize = 16;
const POOL_MAX_BYTES: usize = 8 << 20;

static POOL: Mutex<Vec<AlignedBuf>> = Mutex::new(Vec::new());

/// Heap bytes aligned to [`ALIGN`], of a fixed capacity.
pub struct AlignedBuf {
    ptr: *mut u8,
    cap: usize,
}

// SAFETY: the buffer is plain heap memory owned by this value.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A buffer of at least `len` bytes, from the pool when one fits.
    pub fn take(len: usize) -> AlignedBuf {
        let cap = (len.max(1) as u64).div_ceil(ALIGN) as usize * ALIGN as usize;
        {
            let mut pool = POOL.lock();
            if let Some(i) = pool.iter().position(|b| b.cap >= cap && b.cap <= 2 * cap) {
                return pool.swap_remove(i);
            }
        }
        let layout = Layout::from_size_align(cap, ALIGN as usize).expect("aligned layout");
        // SAFETY: the layout has a non-zero size. Zeroed (fresh pages from the
        // kernel, no cost to speak of) so that every byte is initialized.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, cap }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The first `len` bytes (at most the capacity).
    pub fn as_slice(&self, len: usize) -> &[u8] {
        assert!(len <= self.cap);
        // SAFETY: within the allocation, all of it initialized (zeroed or read into).
        unsafe { std::slice::from_raw_parts(self.ptr, len) }
    }

    pub fn as_mut_slice(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.cap);
        // SAFETY: as `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.cap <= POOL_MAX_BYTES {
            let mut pool = POOL.lock();
            if pool.len() < POOL_BUFFERS {
                pool.push(AlignedBuf {
                    ptr: self.ptr,
                    cap: self.cap,
                });
                return;
            }
        }
        let layout = Layout::from_size_align(self.cap, ALIGN as usize).expect("aligned layout");
        // SAFETY: allocated in `take` with this layout, and not kept by the pool.
        unsafe { std::alloc::dealloc(self.ptr, layout) }
    }
}

/// What a read did, for the metrics and the measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// The page cache held the whole range.
    Cached,
    /// Read from the device with O_DIRECT.
    Direct,
    /// A plain `pread` (O_DIRECT unavailable on this file system, or refused).
    Buffered,
}

/// `cachestat(2)`'s number, the same on every architecture (Linux 6.5).
const SYS_CACHESTAT: libc::c_long = 451;
/// Set once the kernel has refused `cachestat` (older than 6.5, or filtered).
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// Whether the page cache holds every page of `[offset, offset+len)`, asked without
/// reading anything (`cachestat`); `None` where the kernel cannot tell.
///
/// A `preadv2(RWF_NOWAIT)` cannot be the question: before it answers EAGAIN for pages
/// the cache lacks it starts readahead of them (up to the device's `read_ahead_kb`,
/// megabytes), so a miss that is then read with O_DIRECT was read from the device
/// twice, once into the cache nobody reads from. Asking first keeps a miss at one
/// device read.
pub fn cached_whole(f: &File, offset: u64, len: usize) -> Option<bool> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    if len == 0 {
        return Some(true);
    }
    if NO_CACHESTAT.load(Relaxed) {
        return None;
    }
    let range = Range {
        off: offset,
        len: len as u64,
    };
    let mut st = Stat::default();
    // SAFETY: both structs are the kernel's layout and live across the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            &range as *const Range,
            &mut st as *mut Stat,
            0u32,
        )
    };
    if r != 0 {
        if matches!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP)
        ) {
            NO_CACHESTAT.store(true, Relaxed);
        }
        return None;
    }
    // The kernel counts whole pages: every page the range touches.
    let page = page_size();
    let pages = (offset + len as u64 - 1) / page - offset / page + 1;
    Some(st.nr_cache >= pages)
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as u64
        } else {
            4096
        }
    })
}

/// Reads `len` bytes at `offset` of the file into `buf` (at least `len` bytes) from
/// the page cache only; `Some(n)` bytes read when it held them (a short count at the
/// end of the file), `None` when any of them would need the device.
pub fn read_cached(f: &File, buf: &mut AlignedBuf, offset: u64, len: usize) -> Option<usize> {
    debug_assert!(len <= buf.cap);
    let mut done = 0usize;
    while done < len {
        let iov = libc::iovec {
            // SAFETY: within the buffer's capacity.
            iov_base: unsafe { buf.ptr.add(done) } as *mut libc::c_void,
            iov_len: len - done,
        };
        // SAFETY: one iovec into memory we own, on an open fd.
        let n = unsafe {
            libc::preadv2(
                f.as_raw_fd(),
                &iov,
                1,
                (offset + done as u64) as libc::off_t,
                libc::RWF_NOWAIT,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Some(done),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // EAGAIN: not cached; EOPNOTSUPP/EINVAL: no NOWAIT reads here.
                return None;
            }
        }
        // A short read without an error: the rest is not cached (or the file ends;
        // the caller's slower read tells which).
        if done < len {
            return None;
        }
    }
    Some(done)
}

/// The bytes an O_DIRECT read of `[offset, offset+len)` takes: the aligned span
/// around them.
pub fn direct_span(offset: u64, len: usize) -> usize {
    let start = offset / ALIGN * ALIGN;
    ((offset + len as u64).div_ceil(ALIGN) * ALIGN - start) as usize
}

/// Reads `[offset, offset+len)` of the file with O_DIRECT (`direct` opened with it):
/// the aligned span around it goes into `buf`; the bytes wanted start at the returned
/// index. Fewer bytes than wanted (the file ends) is `UnexpectedEof`.
pub fn read_direct(
    direct: &File,
    buf: &mut AlignedBuf,
    offset: u64,
    len: usize,
) -> std::io::Result<usize> {
    let start = offset / ALIGN * ALIGN;
    let span = direct_span(offset, len);
    if span > buf.cap {
        *buf = AlignedBuf::take(span);
    }
    let mut done = 0usize;
    while done < span {
        // SAFETY: within the buffer's capacity; offsets and lengths stay aligned
        // until a short read at the end of the file.
        let n = unsafe {
            libc::pread(
                direct.as_raw_fd(),
                buf.ptr.add(done) as *mut libc::c_void,
                span - done,
                (start + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
        if !done.is_multiple_of(ALIGN as usize) {
            break; // the end of the file
        }
    }
    let from = (offset - start) as usize;
    if done < from + len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(from)
}

/// Reads `len` bytes at `offset` into `buf` with a plain `pread`.
pub fn read_buffered(
    f: &File,
    buf: &mut AlignedBuf,
    offset: u64,
    len: usize,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if len > buf.cap {
        *buf = AlignedBuf::take(len);
    }
    f.read_exact_at(buf.as_mut_slice(len), offset)
}

/// Opens `path` for O_DIRECT reads and writes; `None` where the file system refuses
/// it (tmpfs).
pub fn open_direct(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// How long one look at the kernel's dirty pages answers for.
const PRESSURE_TTL: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether the machine's page cache holds more dirty and under-writeback bytes than
/// half the point where the kernel starts writing back in the background
/// (`vm.dirty_background_ratio` of memory, or `vm.dirty_background_bytes`): a
/// stream of buffered writes that goes on from here is soon throttled to the
/// device's writeback speed. Looked at at most every 10 ms (`/proc/meminfo`).
///
/// Why: buffered writeback is the slow way to a device. On the measured disk it ran
/// at 491 MB/s, where O_DIRECT writes ran at 2.1 GB/s. A short burst of writes
/// still goes to the cache, which takes it at memory speed. A write that had to
/// wait for the device there halved the rate of a short demotion stream.
pub fn writeback_pressure() -> bool {
    static LAST: Mutex<Option<(std::time::Instant, bool)>> = Mutex::new(None);
    let now = std::time::Instant::now();
    if let Some((at, v)) = *LAST.lock() {
        if now.duration_since(at) < PRESSURE_TTL {
            return v;
        }
    }
    let v = dirty_over_half_background().unwrap_or(false);
    *LAST.lock() = Some((now, v));
    v
}

/// `Dirty + Writeback > background threshold / 2`; `None` where the kernel does not say.
fn dirty_over_half_background() -> Option<bool> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let dirty = (kib("Dirty:")? + kib("Writeback:")?) * 1024;
    let sysctl = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let threshold = match sysctl("dirty_background_bytes") {
        Some(b) if b > 0 => b,
        _ => {
            // The kernel takes the ratio of the memory it could dirty; free plus
            // page cache is close to it and always at most memory.
            let dirtyable = (kib("MemFree:")? + kib("Cached:")?) * 1024;
            dirtyable / 100 * sysctl("dirty_background_ratio").unwrap_or(10)
        }
    };
    Some(dirty > threshold / 2)
}

/// The last page a direct write sent to the file: the next record placed after it
/// shares it, and takes its bytes from here rather than from the disk.
///
/// Why: a direct write drops the page cache's copy of the pages it writes, so the
/// read of the neighbour's bytes in a record's first page went to the device, a
/// synchronous read for every record (the master places records one after
/// another). Whoever holds it is the only writer of the file (its bytes are the
/// file's only while nobody else writes).
#[derive(Default)]
pub struct LastPage {
    at: Option<u64>,
    bytes: Vec<u8>,
}

impl LastPage {
    /// Something else wrote to the file: what is kept may be out of date.
    pub fn forget(&mut self) {
        self.at = None;
    }
}

/// A record's bytes laid out in an aligned buffer for one O_DIRECT write of its whole
/// pages: made ahead of its turn ([`DirectWrite::new`]), written in it
/// ([`write_direct`]), where the neighbours' bytes around it are filled in.
pub struct DirectWrite {
    buf: AlignedBuf,
    offset: u64,
    len: usize,
}

impl DirectWrite {
    /// `fill` puts the `len` bytes to write at `offset` in place (it is given exactly
    /// `len` bytes of the aligned buffer).
    pub fn new(offset: u64, len: usize, fill: impl FnOnce(&mut [u8])) -> DirectWrite {
        let span = direct_span(offset, len.max(1));
        let lead = (offset % ALIGN) as usize;
        let mut buf = AlignedBuf::take(span);
        fill(&mut buf.as_mut_slice(span)[lead..lead + len]);
        DirectWrite { buf, offset, len }
    }

    /// The bytes to write (for a write through the page cache instead).
    pub fn bytes(&self) -> &[u8] {
        let lead = (self.offset % ALIGN) as usize;
        &self.buf.as_slice(lead + self.len)[lead..]
    }
}

/// Writes `w` with O_DIRECT (`direct` opened with it), as whole pages: the bytes of
/// the first and last page outside the record are read first, from `last` when it
/// holds that page or else through `buffered` (another record's, or zeros past the
/// end of the file), and written back unchanged. The caller keeps other writers of
/// the file out meanwhile (a write in between to those neighbouring bytes would be
/// undone).
pub fn write_direct(
    direct: &File,
    buffered: &File,
    last: &mut LastPage,
    w: &mut DirectWrite,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if w.len == 0 {
        return Ok(());
    }
    let (offset, len) = (w.offset, w.len);
    let start = offset / ALIGN * ALIGN;
    let span = direct_span(offset, len);
    let page = ALIGN as usize;
    let lead = (offset - start) as usize;
    let b = w.buf.as_mut_slice(span);
    // The neighbours' bytes in the first and last page (a pooled buffer holds old
    // bytes: zeros where the file has none).
    let mut edge = |from: usize, keep: std::ops::Range<usize>| -> std::io::Result<()> {
        let p = &mut b[from..from + page];
        let mut got = [0u8; ALIGN as usize];
        if last.at == Some(start + from as u64) {
            got.copy_from_slice(&last.bytes);
        } else {
            let mut done = 0;
            while done < page {
                match buffered.read_at(&mut got[done..], start + (from + done) as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // Only the bytes outside the record: the record's own are in place.
        let lo = keep.start.clamp(from, from + page) - from;
        let hi = keep.end.clamp(from, from + page) - from;
        p[..lo].copy_from_slice(&got[..lo]);
        p[hi..].copy_from_slice(&got[hi..]);
        Ok(())
    };
    let record = lead..lead + len;
    if lead > 0 {
        edge(0, record.clone())?;
    }
    if !(lead + len).is_multiple_of(page) && (span > page || lead == 0) {
        edge(span - page, record)?;
    }
    last.at = None;
    direct.write_all_at(b, start)?;
    last.bytes.resize(page, 0);
    last.bytes.copy_from_slice(&b[span - page..]);
    last.at = Some(start + (span - page) as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's figures parse (a parse that failed would leave writes in the page
    /// cache however far writeback lags), and one look answers for its 10 ms.
    #[test]
    fn the_dirty_page_figures_are_read() {
        assert!(dirty_over_half_background().is_some());
        let first = writeback_pressure();
        let at = std::time::Instant::now();
        let again = writeback_pressure();
        if at.elapsed() < PRESSURE_TTL {
            assert_eq!(first, again);
        }
    }
}

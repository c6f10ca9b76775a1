//! The memory a process contributes to the pool: one mapping, backed by a file in
//! `/dev/shm` (so same-host clients can map it too) or, without such a directory or
//! without room in it (containers), by an anonymous memfd. The owner holds an exclusive
//! `flock` on the file for its whole life: a mapper can probe it to tell a live owner
//! from a dead one, and a new owner can sweep files left behind by a `kill -9`.
//!
//! The pages of a file-backed segment fault in as they are first written, except the
//! first 64 MiB (where a fresh segment's first objects go), faulted in before the
//! segment is returned (~0.1 s). Faulting in all of it would make an idle store hold
//! its whole size at once (the default 3.2 GB segment: 2.8 GB of RSS after 8 s) and,
//! done before mounting, keep the store out of the pool for seconds (4 GiB: 6.5 s on the
//! VMs we measured). The file's free space was checked first. A memfd's pages (no such
//! check is possible) are all faulted in before, so a shortage is an error then, not a
//! SIGBUS in a put.

use mooncake_common::{ErrorCode, MooncakeError, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

/// File-name prefix of segment files; [`sweep_stale`] only touches these.
pub const SHM_PREFIX: &str = "mooncake-seg-";

/// Bytes at the start of a file-backed segment faulted in before it is returned
/// (~0.1 s here); the rest faults in on first write.
const SYNC_PREFAULT: usize = 64 << 20;

/// A mapped segment. Unmapped (and its file removed) on drop.
pub struct SegmentMemory {
    ptr: *mut u8,
    len: usize,
    path: Option<PathBuf>,
    _file: File,
    /// See [`SegmentMemory::generation`].
    generation: String,
    /// Taken back from a previous run (`retain.rs`).
    adopted: bool,
    /// Leave the file (and its record) in place on drop: the owner exits to restart.
    keep_file: bool,
}

// Safety: the mapping is plain shared memory; concurrent access to distinct byte ranges
// is coordinated by the master's allocator.
unsafe impl Send for SegmentMemory {}
unsafe impl Sync for SegmentMemory {}

fn os_err(what: &str) -> MooncakeError {
    MooncakeError::new(
        ErrorCode::InternalError,
        format!("{what}: {}", std::io::Error::last_os_error()),
    )
}

impl SegmentMemory {
    /// Creates a segment of `len` bytes. `hint` (the hostname) goes into the file name;
    /// `dir` defaults to `/dev/shm`.
    /// When the directory lacks room for `len` bytes (Docker's default `/dev/shm` is
    /// 64 MiB), the segment falls back to an anonymous memfd, logged, with no file to
    /// publish; only a segment that fits nowhere is an error.
    ///
    /// A segment held in memory (a file in tmpfs such as `/dev/shm`, or the memfd) may
    /// not be larger than the machine's memory ([`memory_limit`]: `MemTotal`, lowered
    /// by the cgroup's `memory.max`): such a segment is refused with a message naming
    /// both sizes instead of filling the machine until the kernel kills something. A
    /// file on a disk filesystem with room for it is not bounded by memory.
    pub fn create(hint: &str, len: usize, dir: Option<&str>, hugepages: bool) -> Result<Self> {
        Self::create_with(hint, len, dir, hugepages, free_space, memory_limit())
    }

    /// Like [`SegmentMemory::create`], for memory that outlives a restart of its owner
    /// (`retain.rs`): the file `identity` left in `dir` is taken back when its size is
    /// `len` (its bytes kept, [`SegmentMemory::adopted`] true), otherwise a new file is
    /// created with a record naming `identity` and a fresh generation. A memfd fallback
    /// has no generation (it cannot outlive the process).
    pub fn create_retained(
        identity: &str,
        len: usize,
        dir: Option<&str>,
        hugepages: bool,
    ) -> Result<Self> {
        let d = Path::new(dir.unwrap_or("/dev/shm"));
        if len > 0 && d.is_dir() {
            if let Some(a) = crate::retain::adopt(d, identity, len as u64) {
                let path = a.path.clone();
                let mut seg = Self::map(a.file, Some(a.path), len, hugepages)?;
                seg.generation = a.generation;
                seg.adopted = true;
                tracing::info!(path = %path.display(), generation = %seg.generation, "segment memory taken back from the previous run");
                return Ok(seg);
            }
        }
        let mut seg = Self::create(identity, len, dir, hugepages)?;
        if let Some(p) = seg.path.clone() {
            let generation = uuid::Uuid::new_v4().simple().to_string();
            let record = crate::retain::Record {
                identity: identity.to_string(),
                size: len as u64,
                generation: generation.clone(),
            };
            match crate::retain::write_record(&p, &record) {
                Ok(()) => seg.generation = generation,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot write the segment file's record; its objects will not outlive a restart")
                }
            }
        }
        Ok(seg)
    }

    /// Identifies this memory across restarts of its owner (empty: it cannot outlive
    /// the process). Published in the descriptor; see `retain.rs`.
    pub fn generation(&self) -> &str {
        &self.generation
    }

    /// Whether this memory was taken back from a previous run, bytes and all.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Keeps the file and its record when this is dropped: the owner exits to be
    /// restarted and take the memory back ([`SegmentMemory::create_retained`]).
    pub fn keep_file_on_drop(&mut self) {
        self.keep_file = self.path.is_some() && !self.generation.is_empty();
    }

    /// [`SegmentMemory::create`] with the free-space probe injected (for tests).
    fn create_with(
        hint: &str,
        len: usize,
        dir: Option<&str>,
        hugepages: bool,
        free_space: impl Fn(&Path) -> Option<u128>,
        memory: Option<u64>,
    ) -> Result<Self> {
        if len == 0 {
            return Err(MooncakeError::invalid("segment size must be > 0"));
        }
        let dir = Path::new(dir.unwrap_or("/dev/shm"));
        let on_disk = dir.is_dir() && !is_memory_fs(dir);
        let on_disk_with_room = on_disk && fits(len, free_space(dir)).is_ok();
        if !on_disk_with_room {
            fits_memory(len, memory).map_err(MooncakeError::invalid)?;
        }
        let mut no_room = None;
        if dir.is_dir() {
            sweep_stale(dir);
            match fits(len, free_space(dir)) {
                Ok(()) => {
                    let (file, path) = create_file(dir, hint)?;
                    return Self::map(file, Some(path), len, hugepages);
                }
                Err(why) => {
                    // Docker's default /dev/shm is 64 MiB: still start, just without
                    // the same-host fast path (no file to publish; peers use TCP).
                    tracing::warn!(
                        dir = %dir.display(),
                        "{why}; backing the segment with an anonymous memfd instead (same-host clients will use the transfer engine)"
                    );
                    no_room = Some(why);
                }
            }
        }
        let file = create_memfd()?;
        Self::map(file, None, len, hugepages).map_err(|mut e| {
            if let Some(why) = no_room {
                e.code = ErrorCode::InvalidParams;
                e.message = format!(
                    "{why}, and the anonymous memfd fallback failed: {}",
                    e.message
                );
            }
            e
        })
    }

    /// Locks, sizes and maps the backing file, and faults its head in.
    fn map(file: File, path: Option<PathBuf>, len: usize, hugepages: bool) -> Result<Self> {
        let cleanup = |p: &Option<PathBuf>| {
            if let Some(p) = p {
                let _ = std::fs::remove_file(p);
            }
        };
        let fd = file.as_raw_fd();
        // Safety: plain syscalls on a descriptor we own.
        unsafe {
            if libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) != 0 {
                cleanup(&path);
                return Err(os_err("flock segment file"));
            }
            if libc::ftruncate(fd, len as libc::off_t) != 0 {
                cleanup(&path);
                return Err(os_err("size segment file"));
            }
        }
        // Safety: mapping a file we just sized to `len`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            cleanup(&path);
            return Err(os_err("mmap segment"));
        }
        if hugepages {
            // Best effort: shmem huge pages depend on the kernel's shmem_enabled.
            // Safety: advice on our own mapping.
            let _ = unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) };
        }
        let seg = SegmentMemory {
            ptr: ptr as *mut u8,
            len,
            path,
            _file: file,
            generation: String::new(),
            adopted: false,
            keep_file: false,
        };
        if seg.path.is_some() {
            // The allocator hands out a fresh segment from its start, so the first
            // puts land in the first pages: those are faulted in now, the rest on use.
            let head = len.min(SYNC_PREFAULT);
            // Safety: our own live mapping; a failure leaves the pages to fault on use.
            if let Err(e) = unsafe { crate::prefault::populate(seg.ptr, head) } {
                tracing::debug!(error = %e, "segment head not faulted in; pages fault in on use");
            }
        } else {
            // An anonymous memfd: nothing checked that memory is there for it, so it is
            // faulted in now and a shortage is an error here, not a SIGBUS in a put.
            // Safety: our own live mapping.
            unsafe { crate::prefault::populate(seg.ptr, len) }.map_err(|e| {
                MooncakeError::new(
                    ErrorCode::InternalError,
                    format!("cannot back a segment of {len} bytes: {e}"),
                )
            })?;
        }
        Ok(seg)
    }

    /// The mapping's address in this process (what is registered with the transfer
    /// engine and published as the segment's base).
    #[inline]
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// The segment's size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Faults in `[off, off+len)` (clamped to the segment) for writing: its pages are
    /// allocated and mapped now rather than by the first write into each of them.
    /// Bytes already there are left as they are, so it may run while peers write.
    pub fn populate(&self, off: usize, len: usize) -> std::io::Result<()> {
        let end = off.saturating_add(len).min(self.len);
        if off >= end {
            return Ok(());
        }
        // Safety: `[off, end)` lies inside our live mapping.
        unsafe { crate::prefault::populate(self.ptr.add(off), end - off) }
    }

    /// Never true for a created segment (a size of 0 is refused).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file same-host clients map, when the segment has one.
    #[inline]
    pub fn shm_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Drop for SegmentMemory {
    fn drop(&mut self) {
        // Safety: unmapping our own mapping exactly once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
        if let Some(p) = &self.path {
            if self.keep_file {
                tracing::info!(path = %p.display(), "segment file kept for the restart");
            } else {
                crate::retain::remove(p);
            }
        }
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// Bytes free in `dir`'s filesystem for an unprivileged writer; `None` when unknown.
/// Bytes of memory this process may hold: `MemTotal`, lowered by a cgroup v2
/// `memory.max` (a container's limit); None when neither can be read.
pub fn memory_limit() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// Whether `dir` is on a filesystem whose files live in memory (tmpfs, ramfs,
/// hugetlbfs): a segment file there costs memory like the memfd does.
fn is_memory_fs(dir: &Path) -> bool {
    const TMPFS: i64 = 0x0102_1994;
    const RAMFS: i64 = 0x8584_58f6;
    const HUGETLBFS: i64 = 0x9584_58f6;
    let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return true;
    };
    // Safety: statfs fills the zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return true;
    }
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as i64;
    matches!(t, TMPFS | RAMFS | HUGETLBFS)
}

/// Whether a segment of `len` bytes held in memory fits in `memory` bytes (unknown
/// counts as fitting); the error names both sizes and the ways out.
fn fits_memory(len: usize, memory: Option<u64>) -> std::result::Result<(), String> {
    match memory {
        Some(m) if len as u64 > m => Err(format!(
            "global segment of {len} bytes is larger than this machine's memory ({m} bytes, MemTotal or the cgroup's memory.max): lower MOONCAKE_GLOBAL_SEGMENT_SIZE, or put MOONCAKE_SHM_DIR on a disk filesystem with room for it"
        )),
        _ => Ok(()),
    }
}

fn free_space(dir: &Path) -> Option<u128> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // Safety: statvfs fills the zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u128 * st.f_frsize as u128)
}

/// Whether a segment of `len` bytes fits in a directory with `free` bytes free (unknown
/// counts as fitting); the error says why not.
fn fits(len: usize, free: Option<u128>) -> std::result::Result<(), String> {
    match free {
        Some(free) if free < len as u128 => Err(format!(
            "global segment of {len} bytes does not fit in the shared-memory directory ({free} bytes free)"
        )),
        _ => Ok(()),
    }
}

fn create_file(dir: &Path, hint: &str) -> Result<(File, PathBuf)> {
    let safe: String = hint
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let path = dir.join(format!("{SHM_PREFIX}{safe}-{}", &id[..12]));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(&path)
        .map_err(|e| {
            MooncakeError::new(
                ErrorCode::InternalError,
                format!("cannot create segment file {}: {e}", path.display()),
            )
        })?;
    Ok((file, path))
}

fn create_memfd() -> Result<File> {
    let name = CString::new("mooncake-seg").expect("no NUL");
    // Safety: plain syscall with a valid C string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_err("memfd_create"));
    }
    // Safety: fd is a fresh descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Removes segment files whose owner is gone (nobody holds their lock), except those
/// kept for a restart (a record beside them, `retain.rs`): their owner takes them
/// back, or removes them itself.
pub fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(SHM_PREFIX) || name.ends_with(crate::retain::RECORD_SUFFIX) {
            continue;
        }
        if crate::retain::read_record(&e.path()).is_some() {
            continue;
        }
        let Ok(f) = File::open(e.path()) else {
            continue;
        };
        // Safety: probing a lock on a descriptor we own.
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if free {
            tracing::info!(path = %e.path().display(), "removing stale segment file");
            crate::retain::remove(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mc-seg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A tmpfs directory (as `/dev/shm` is), where faulting in allocates the pages.
    fn shm_dir(tag: &str) -> Option<PathBuf> {
        let d = Path::new("/dev/shm").join(format!("mc-seg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).ok().map(|_| d)
    }

    /// An idle segment holds its head, not its size; a page written later is backed
    /// and keeps its bytes.
    #[test]
    fn pages_fault_in_as_they_are_written() {
        use std::os::unix::fs::MetadataExt;
        let Some(d) = shm_dir("pf") else { return };
        let len = 1 << 30;
        let seg = SegmentMemory::create("host:1", len, d.to_str(), false).unwrap();
        let backed = || std::fs::metadata(seg.shm_path().unwrap()).unwrap().blocks() * 512;
        let idle = backed();
        assert!(
            idle >= SYNC_PREFAULT as u64 && idle < 2 * SYNC_PREFAULT as u64,
            "{idle} of {len} bytes backed by an idle segment"
        );
        let far = len - (8 << 20);
        unsafe { std::ptr::write_bytes((seg.addr() + far) as *mut u8, 0x5A, 4 << 20) };
        assert!(backed() >= idle + (4 << 20));
        let written =
            unsafe { std::slice::from_raw_parts((seg.addr() + far) as *const u8, 4 << 20) };
        assert!(written.iter().all(|b| *b == 0x5A));
        drop(seg);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn dropping_a_large_segment_cleans_up() {
        let Some(d) = shm_dir("pfdrop") else { return };
        let seg = SegmentMemory::create("host:1", 1 << 30, d.to_str(), false).unwrap();
        let path = seg.shm_path().unwrap().to_path_buf();
        drop(seg);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn file_backed_segment_is_shared_and_removed_on_drop() {
        let d = tmpdir("a");
        let seg = SegmentMemory::create("host:1", 1 << 20, d.to_str(), false).unwrap();
        let path = seg.shm_path().unwrap().to_path_buf();
        assert!(path.exists());
        unsafe { std::ptr::write_bytes(seg.addr() as *mut u8, 0xAB, 4096) };
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert!(bytes[..4096].iter().all(|b| *b == 0xAB));
        // A live owner's file survives a sweep.
        sweep_stale(&d);
        assert!(path.exists());
        drop(seg);
        assert!(!path.exists());
    }

    #[test]
    fn a_kept_file_is_taken_back_with_its_bytes_and_generation() {
        let d = tmpdir("keep");
        let mut seg =
            SegmentMemory::create_retained("store@1", 1 << 20, d.to_str(), false).unwrap();
        assert!(!seg.adopted() && !seg.generation().is_empty());
        let (path, generation) = (
            seg.shm_path().unwrap().to_path_buf(),
            seg.generation().to_string(),
        );
        unsafe { std::ptr::write_bytes((seg.addr() as *mut u8).add(4096), 0xC3, 4096) };
        seg.keep_file_on_drop();
        drop(seg);
        assert!(path.exists(), "kept for the restart");
        // A neighbour's start does not sweep it.
        sweep_stale(&d);
        assert!(path.exists());
        let seg = SegmentMemory::create_retained("store@1", 1 << 20, d.to_str(), false).unwrap();
        assert!(seg.adopted());
        assert_eq!(seg.generation(), generation);
        assert_eq!(seg.shm_path().unwrap(), path);
        let bytes =
            unsafe { std::slice::from_raw_parts((seg.addr() as *const u8).add(4096), 4096) };
        assert!(bytes.iter().all(|b| *b == 0xC3), "the bytes survived");
        drop(seg);
        assert!(!path.exists(), "a plain drop removes it");
        // Another size: a new, empty segment under a new generation.
        let mut seg =
            SegmentMemory::create_retained("store@1", 1 << 20, d.to_str(), false).unwrap();
        seg.keep_file_on_drop();
        let old = seg.generation().to_string();
        drop(seg);
        let seg = SegmentMemory::create_retained("store@1", 2 << 20, d.to_str(), false).unwrap();
        assert!(!seg.adopted() && seg.generation() != old);
    }

    #[test]
    fn sweep_removes_files_without_an_owner() {
        let d = tmpdir("b");
        let stale = d.join(format!("{SHM_PREFIX}dead-1"));
        std::fs::write(&stale, b"x").unwrap();
        let other = d.join("not-ours");
        std::fs::write(&other, b"x").unwrap();
        sweep_stale(&d);
        assert!(!stale.exists());
        assert!(other.exists());
    }

    #[test]
    fn memfd_without_a_directory_and_bad_sizes() {
        let seg = SegmentMemory::create("h", 8192, Some("/nonexistent-dir-mc"), false).unwrap();
        assert!(seg.shm_path().is_none());
        assert_eq!(seg.len(), 8192);
        assert!(SegmentMemory::create("h", 0, None, false).is_err());
        let d = tmpdir("c");
        let Err(e) = SegmentMemory::create("h", usize::MAX / 2, d.to_str(), false) else {
            panic!("an impossible size was accepted");
        };
        // Larger than memory and than the directory: refused before anything is
        // created, naming the machine's memory.
        assert!(
            e.message.contains("larger than this machine's memory"),
            "{e}"
        );
    }

    #[test]
    fn a_segment_in_memory_is_bounded_by_the_machines_memory() {
        assert!(fits_memory(64 << 30, Some(24 << 30)).is_err());
        assert!(fits_memory(24 << 30, Some(24 << 30)).is_ok());
        assert!(fits_memory(64 << 30, None).is_ok(), "unknown: not refused");
        // 64 GiB asked of a 24 GiB machine, in a tmpfs directory that claims room:
        // refused at once, nothing created.
        if let Some(d) = shm_dir("big") {
            let Err(e) = SegmentMemory::create_with(
                "h:1",
                64 << 30,
                d.to_str(),
                false,
                |_| Some(1 << 40),
                Some(24 << 30),
            ) else {
                panic!("a segment larger than memory was accepted");
            };
            assert!(
                e.message.contains("larger than this machine's memory"),
                "{e}"
            );
            assert!(e.message.contains("MOONCAKE_GLOBAL_SEGMENT_SIZE"), "{e}");
            let _ = std::fs::remove_dir_all(&d);
        }
        // A file on a disk filesystem with room is not bounded by memory.
        let d = tmpdir("disk");
        if !is_memory_fs(&d) {
            let seg = SegmentMemory::create_with(
                "h:1",
                4 << 20,
                d.to_str(),
                false,
                |_| Some(1 << 40),
                Some(1 << 20),
            )
            .expect("a disk-backed segment larger than the memory bound");
            assert!(seg.shm_path().is_some());
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn fits_decides_on_free_space() {
        assert!(fits(128 << 20, Some(64 << 20)).is_err());
        assert!(fits(128 << 20, Some(128 << 20)).is_ok());
        assert!(
            fits(128 << 20, None).is_ok(),
            "unknown free space: try the file"
        );
    }

    #[test]
    fn a_directory_too_small_falls_back_to_a_memfd() {
        // Docker's 64 MiB /dev/shm and a 128 MiB segment: the store still starts,
        // without a file to publish.
        let d = tmpdir("small");
        let seg = SegmentMemory::create_with(
            "h:1",
            128 << 20,
            d.to_str(),
            false,
            |_| Some(64 << 20),
            None,
        )
        .expect("falls back to a memfd");
        assert!(seg.shm_path().is_none());
        assert_eq!(seg.len(), 128 << 20);
        unsafe { std::ptr::write_bytes(seg.addr() as *mut u8, 7, 4096) };
        let leftovers = std::fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(SHM_PREFIX)
            })
            .count();
        assert_eq!(leftovers, 0, "no file was created in the small directory");
        // Room enough: the file-backed segment as before.
        let seg =
            SegmentMemory::create_with("h:1", 1 << 20, d.to_str(), false, |_| Some(2 << 20), None)
                .unwrap();
        assert!(seg.shm_path().is_some());
    }
}

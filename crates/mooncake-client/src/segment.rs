//! The memory a process contributes to the pool: one mapping, backed by a file in
//! `/dev/shm` (so same-host clients can map it too) or, without such a directory, by an
//! anonymous memfd. The pages are faulted in up front so the first puts pay no page
//! faults. The owner holds an exclusive `flock` on the file for its whole life: a
//! mapper can probe it to tell a live owner from a dead one, and a new owner can sweep
//! files left behind by a `kill -9`.

use mooncake_common::{ErrorCode, MooncakeError, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

/// File-name prefix of segment files; [`sweep_stale`] only touches these.
pub const SHM_PREFIX: &str = "mooncake-seg-";

/// A mapped, pre-faulted segment. Unmapped (and its file removed) on drop.
pub struct SegmentMemory {
    ptr: *mut u8,
    len: usize,
    path: Option<PathBuf>,
    _file: File,
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
    pub fn create(hint: &str, len: usize, dir: Option<&str>, hugepages: bool) -> Result<Self> {
        if len == 0 {
            return Err(MooncakeError::invalid("segment size must be > 0"));
        }
        let dir = Path::new(dir.unwrap_or("/dev/shm"));
        let (file, path) = if dir.is_dir() {
            sweep_stale(dir);
            check_free_space(dir, len)?;
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
            (file, Some(path))
        } else {
            let name = CString::new("mooncake-seg").expect("no NUL");
            // Safety: plain syscall with a valid C string.
            let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Err(os_err("memfd_create"));
            }
            // Safety: fd is a fresh descriptor we own.
            (unsafe { File::from_raw_fd(fd) }, None)
        };
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
        let seg = SegmentMemory {
            ptr: ptr as *mut u8,
            len,
            path,
            _file: file,
        };
        seg.prefault(hugepages)?;
        Ok(seg)
    }

    /// Faults every page in now (huge pages first, when asked and allowed).
    fn prefault(&self, hugepages: bool) -> Result<()> {
        // Safety: the range is our own mapping.
        unsafe {
            if hugepages {
                // Best effort: shmem huge pages depend on the kernel's shmem_enabled.
                let _ = libc::madvise(self.ptr.cast(), self.len, libc::MADV_HUGEPAGE);
            }
            const MADV_POPULATE_WRITE: libc::c_int = 23;
            if libc::madvise(self.ptr.cast(), self.len, MADV_POPULATE_WRITE) == 0 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(MooncakeError::new(
                    ErrorCode::InternalError,
                    format!("cannot back a segment of {} bytes: {err}", self.len),
                ));
            }
            // Older kernels: touch one byte per page (free space was checked before).
            let page = 4096;
            let mut off = 0;
            while off < self.len {
                std::ptr::write_volatile(self.ptr.add(off), 0);
                off += page;
            }
        }
        Ok(())
    }

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file same-host clients map, when the segment has one.
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
            let _ = std::fs::remove_file(p);
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

fn check_free_space(dir: &Path, len: usize) -> Result<()> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| {
        MooncakeError::invalid(format!("bad shared-memory directory {}", dir.display()))
    })?;
    // Safety: statvfs fills the zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Ok(());
    }
    let free = st.f_bavail as u128 * st.f_frsize as u128;
    if free < len as u128 {
        return Err(MooncakeError::new(
            ErrorCode::InvalidParams,
            format!(
                "global segment of {len} bytes does not fit in {} ({free} bytes free)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Removes segment files whose owner is gone (nobody holds their lock).
pub fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(SHM_PREFIX) {
            continue;
        }
        let Ok(f) = File::open(e.path()) else {
            continue;
        };
        // Safety: probing a lock on a descriptor we own.
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if free {
            tracing::info!(path = %e.path().display(), "removing stale segment file");
            let _ = std::fs::remove_file(e.path());
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
        assert!(e.message.contains("does not fit"), "{e}");
    }
}

//! The same-host fast path: segments owned by a process on this host are mapped once
//! (from the `shm_path` their owner published) and read or written with `memcpy`
//! instead of a round trip through the transfer engine.
//!
//! A mapping is only used while its owner lives: the owner holds an exclusive `flock`
//! on the file, and every I/O call probes it once per segment. A dead owner's mapping
//! is dropped and its replicas fail like an unreachable peer would.
//!
//! The path comes from the master, that is from whoever mounted the segment, so it is
//! never trusted by itself (else a mount naming `~/.bashrc` would have every client on
//! the host write put data into it). A file is mapped only when it is a segment file
//! (regular, not a symlink, named like one) inside one of this process's own segment
//! directories (`/dev/shm` and its configured `MOONCAKE_SHM_DIR`, or a directory below
//! one), its owner holds its lock, and the record beside it (`<file>.gen`, `retain.rs`) names the size
//! and generation the descriptor claims. Anything else is refused, logged once, and
//! the segment is reached through the transfer engine instead.

use mooncake_proto::SegmentDesc;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// The segment directory every process maps from (where segments go by default).
const DEFAULT_DIR: &str = "/dev/shm";

/// One mapped segment file of a peer on this host. Unmapped when the last handle goes
/// (the cache, a batch of copies and a prefault thread may each hold one).
pub struct PeerMap {
    ptr: *mut u8,
    len: usize,
    file: File,
}

// Safety: shared memory; byte ranges are handed out by the master's allocator.
unsafe impl Send for PeerMap {}
unsafe impl Sync for PeerMap {}

impl PeerMap {
    /// Whether the owner still holds its lock on the file.
    pub fn owner_alive(&self) -> bool {
        let fd = self.file.as_raw_fd();
        // Safety: probing and releasing a shared lock on our own descriptor.
        unsafe {
            if libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) == 0 {
                libc::flock(fd, libc::LOCK_UN);
                false
            } else {
                true
            }
        }
    }

    /// Address of `[off, off+len)` inside the mapping, if it fits. Valid while this
    /// handle lives, even after the owner died (its file is unlinked, not truncated);
    /// whether the bytes still mean anything is [`PeerMap::owner_alive`]'s question.
    #[inline]
    pub fn range(&self, off: u64, len: usize) -> Option<*mut u8> {
        let end = off.checked_add(len as u64)?;
        if end > self.len as u64 {
            return None;
        }
        // Safety: in bounds, checked above.
        Some(unsafe { self.ptr.add(off as usize) })
    }
}

impl Drop for PeerMap {
    fn drop(&mut self) {
        // Safety: unmapping our own mapping once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Mappings of same-host segments, keyed by file path (unique per owner process).
/// A segment that could not be mapped is remembered as such, so it is tried once.
pub struct ShmCache {
    host_id: String,
    /// The directories segment files may be mapped from (canonical paths).
    dirs: Vec<std::path::PathBuf>,
    enabled: bool,
    /// Whether a new mapping's page tables are filled in the background.
    prefault: bool,
    maps: Mutex<HashMap<String, Option<Arc<PeerMap>>>>,
}

impl ShmCache {
    /// Mappings for a process on the host `host_id` names (see [`crate::host_id`]).
    /// `enabled: false` never maps (every replica goes through the transfer engine);
    /// `prefault` fills a new mapping's page tables in the background.
    pub fn new(host_id: String, enabled: bool, prefault: bool) -> Self {
        let mut me = Self {
            host_id,
            dirs: Vec::new(),
            enabled,
            prefault,
            maps: Mutex::new(HashMap::new()),
        };
        me.allow_dir(DEFAULT_DIR);
        me
    }

    /// Also maps segment files from `dir` (the process's configured segment
    /// directory). A directory that does not exist adds nothing.
    pub fn with_dir(mut self, dir: Option<&str>) -> Self {
        if let Some(d) = dir {
            self.allow_dir(d);
        }
        self
    }

    fn allow_dir(&mut self, dir: &str) {
        if let Ok(d) = std::fs::canonicalize(dir) {
            if !self.dirs.contains(&d) {
                self.dirs.push(d);
            }
        }
    }

    /// Why `seg`'s file must not be mapped, if it must not (see the module docs).
    fn refusal(&self, seg: &SegmentDesc) -> Option<String> {
        let path = Path::new(&seg.shm_path);
        let name = path.file_name()?.to_string_lossy().into_owned();
        let ok_name = name.starts_with(crate::SHM_PREFIX)
            && !name.ends_with(crate::retain::RECORD_SUFFIX)
            && !name.ends_with(".tmp");
        if !path.is_absolute() || !ok_name {
            return Some("not a segment file's name".into());
        }
        let parent = path.parent().and_then(|p| std::fs::canonicalize(p).ok());
        if !parent.is_some_and(|p| self.dirs.iter().any(|d| p.starts_with(d))) {
            return Some(format!(
                "not inside this process's segment directories ({})",
                self.dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => {}
            _ => return Some("not a regular file".into()),
        }
        match crate::retain::read_record(path) {
            Some(r)
                if !seg.generation.is_empty()
                    && r.generation == seg.generation
                    && r.size == seg.size =>
            {
                None
            }
            Some(_) => {
                Some("its record names another generation or size than the mounted segment".into())
            }
            None => Some("no segment record beside it".into()),
        }
    }

    /// Whether `seg` is on this host and has a file to map (a cheap test, no syscalls).
    #[inline]
    pub fn is_local(&self, seg: &SegmentDesc) -> bool {
        self.enabled && !seg.shm_path.is_empty() && seg.host_id == self.host_id
    }

    /// The mapping of a same-host segment, or `None` when it cannot be used (other host,
    /// no file, file not accessible here, size mismatch).
    pub fn get(&self, seg: &SegmentDesc) -> Option<Arc<PeerMap>> {
        if !self.is_local(seg) {
            return None;
        }
        if let Some(m) = self.maps.lock().get(&seg.shm_path) {
            return m.clone();
        }
        let mapped = match self.refusal(seg) {
            Some(why) => {
                tracing::warn!(segment = %seg.name, path = %seg.shm_path, "refusing to map a same-host segment's file: {why}; using the transfer engine");
                None
            }
            // A file nobody holds is a leftover, not the mounted segment.
            None => map_file(&seg.shm_path, seg.size).filter(|m| m.owner_alive()),
        }
        .map(Arc::new);
        if let Some(m) = &mapped {
            if self.prefault {
                prefault(m.clone());
            }
        }
        if mapped.is_none() {
            tracing::debug!(path = %seg.shm_path, "same-host segment not mappable; using the transfer engine");
        }
        self.maps
            .lock()
            .insert(seg.shm_path.clone(), mapped.clone());
        mapped
    }

    /// Forgets a mapping (its owner died); a later [`ShmCache::get`] maps the path
    /// again.
    pub fn forget(&self, path: &str) {
        self.maps.lock().remove(path);
    }
}

/// Fills our page tables in the background for the pages of the mapping its owner has
/// already used (`prefault.rs`; the rest are not allocated for it): without this every
/// first touch of a 4 KiB page in this process is a minor fault (measured: puts ran at a
/// fifth of the speed of gets). The thread holds the mapping alive until it is done.
fn prefault(m: Arc<PeerMap>) {
    let (addr, len) = (m.ptr as usize, m.len);
    // Safety: the Arc moved into the thread keeps the mapping alive.
    let _detached = unsafe { crate::prefault::spawn("mc-shm-prefault", addr, len, m) };
}

fn map_file(path: &str, size: u64) -> Option<PeerMap> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.file_type().is_file() {
        return None;
    }
    let len = file.metadata().ok()?.len();
    if len < size || size == 0 {
        return None;
    }
    let len = usize::try_from(size).ok()?;
    // Safety: mapping `len` bytes of a file at least that long.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return None;
    }
    Some(PeerMap {
        ptr: ptr.cast(),
        len,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SegmentMemory;

    fn desc(seg: &SegmentMemory, host: &str) -> SegmentDesc {
        SegmentDesc {
            name: "h:1".into(),
            owner: "h:1".into(),
            base: seg.addr() as u64,
            size: seg.len() as u64,
            shm_path: seg.shm_path().unwrap().to_string_lossy().into_owned(),
            host_id: host.into(),
            generation: seg.generation().to_string(),
            ..SegmentDesc::default()
        }
    }

    #[test]
    fn only_segment_files_of_our_own_directories_with_their_record_are_mapped() {
        let base = std::env::temp_dir().join(format!("mc-shm-guard-{}", std::process::id()));
        let (mine, other) = (base.join("mine"), base.join("other"));
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let cache = ShmCache::new("boot-1".into(), true, false).with_dir(mine.to_str());
        let seg = SegmentMemory::create_retained("peer", 1 << 16, mine.to_str(), false).unwrap();
        let good = desc(&seg, "boot-1");
        // Outside our directories: a victim file is never opened for writing.
        let victim = other.join("victim.txt");
        std::fs::write(&victim, vec![b'x'; 1 << 16]).unwrap();
        let mut d = good.clone();
        d.shm_path = victim.display().to_string();
        assert!(cache.get(&d).is_none());
        let named = other.join(format!("{}victim", crate::SHM_PREFIX));
        std::fs::write(&named, vec![b'x'; 1 << 16]).unwrap();
        d.shm_path = named.display().to_string();
        assert!(
            cache.get(&d).is_none(),
            "a segment-like name outside our dirs"
        );
        // Inside, but a symlink to the victim, or with no record: refused.
        let link = mine.join(format!("{}link", crate::SHM_PREFIX));
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        d.shm_path = link.display().to_string();
        assert!(cache.get(&d).is_none(), "a symlink");
        let bare = mine.join(format!("{}bare", crate::SHM_PREFIX));
        std::fs::write(&bare, vec![0u8; 1 << 16]).unwrap();
        d.shm_path = bare.display().to_string();
        assert!(cache.get(&d).is_none(), "no record");
        // The real segment under another generation: refused; as mounted: mapped.
        let mut d = good.clone();
        d.generation = "not-its-generation".into();
        assert!(ShmCache::new("boot-1".into(), true, false)
            .with_dir(mine.to_str())
            .get(&d)
            .is_none());
        assert!(cache.get(&good).is_some());
        assert_eq!(std::fs::read(&victim).unwrap(), vec![b'x'; 1 << 16]);
        drop(seg);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn maps_a_live_peer_and_sees_its_bytes() {
        let dir = std::env::temp_dir().join(format!("mc-shm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seg = SegmentMemory::create_retained("peer", 1 << 16, dir.to_str(), false).unwrap();
        let cache = ShmCache::new("boot-1".into(), true, true).with_dir(dir.to_str());
        assert!(cache.get(&desc(&seg, "other-host")).is_none());
        let d = desc(&seg, "boot-1");
        let off = ShmCache::new("boot-1".into(), false, true);
        assert!(!off.is_local(&d) && off.get(&d).is_none(), "turned off");
        let m = cache.get(&d).expect("mapped");
        assert!(m.owner_alive());
        unsafe { *(seg.addr() as *mut u8).add(100) = 42 };
        let p = m.range(100, 1).unwrap();
        assert_eq!(unsafe { *p }, 42);
        assert!(m.range((1 << 16) - 1, 2).is_none(), "out of bounds");
        assert!(Arc::ptr_eq(&m, &cache.get(&d).unwrap()), "mapped once");
        drop(seg); // owner gone: lock released, file removed
        assert!(!m.owner_alive());
        cache.forget(&d.shm_path);
        assert!(cache.get(&d).is_none());
    }
}

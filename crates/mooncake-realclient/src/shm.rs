//! Shared pools on the dummy's side: `MooncakeHostMemAllocator` memory. Each pool is
//! a memfd mapped shared, so the real client can map the same pages (the descriptor
//! goes over the unix socket) and move bytes between them and the store with no copy
//! in the dummy's process. The registry answers which pool an address belongs to.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One pool: `len` bytes at `base`, backed by `fd`.
#[derive(Debug)]
pub struct Pool {
    /// Unique for the life of the process (an address may be reused after a free).
    pub id: u64,
    pub base: usize,
    pub len: usize,
    fd: OwnedFd,
}

impl Pool {
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.base
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.base + self.len)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: (base, len) is the mapping `alloc` made for this pool; the registry
        // held the only way to reach it as a pool.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The seals every pool carries: it can neither shrink nor grow, nor lose the seals.
pub const SIZE_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Whether `fd` is a memfd whose size is sealed (a pool from [`alloc`]).
pub fn size_is_sealed(fd: RawFd) -> bool {
    // SAFETY: fcntl on a descriptor the caller owns.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    seals >= 0
        && seals & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
            == (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
}

fn pools() -> &'static parking_lot::Mutex<BTreeMap<usize, Arc<Pool>>> {
    static POOLS: std::sync::OnceLock<parking_lot::Mutex<BTreeMap<usize, Arc<Pool>>>> =
        std::sync::OnceLock::new();
    POOLS.get_or_init(Default::default)
}

/// Maps `len` zeroed bytes of shared memory and returns their address.
pub fn alloc(len: usize) -> io::Result<usize> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "size must be > 0",
        ));
    }
    // SAFETY: plain syscalls on a name we own; every result is checked.
    let fd = unsafe {
        libc::memfd_create(
            c"mooncake_shm".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The size is fixed for good: a process that maps the pool (the real client) can
    // then never fault on pages a shrink took away.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SIZE_SEALS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new shared mapping of our own memfd.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = p as usize;
    let pool = Arc::new(Pool {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        base,
        len,
        fd,
    });
    pools().lock().insert(base, pool);
    Ok(base)
}

/// Counts frees, so a dummy can tell when a pool it handed over may be gone.
static FREES: AtomicU64 = AtomicU64::new(0);

/// Forgets the pool at `base` (unmapped once no call uses it); false when no pool
/// starts there.
pub fn free(base: usize) -> bool {
    let found = pools().lock().remove(&base).is_some();
    if found {
        FREES.fetch_add(1, Ordering::Release);
    }
    found
}

/// How many pools were freed so far in this process.
pub fn frees() -> u64 {
    FREES.load(Ordering::Acquire)
}

/// Whether the pool `id` is still allocated.
pub fn is_live(id: u64) -> bool {
    pools().lock().values().any(|p| p.id == id)
}

/// The pool holding `[addr, addr+len)`, if one does.
pub fn find(addr: usize, len: usize) -> Option<Arc<Pool>> {
    let pools = pools().lock();
    let (_, p) = pools.range(..=addr).next_back()?;
    p.contains(addr, len).then(|| p.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_found_by_any_address_inside_them() {
        let a = alloc(1 << 20).unwrap();
        assert_eq!(find(a, 1 << 20).unwrap().base, a);
        assert_eq!(find(a + 100, 10).unwrap().base, a);
        assert!(find(a + (1 << 20) - 1, 2).is_none(), "crosses the end");
        assert!(find(a.wrapping_sub(1), 1).is_none_or(|p| p.base != a));
        // SAFETY: inside the pool just allocated.
        unsafe { *(a as *mut u8) = 7 };
        assert!(free(a));
        assert!(!free(a));
        assert!(find(a, 1).is_none());
        assert!(alloc(0).is_err());
    }

    #[test]
    fn pools_cannot_change_size() {
        let a = alloc(4096).unwrap();
        let p = find(a, 1).unwrap();
        assert!(size_is_sealed(p.fd()));
        // SAFETY: a pool's own descriptor; the shrink must be refused.
        assert_ne!(unsafe { libc::ftruncate(p.fd(), 0) }, 0);
        let f = tempfile::tempfile().unwrap();
        assert!(!size_is_sealed(f.as_raw_fd()), "a plain file is not a pool");
        drop(p);
        assert!(free(a));
    }
}

//! glibc malloc settings for the bytes API.
//!
//! `get()` must hand Python a fresh `bytes` object, and the client reads into a fresh
//! buffer first. With glibc's defaults both are often new mmaps (or a heap just trimmed
//! back), so every get of a few MiB pays one page fault per 4 KiB: on the VMs we
//! measured that made a 1 MiB `get()` 2-6x slower than the read itself. Fixing the
//! mmap threshold at 32 MiB (the ceiling glibc's own adaptive threshold climbs to)
//! and keeping up to 128 MiB of freed heap lets those buffers be reused warm.
//!
//! Applied once, at import. Skipped when the user already tunes malloc through
//! `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`, or sets
//! `MOONCAKE_PY_MALLOC_TUNING=0`.

const MMAP_THRESHOLD: i32 = 32 << 20;
const TRIM_THRESHOLD: i32 = 128 << 20;

use crate::config::malloc_tuning_wanted as wanted;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn apply() {
    if wanted() {
        // SAFETY: mallopt only changes allocator parameters; it is thread-safe.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn apply() {
    let _ = (wanted, MMAP_THRESHOLD, TRIM_THRESHOLD);
}

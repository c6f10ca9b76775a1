//! The dummies' shared pools as this process maps them. A dummy sends a pool's
//! descriptor once (over the unix socket); afterwards its requests name addresses in
//! its own address space, translated here to the same bytes in ours. A mapping is
//! registered with the client as zero-copy memory, so the client moves bytes between
//! it and the store directly: the only copy is the one into the segment or the wire.
//!
//! A dummy's pools go when it says goodbye, or when none of its connections has been
//! open for [`ORPHAN_GRACE`] (a dummy that died without a word).

use mooncake_client::Client;
use mooncake_common::{ErrorCode, MooncakeError, Result};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a dummy's pools outlive its last connection.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(60);
/// Pools one dummy may register.
const MAX_POOLS_PER_DUMMY: usize = 256;
/// Dummies known at once.
const MAX_DUMMIES: usize = 4096;

/// One dummy pool mapped here.
pub struct Mapping {
    client: Client,
    pub dummy_base: u64,
    pub len: usize,
    pub real_base: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let _ = self.client.unregister_buffer(self.real_base);
        // SAFETY: our own mapping of the dummy's pool; the last Arc is gone, so no call
        // is using it.
        unsafe { libc::munmap(self.real_base as *mut libc::c_void, self.len) };
    }
}

#[derive(Default)]
struct Dummy {
    pools: BTreeMap<u64, Arc<Mapping>>,
    conns: usize,
    last_seen: Option<Instant>,
}

#[derive(Default)]
pub struct Mappings {
    dummies: Mutex<HashMap<u64, Dummy>>,
}

fn invalid(m: String) -> MooncakeError {
    MooncakeError::invalid(m)
}

impl Mappings {
    /// Maps `fd` (`len` bytes the dummy `token` has at `dummy_base`); replaces any of
    /// its pools the range overlaps (an address reused after a free).
    pub fn register(
        &self,
        client: &Client,
        token: u64,
        dummy_base: u64,
        len: u64,
        fd: OwnedFd,
    ) -> Result<()> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| invalid(format!("a pool of {len} bytes")))?;
        dummy_base
            .checked_add(len as u64)
            .ok_or_else(|| invalid("a pool that wraps the address space".into()))?;
        // A file that could shrink under the mapping would make an access here fault
        // (SIGBUS) and kill the real client: only sealed pools are taken.
        if !crate::shm::size_is_sealed(fd.as_raw_fd()) {
            return Err(invalid(
                "the pool is not a size-sealed memfd (allocate it with MooncakeHostMemAllocator)"
                    .into(),
            ));
        }
        // The descriptor must really hold `len` bytes: mapping past a file's end
        // would fault (SIGBUS) on the first access, here, not in the dummy.
        // SAFETY: fstat into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(invalid(format!(
                "cannot inspect the pool's descriptor: {}",
                std::io::Error::last_os_error()
            )));
        }
        if (st.st_size as u64) < len as u64 {
            return Err(invalid(format!(
                "the pool's file holds {} bytes, not the {len} claimed",
                st.st_size
            )));
        }
        {
            let d = self.dummies.lock();
            let pools = d.get(&token).map_or(0, |x| x.pools.len());
            if pools >= MAX_POOLS_PER_DUMMY || (pools == 0 && d.len() >= MAX_DUMMIES) {
                return Err(invalid("too many shared pools registered".into()));
            }
        }
        // SAFETY: a shared mapping of a descriptor we own; checked below.
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
            return Err(invalid(format!(
                "cannot map the pool: {}",
                std::io::Error::last_os_error()
            )));
        }
        let real_base = p as usize;
        let mapping = Arc::new(Mapping {
            client: client.clone(),
            dummy_base,
            len,
            real_base,
        });
        // SAFETY: the mapping stays until `Mapping` drops, which unregisters first.
        if let Err(e) = unsafe { client.register_buffer(real_base, len) } {
            drop(mapping);
            return Err(e);
        }
        let end = dummy_base + len as u64;
        let mut d = self.dummies.lock();
        let dummy = d.entry(token).or_default();
        dummy.last_seen.get_or_insert_with(Instant::now);
        dummy
            .pools
            .retain(|&b, m| b >= end || b + m.len as u64 <= dummy_base);
        dummy.pools.insert(dummy_base, mapping);
        tracing::info!(token, dummy_base, len, "mapped a dummy's shared pool");
        Ok(())
    }

    pub fn unregister(&self, token: u64, dummy_base: u64) -> bool {
        let removed = self
            .dummies
            .lock()
            .get_mut(&token)
            .and_then(|d| d.pools.remove(&dummy_base));
        removed.is_some()
    }

    /// Where `[ptr, ptr+len)` of dummy `token` is in this process, with the mapping
    /// to hold for the call.
    pub fn translate(&self, token: u64, ptr: u64, len: u64) -> Result<(Arc<Mapping>, usize)> {
        let d = self.dummies.lock();
        let found = d
            .get(&token)
            .and_then(|x| x.pools.range(..=ptr).next_back())
            .map(|(_, m)| m.clone())
            .filter(|m| {
                ptr.checked_add(len)
                    .is_some_and(|end| end <= m.dummy_base + m.len as u64)
            });
        match found {
            Some(m) => {
                let at = m.real_base + (ptr - m.dummy_base) as usize;
                Ok((m, at))
            }
            None => Err(MooncakeError::new(
                ErrorCode::InvalidParams,
                format!(
                    "[0x{ptr:x}, +{len}) is not inside a shared pool this dummy registered \
                     (allocate it with MooncakeHostMemAllocator)"
                ),
            )),
        }
    }

    pub fn connected(&self, token: u64) {
        let mut d = self.dummies.lock();
        if d.len() < MAX_DUMMIES || d.contains_key(&token) {
            d.entry(token).or_default().conns += 1;
        }
    }

    pub fn disconnected(&self, token: u64) {
        if let Some(x) = self.dummies.lock().get_mut(&token) {
            x.conns = x.conns.saturating_sub(1);
            x.last_seen = Some(Instant::now());
        }
    }

    /// A dummy's goodbye: its pools go now.
    pub fn forget(&self, token: u64) {
        let gone = self.dummies.lock().remove(&token);
        drop(gone);
    }

    /// Drops the pools of dummies with no connection for `grace`.
    pub fn reap(&self, grace: Duration) {
        let mut gone = Vec::new();
        self.dummies.lock().retain(|&t, x| {
            let orphan = x.conns == 0 && x.last_seen.is_none_or(|s| s.elapsed() >= grace);
            if orphan {
                gone.push((t, std::mem::take(&mut x.pools)));
            }
            !orphan
        });
        for (token, pools) in gone {
            if !pools.is_empty() {
                tracing::info!(
                    token,
                    pools = pools.len(),
                    "unmapped the pools of a dummy that left"
                );
            }
        }
    }

    /// Pools mapped now, for tests and logs.
    pub fn count(&self) -> usize {
        self.dummies.lock().values().map(|d| d.pools.len()).sum()
    }
}

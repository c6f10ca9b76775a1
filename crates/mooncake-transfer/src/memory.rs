//! Registered memory: the regions peers may read and write.
//!
//! Registration only records `[addr, addr+len)` in a map sorted by address (no page is
//! touched), so registering a store's multi-GB segment is O(log n) and instant. Every
//! remote access is looked up here and refused unless it lies inside one region.
//!
//! A lookup returns an `Arc<Region>` held for one synchronous copy or syscall (never
//! across an `.await`, see `tcp::guarded`); unregistering
//! removes the region from the map and then waits until no access holds it, so memory
//! is never touched after `unregister_memory` returns.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::errors::TransferError;

/// One registered range of host memory.
#[derive(Debug)]
pub struct Region {
    pub addr: usize,
    pub len: usize,
    /// How far into the region peers have written through this engine's server (the
    /// end of the furthest write, from the region's start): what the owner's
    /// warm-ahead thread keeps a window beyond. Writes that reuse space below it leave
    /// it where it is.
    written_end: AtomicUsize,
}

impl Region {
    fn new(addr: usize, len: usize) -> Self {
        Self {
            addr,
            len,
            written_end: AtomicUsize::new(0),
        }
    }

    /// Records a peer's write of `[addr, addr+len)`, which lies inside this region.
    pub fn note_written(&self, addr: u64, len: u64) {
        let end = (addr.saturating_add(len) as usize)
            .saturating_sub(self.addr)
            .min(self.len);
        self.written_end.fetch_max(end, Ordering::Relaxed);
    }

    /// The end of the furthest write recorded so far, from the region's start.
    pub fn written_end(&self) -> usize {
        self.written_end.load(Ordering::Relaxed)
    }

    pub fn end(&self) -> usize {
        self.addr + self.len
    }

    /// Whether `[addr, addr+len)` lies inside this region.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        addr >= self.addr as u64 && end <= self.end() as u64
    }
}

/// The regions of one engine, sorted by start address.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    regions: RwLock<BTreeMap<usize, Arc<Region>>>,
}

impl MemoryRegistry {
    /// Records a region. Zero-length, wrapping, or overlapping ranges are refused.
    pub fn register(&self, addr: usize, len: usize) -> Result<(), TransferError> {
        let bad = |m: String| Err(TransferError::Registration(m));
        if len == 0 {
            return bad(format!("region at {addr:#x} has zero length"));
        }
        if addr == 0 {
            return bad("region address is null".into());
        }
        let Some(end) = addr.checked_add(len) else {
            return bad(format!("region {addr:#x}+{len} wraps the address space"));
        };
        let mut map = self.regions.write();
        if let Some((_, prev)) = map.range(..end).next_back() {
            if prev.end() > addr {
                return bad(format!(
                    "region [{addr:#x}, {end:#x}) overlaps registered [{:#x}, {:#x})",
                    prev.addr,
                    prev.end()
                ));
            }
        }
        map.insert(addr, Arc::new(Region::new(addr, len)));
        Ok(())
    }

    /// Removes the region starting at `addr`, waiting for in-progress accesses to end.
    pub fn unregister(&self, addr: usize) -> Result<(), TransferError> {
        let region = self.regions.write().remove(&addr).ok_or_else(|| {
            TransferError::Registration(format!("no region registered at {addr:#x}"))
        })?;
        // Accesses hold a clone for at most one syscall or memcpy; wait them out.
        while Arc::strong_count(&region) > 1 {
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    /// The region containing `[addr, addr+len)`, if any.
    pub fn lookup(&self, addr: u64, len: u64) -> Option<Arc<Region>> {
        let start = usize::try_from(addr).ok()?;
        let map = self.regions.read();
        let (_, r) = map.range(..=start).next_back()?;
        r.contains(addr, len).then(|| r.clone())
    }

    /// How far peers have written into the region that starts at `addr`
    /// ([`Region::written_end`]); `None` when no region starts there.
    pub fn written_end(&self, addr: usize) -> Option<usize> {
        self.regions.read().get(&addr).map(|r| r.written_end())
    }

    /// `(addr, len)` of every region, by address.
    pub fn list(&self) -> Vec<(usize, usize)> {
        self.regions
            .read()
            .values()
            .map(|r| (r.addr, r.len))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_bounds_checked() {
        let m = MemoryRegistry::default();
        m.register(0x1000, 0x1000).unwrap();
        m.register(0x4000, 0x100).unwrap();
        assert!(m.lookup(0x1000, 0x1000).is_some());
        assert!(m.lookup(0x1800, 0x800).is_some());
        assert!(m.lookup(0x1800, 0x801).is_none());
        assert!(m.lookup(0xfff, 2).is_none());
        assert!(m.lookup(0x2000, 1).is_none());
        assert!(m.lookup(0x40ff, 1).is_some());
        assert!(m.lookup(u64::MAX, 2).is_none());
        assert_eq!(m.list(), vec![(0x1000, 0x1000), (0x4000, 0x100)]);
    }

    #[test]
    fn the_furthest_write_is_kept_per_region() {
        let m = MemoryRegistry::default();
        m.register(0x1000, 0x1000).unwrap();
        m.register(0x4000, 0x100).unwrap();
        assert_eq!(m.written_end(0x1000), Some(0));
        m.lookup(0x1800, 0x100).unwrap().note_written(0x1800, 0x100);
        assert_eq!(m.written_end(0x1000), Some(0x900));
        // A write below the mark (space reused) leaves it where it is.
        m.lookup(0x1000, 0x10).unwrap().note_written(0x1000, 0x10);
        assert_eq!(m.written_end(0x1000), Some(0x900));
        m.lookup(0x1f00, 0x100).unwrap().note_written(0x1f00, 0x100);
        assert_eq!(m.written_end(0x1000), Some(0x1000));
        assert_eq!(
            m.written_end(0x4000),
            Some(0),
            "another region's writes are its own"
        );
        assert_eq!(m.written_end(0x1800), None, "no region starts there");
    }

    #[test]
    fn overlaps_and_unknowns_are_refused() {
        let m = MemoryRegistry::default();
        m.register(0x1000, 0x1000).unwrap();
        assert!(m.register(0x1fff, 4).is_err());
        assert!(m.register(0x800, 0x801).is_err());
        assert!(m.register(0x800, 0x800).is_ok());
        assert!(m.register(0x3000, 0).is_err());
        assert!(m.register(usize::MAX - 1, 4).is_err());
        assert!(m.unregister(0x1234).is_err());
        m.unregister(0x1000).unwrap();
        assert!(m.lookup(0x1000, 1).is_none());
    }
}

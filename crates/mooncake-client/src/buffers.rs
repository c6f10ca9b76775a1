//! Caller memory registered for zero-copy puts and gets (`register_buffer`). Every
//! `*_from` / `*_into` call checks its ranges here first, so a wrong pointer is a clear
//! `INVALID_PARAMS` instead of a transfer engine reading random memory.

use mooncake_common::{MooncakeError, Result};
use parking_lot::RwLock;
use std::collections::BTreeMap;

#[derive(Default)]
pub(crate) struct BufferRegistry {
    /// start address -> length; ranges never overlap.
    ranges: RwLock<BTreeMap<usize, usize>>,
}

impl BufferRegistry {
    pub fn register(&self, addr: usize, len: usize) -> Result<()> {
        if addr == 0 || len == 0 {
            return Err(MooncakeError::invalid(format!(
                "register_buffer: null pointer or zero length (ptr {addr:#x}, size {len})"
            )));
        }
        let end = addr
            .checked_add(len)
            .ok_or_else(|| MooncakeError::invalid("register_buffer: range wraps around"))?;
        let mut r = self.ranges.write();
        let before = r.range(..end).next_back().map(|(a, l)| (*a, *l));
        if let Some((a, l)) = before {
            if a + l > addr {
                return Err(MooncakeError::invalid(format!(
                    "register_buffer: [{addr:#x}, +{len}) overlaps the registered buffer [{a:#x}, +{l})"
                )));
            }
        }
        r.insert(addr, len);
        Ok(())
    }

    pub fn unregister(&self, addr: usize) -> Result<usize> {
        self.ranges.write().remove(&addr).ok_or_else(|| {
            MooncakeError::invalid(format!(
                "unregister_buffer: {addr:#x} is not a registered buffer"
            ))
        })
    }

    /// Checks that `[addr, addr+len)` lies inside one registered buffer.
    pub fn check(&self, addr: usize, len: usize) -> Result<()> {
        let inside = addr.checked_add(len).is_some_and(|end| {
            self.ranges
                .read()
                .range(..=addr)
                .next_back()
                .is_some_and(|(a, l)| end <= a + l)
        });
        if inside && len > 0 {
            Ok(())
        } else {
            Err(MooncakeError::invalid(format!(
                "buffer [{addr:#x}, +{len}) is not inside a registered buffer (call register_buffer first)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        let b = BufferRegistry::default();
        b.register(0x1000, 0x1000).unwrap();
        assert!(b.check(0x1000, 0x1000).is_ok());
        assert!(b.check(0x1800, 0x100).is_ok());
        assert!(b.check(0x1800, 0x1000).is_err(), "runs past the end");
        assert!(b.check(0x800, 0x10).is_err(), "before any buffer");
        assert!(b.check(0x1000, 0).is_err());
        assert!(b.register(0x1800, 0x1000).is_err(), "overlap");
        assert!(b.register(0x800, 0x1000).is_err(), "overlap from below");
        assert!(b.register(0, 5).is_err());
        b.register(0x2000, 0x10).unwrap();
        assert!(b.unregister(0x1800).is_err());
        b.unregister(0x1000).unwrap();
        assert!(b.check(0x1000, 1).is_err());
    }
}

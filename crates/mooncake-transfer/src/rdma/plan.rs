//! Slicing for RDMA: a request becomes work requests of at most `slice` bytes, spread
//! round-robin over every (local NIC, remote NIC) pair, so one large transfer uses all
//! NICs on both sides (the reference pins one local NIC per request).

/// One work request's share of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkItem {
    /// Index into the connection pairs.
    pub pair: usize,
    pub offset: u64,
    pub len: u32,
}

/// Cuts `len` bytes into slices over `pairs` connection pairs, starting at `first`
/// (callers rotate it so small requests spread too).
pub fn slice(len: u64, slice: u32, pairs: usize, first: usize) -> Vec<WorkItem> {
    let slice = slice.max(1) as u64;
    let pairs = pairs.max(1);
    let mut out = Vec::with_capacity(len.div_ceil(slice) as usize);
    let mut off = 0;
    let mut i = first;
    while off < len {
        let n = slice.min(len - off);
        out.push(WorkItem {
            pair: i % pairs,
            offset: off,
            len: n as u32,
        });
        off += n;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_range_once_and_uses_every_pair() {
        let items = slice(10 * 65536 + 5, 65536, 4, 1);
        assert_eq!(items.len(), 11);
        assert_eq!(
            items.iter().map(|w| w.len as u64).sum::<u64>(),
            10 * 65536 + 5
        );
        let mut off = 0;
        for w in &items {
            assert_eq!(w.offset, off);
            off += w.len as u64;
        }
        for p in 0..4 {
            assert!(items.iter().any(|w| w.pair == p));
        }
        assert_eq!(items[0].pair, 1);
        assert!(slice(0, 65536, 2, 0).is_empty());
    }
}

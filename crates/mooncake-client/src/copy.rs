//! The memcpy half of the same-host fast path. Copies are planned first (every range
//! checked against its mapping, so a bad replica fails before any byte moves), then run.

use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_transfer::Opcode;

/// One validated copy.
#[derive(Clone, Copy)]
pub(crate) struct Copy {
    pub src: usize,
    pub dst: usize,
    pub len: usize,
}

/// Plans the copies of one job into a mapped segment: `(local, len, offset in the
/// segment)`; `range(off, len)` is the address of that range in this process, if it
/// lies inside the mapping.
pub(crate) fn plan(
    op: Opcode,
    range: impl Fn(u64, usize) -> Option<*mut u8>,
    pieces: impl Iterator<Item = (usize, usize, u64)>,
    out: &mut Vec<Copy>,
) -> Result<()> {
    let start = out.len();
    for (local, len, off) in pieces {
        let Some(remote) = range(off, len) else {
            out.truncate(start);
            return Err(MooncakeError::new(
                ErrorCode::InvalidReplica,
                format!(
                    "replica range +{off}..{} is outside its segment",
                    off + len as u64
                ),
            ));
        };
        let remote = remote as usize;
        out.push(match op {
            Opcode::Write => Copy {
                src: local,
                dst: remote,
                len,
            },
            Opcode::Read => Copy {
                src: remote,
                dst: local,
                len,
            },
        });
    }
    Ok(())
}

/// Runs the copies on the calling thread. (Spreading large batches over scoped threads
/// was measured and gave nothing on this 2-core machine: one memcpy already saturates
/// what the memory system gives a process here, about 6 GB/s under load.)
///
/// # Safety
/// Every source is readable and every destination writable for `len` bytes, and no
/// destination overlaps another copy's source or destination.
pub(crate) unsafe fn run(copies: &[Copy]) {
    for c in copies {
        // Safety: forwarded from the caller.
        unsafe { copy(*c) };
    }
}

/// # Safety
/// As [`run`].
unsafe fn copy(c: Copy) {
    // Safety: the caller guarantees both ranges.
    unsafe { std::ptr::copy_nonoverlapping(c.src as *const u8, c.dst as *mut u8, c.len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_move_every_byte() {
        for total in [1000usize, 9 << 20] {
            let src: Vec<u8> = (0..total).map(|i| (i * 7 + i / 4096) as u8).collect();
            let mut dst = vec![0u8; total];
            let half = total / 2 + 3;
            let copies = [
                Copy {
                    src: src.as_ptr() as usize,
                    dst: dst.as_mut_ptr() as usize,
                    len: half,
                },
                Copy {
                    src: src.as_ptr() as usize + half,
                    dst: dst.as_mut_ptr() as usize + half,
                    len: total - half,
                },
            ];
            unsafe { run(&copies) };
            assert!(src == dst, "total {total}");
        }
    }
}

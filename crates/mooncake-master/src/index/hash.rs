//! A fast keyed hash for the index. SipHash (std's default) was a third of the time of
//! a 1024-key batch exist; keys here are short strings from our own clients, so a
//! multiply-rotate hash with a per-process random seed and a murmur3 finaliser (every
//! output bit depends on every input bit) is the better trade.
//!
//! The same hash picks the shard (bits 32..38) and the bucket inside the shard's
//! `HashMap` (which uses the low bits and the top 7 bits), so shard choice does not
//! skew the buckets.

use std::hash::{BuildHasher, Hasher};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Builds [`FastHasher`]s with a seed chosen once per index.
#[derive(Debug, Clone, Copy)]
pub struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> Self {
        Self {
            seed: rand::random(),
        }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.seed)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FastHasher(u64);

#[inline]
fn mix(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(K).rotate_left(29)
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = mix(h, u64::from_le_bytes(w));
        }
        let rem = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rem.len()].copy_from_slice(rem);
        // The length goes in too, so "a" and "a\0" differ.
        self.0 = mix(h, u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56));
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.0 = mix(self.0, u64::from(b));
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_similar_keys_over_shards_and_bits() {
        let s = FastState::default();
        let mut shards = [0u32; 64];
        let mut ones = [0u32; 64];
        let n = 64_000;
        for i in 0..n {
            let h = s.hash_one(format!("sglang_page_{i:016x}").as_str());
            shards[((h >> 32) & 63) as usize] += 1;
            for (b, one) in ones.iter_mut().enumerate() {
                *one += ((h >> b) & 1) as u32;
            }
        }
        for c in shards {
            assert!((800..1200).contains(&c), "uneven shards: {shards:?}");
        }
        for c in ones {
            assert!((30_000..34_000).contains(&c), "biased bit: {ones:?}");
        }
        assert_ne!(s.hash_one("a"), s.hash_one("a\0"));
    }
}

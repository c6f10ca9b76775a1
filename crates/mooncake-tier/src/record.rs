//! One record on disk: a header naming the key, the value's length, the writer's
//! generation and a CRC-32C per 64 KiB block of the value, then the value.
//!
//! ```text
//! 0   magic "MCT1"        4   key_len u32       8  value_len u64
//! 16  generation u64      24  block u32         28 n_blocks u32
//! 32  header_crc u32      36  reserved u32
//! 40  key bytes, n_blocks x u32 block CRCs, zero padding to 8 bytes
//! header_len  value bytes
//! ```
//! The header CRC covers bytes 0..32, the key and the block CRCs. A CRC per block (not
//! one per value) lets a read of any range check only the blocks it touches.

use crate::errors::TierError;

pub const MAGIC: [u8; 4] = *b"MCT1";
/// The checksum block: a read verifies every block it touches.
pub const BLOCK: u64 = 64 << 10;
const FIXED: usize = 40;
/// The longest key a record holds.
pub const MAX_KEY: usize = 64 << 10;

/// Bytes of header for a key of `key_len` bytes and a value of `value_len` bytes.
pub fn header_len(key_len: usize, value_len: u64) -> u64 {
    let raw = FIXED as u64 + key_len as u64 + 4 * value_len.div_ceil(BLOCK);
    raw.div_ceil(8) * 8
}

/// Bytes a record occupies on disk (what the master allocates for it).
pub fn record_len(key_len: usize, value_len: u64) -> u64 {
    header_len(key_len, value_len) + value_len
}

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value_len: u64,
    pub generation: u64,
    pub crcs: Vec<u32>,
}

impl Header {
    /// The header of `value` under `key`.
    pub fn of(key: &str, generation: u64, value: &[u8]) -> Header {
        let crcs = value.chunks(BLOCK as usize).map(crc32c::crc32c).collect();
        Header {
            key: key.to_string(),
            value_len: value.len() as u64,
            generation,
            crcs,
        }
    }

    /// The header of `value` under `key`, copying `value` into `dst` (as long as it)
    /// a block at a time and summing each block from the copy, while it is in the
    /// CPU's cache: one read of a value that left the cache, not two.
    pub fn of_copied(key: &str, generation: u64, value: &[u8], dst: &mut [u8]) -> Header {
        let crcs = dst
            .chunks_mut(BLOCK as usize)
            .zip(value.chunks(BLOCK as usize))
            .map(|(d, s)| {
                d.copy_from_slice(s);
                crc32c::crc32c(d)
            })
            .collect();
        Header {
            key: key.to_string(),
            value_len: value.len() as u64,
            generation,
            crcs,
        }
    }

    pub fn len(&self) -> u64 {
        header_len(self.key.len(), self.value_len)
    }

    pub fn is_empty(&self) -> bool {
        self.value_len == 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.len() as usize);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.value_len.to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        b.extend_from_slice(&(BLOCK as u32).to_le_bytes());
        b.extend_from_slice(&(self.crcs.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(self.key.as_bytes());
        for c in &self.crcs {
            b.extend_from_slice(&c.to_le_bytes());
        }
        b.resize(self.len() as usize, 0);
        let crc = header_crc(&b);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The fixed part's claim of how long the whole header is, to read the rest.
    pub fn peek_len(fixed: &[u8]) -> Result<u64, String> {
        if fixed.len() < FIXED {
            return Err("short header".into());
        }
        if fixed[0..4] != MAGIC {
            return Err("no record magic".into());
        }
        let key_len = u32::from_le_bytes(fixed[4..8].try_into().unwrap()) as usize;
        let value_len = u64::from_le_bytes(fixed[8..16].try_into().unwrap());
        if key_len > MAX_KEY {
            return Err(format!("key length {key_len} out of range"));
        }
        Ok(header_len(key_len, value_len))
    }

    pub const FIXED_LEN: usize = FIXED;

    /// Decodes and checks a whole header.
    pub fn decode(b: &[u8]) -> Result<Header, TierError> {
        let bad = |why: String| TierError::Config(format!("corrupt record header: {why}"));
        let len = Self::peek_len(b).map_err(bad)?;
        if (b.len() as u64) < len {
            return Err(bad("header cut short".into()));
        }
        let b = &b[..len as usize];
        let u32at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        if u32at(32) != header_crc(b) {
            return Err(bad("header checksum mismatch".into()));
        }
        let key_len = u32at(4) as usize;
        let value_len = u64at(8);
        if u32at(24) as u64 != BLOCK {
            return Err(bad(format!("block size {} is not {BLOCK}", u32at(24))));
        }
        let n = u32at(28) as u64;
        if n != value_len.div_ceil(BLOCK) {
            return Err(bad("block count does not match the value length".into()));
        }
        let key = std::str::from_utf8(&b[FIXED..FIXED + key_len])
            .map_err(|_| bad("key is not UTF-8".into()))?
            .to_string();
        let crcs = (0..n as usize)
            .map(|i| u32at(FIXED + key_len + 4 * i))
            .collect();
        Ok(Header {
            key,
            value_len,
            generation: u64at(16),
            crcs,
        })
    }
}

/// CRC-32C of a header with its CRC field taken as zero.
fn header_crc(b: &[u8]) -> u32 {
    let c = crc32c::crc32c(&b[..32]);
    let c = crc32c::crc32c_append(c, &[0u8; 4]);
    crc32c::crc32c_append(c, &b[36..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_sizes_add_up() {
        let v = vec![7u8; (BLOCK * 2 + 5) as usize];
        let h = Header::of("k/1", 9, &v);
        assert_eq!(h.crcs.len(), 3);
        let b = h.encode();
        assert_eq!(b.len() as u64, header_len(3, v.len() as u64));
        assert_eq!(b.len() % 8, 0);
        assert_eq!(Header::decode(&b).unwrap(), h);
        assert_eq!(
            record_len(3, v.len() as u64),
            b.len() as u64 + v.len() as u64
        );
    }

    #[test]
    fn a_header_made_while_copying_is_the_plain_one_and_the_copy_is_whole() {
        let v: Vec<u8> = (0..BLOCK * 2 + 5).map(|i| (i * 31 % 251) as u8).collect();
        let mut dst = vec![0u8; v.len()];
        assert_eq!(
            Header::of_copied("k", 4, &v, &mut dst),
            Header::of("k", 4, &v)
        );
        assert_eq!(dst, v);
    }

    #[test]
    fn any_flipped_header_byte_is_caught() {
        let h = Header::of("key", 1, &[1, 2, 3]);
        let b = h.encode();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(
                Header::decode(&c).is_err(),
                "byte {i} flipped went unnoticed"
            );
        }
        assert!(Header::decode(&b[..b.len() - 1]).is_err());
    }
}

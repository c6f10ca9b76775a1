//! The TCP data-path framing: a fixed 40-byte little-endian header, optionally followed
//! by a payload of `len` bytes (Write requests, Read responses, control messages).
//!
//! ```text
//! 0  magic u16 = 0x4d43 ("MC")   2 version u8   3 opcode u8
//! 4  flags u16 (bit 0: crc valid) 6 reserved u16 (0)
//! 8  status i32 (responses)     12 crc32c u32 of the payload (requests with payload / read data)
//! 16 request id u64             24 remote address u64 (generation for Hello/HelloAck)
//! 32 length u64
//! ```
//! Decoding validates every field, so a malformed or hostile peer gets an error, never
//! a panic or a huge allocation.

use crate::errors::TransferError;

pub const HEADER_LEN: usize = 40;
pub const MAGIC: u16 = 0x4d43;
pub const VERSION: u8 = 1;
/// Largest data payload of one frame (the largest allowed slice).
pub const MAX_DATA_LEN: u64 = 64 << 20;
/// Largest control payload (segment names, descriptors).
pub const MAX_CONTROL_LEN: u64 = 16 << 20;
pub const FLAG_CRC: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Request: write `len` payload bytes at `addr`.
    Write = 1,
    /// Request: read `len` bytes at `addr`.
    Read = 2,
    /// Response to Write.
    WriteAck = 3,
    /// Response to Read: `len` payload bytes follow when `status == 0`.
    ReadData = 4,
    /// First frame of a data connection: payload = expected segment name,
    /// `addr` = expected generation (0 = any).
    Hello = 5,
    /// Answer to Hello: `addr` = the listener's generation, `status` says if accepted.
    HelloAck = 6,
    /// Ask for the segment descriptor (P2PHANDSHAKE).
    Describe = 7,
    /// Answer to Describe: payload = descriptor JSON.
    DescribeData = 8,
    /// Control request for a transport handshake (RDMA queue-pair exchange): payload JSON.
    Control = 9,
    /// Answer to Control: payload JSON (status OK) or an error message.
    ControlData = 10,
    /// Sent by a listener that requires authentication as soon as it accepts:
    /// payload = a 32-byte random challenge (`tcp::auth`).
    Challenge = 11,
    /// The peer's answer to Challenge: payload = its 16-byte nonce and the 32-byte proof.
    Proof = 12,
    /// Request without an answer: payload = a grant (`tcp::grant`) covering the Read
    /// and Write requests that follow on this connection.
    Grant = 13,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Write,
            2 => Op::Read,
            3 => Op::WriteAck,
            4 => Op::ReadData,
            5 => Op::Hello,
            6 => Op::HelloAck,
            7 => Op::Describe,
            8 => Op::DescribeData,
            9 => Op::Control,
            10 => Op::ControlData,
            11 => Op::Challenge,
            12 => Op::Proof,
            13 => Op::Grant,
            _ => return None,
        })
    }

    /// Bytes that follow the header for a frame of this opcode with `len` / `status`.
    pub fn payload_len(self, len: u64, status: i32) -> u64 {
        match self {
            Op::Write
            | Op::Hello
            | Op::DescribeData
            | Op::Control
            | Op::ControlData
            | Op::Challenge
            | Op::Proof
            | Op::Grant => len,
            Op::ReadData if status == 0 => len,
            _ => 0,
        }
    }
}

/// Status values carried by responses.
pub mod status {
    pub const OK: i32 = 0;
    pub const OUT_OF_REGION: i32 = 1;
    pub const CHECKSUM: i32 = 2;
    pub const BAD_REQUEST: i32 = 3;
    pub const WRONG_SEGMENT: i32 = 4;
    /// The listener requires a proof of a token and did not get a valid one.
    pub const UNAUTHENTICATED: i32 = 5;
    /// The connection's tenant holds no valid grant covering the requested range.
    pub const FORBIDDEN: i32 = 6;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub op: Op,
    pub flags: u16,
    pub status: i32,
    pub crc: u32,
    pub id: u64,
    pub addr: u64,
    pub len: u64,
}

impl Header {
    pub fn new(op: Op, id: u64, addr: u64, len: u64) -> Self {
        Self {
            op,
            flags: 0,
            status: 0,
            crc: 0,
            id,
            addr,
            len,
        }
    }

    pub fn with_status(mut self, status: i32) -> Self {
        self.status = status;
        self
    }

    pub fn with_crc(mut self, crc: u32) -> Self {
        self.crc = crc;
        self.flags |= FLAG_CRC;
        self
    }

    pub fn has_crc(&self) -> bool {
        self.flags & FLAG_CRC != 0
    }

    /// Payload bytes that follow this header on the wire.
    pub fn payload_len(&self) -> u64 {
        self.op.payload_len(self.len, self.status)
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        b[2] = VERSION;
        b[3] = self.op as u8;
        b[4..6].copy_from_slice(&self.flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.status.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc.to_le_bytes());
        b[16..24].copy_from_slice(&self.id.to_le_bytes());
        b[24..32].copy_from_slice(&self.addr.to_le_bytes());
        b[32..40].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Parses and validates a header. Accepts any slice; shorter than 40 bytes is an error.
    pub fn decode(b: &[u8]) -> Result<Header, TransferError> {
        let bad = |m: String| Err(TransferError::Frame(m));
        if b.len() < HEADER_LEN {
            return bad(format!(
                "truncated header: {} of {HEADER_LEN} bytes",
                b.len()
            ));
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let magic = u16_at(0);
        if magic != MAGIC {
            return bad(format!("bad magic {magic:#06x}"));
        }
        if b[2] != VERSION {
            return bad(format!("unsupported version {}", b[2]));
        }
        let Some(op) = Op::from_u8(b[3]) else {
            return bad(format!("unknown opcode {}", b[3]));
        };
        let flags = u16_at(4);
        if flags & !FLAG_CRC != 0 {
            return bad(format!("unknown flags {flags:#x}"));
        }
        if u16_at(6) != 0 {
            return bad("reserved field is not zero".into());
        }
        let h = Header {
            op,
            flags,
            status: u32_at(8) as i32,
            crc: u32_at(12),
            id: u64_at(16),
            addr: u64_at(24),
            len: u64_at(32),
        };
        let limit = match op {
            Op::Write | Op::Read | Op::ReadData | Op::WriteAck => MAX_DATA_LEN,
            _ => MAX_CONTROL_LEN,
        };
        if h.len > limit {
            return bad(format!("{op:?} length {} exceeds {limit}", h.len));
        }
        if matches!(op, Op::Write | Op::Read) && h.addr.checked_add(h.len).is_none() {
            return bad(format!("{op:?} range {:#x}+{} wraps", h.addr, h.len));
        }
        Ok(h)
    }
}

/// The CRC32C of a payload.
pub fn crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let h = Header::new(Op::Write, 7, 0x1000, 4096).with_crc(0xdead_beef);
        let back = Header::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert!(back.has_crc());
        assert_eq!(back.payload_len(), 4096);
        let r = Header::new(Op::ReadData, 1, 0, 10).with_status(status::OUT_OF_REGION);
        assert_eq!(Header::decode(&r.encode()).unwrap().payload_len(), 0);
    }

    #[test]
    fn rejects_garbage() {
        let good = Header::new(Op::Read, 1, 2, 3).encode();
        assert!(Header::decode(&good[..39]).is_err());
        let mut b = good;
        b[0] = 0;
        assert!(Header::decode(&b)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut b = good;
        b[3] = 99;
        assert!(Header::decode(&b)
            .unwrap_err()
            .to_string()
            .contains("opcode"));
        let mut b = good;
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Header::decode(&b).is_err());
    }
}

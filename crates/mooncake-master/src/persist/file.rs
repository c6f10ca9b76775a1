//! The on-disk files of the index: a header line, then frames of one
//! [`ReplicationBatch`] each (`u32` length, the encoded batch, a `u32` checksum of
//! it, little-endian). A snapshot's last frame has `snapshot_end` set; a log has no
//! end (a torn last frame is what a kill during a write leaves, and is ignored).

use mooncake_proto::ReplicationBatch;
use prost::Message;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every file: what it is, and the format's version.
pub const HEADER: &[u8] = b"mooncake-master-index v1\n";

/// Largest frame accepted when reading (a length beyond it is corruption).
const MAX_FRAME: u32 = 256 << 20;

/// FNV-1a over the frame's bytes: catches torn and foreign bytes (not an attacker).
fn checksum(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &x in b {
        h ^= u32::from(x);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// One frame, ready to append.
pub fn frame(b: &ReplicationBatch) -> Vec<u8> {
    let body = b.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&checksum(&body).to_le_bytes());
    out
}

/// What reading a file found.
pub struct Frames {
    pub batches: Vec<ReplicationBatch>,
    /// Bytes after the last whole frame (a torn write), if any.
    pub torn_tail: usize,
}

/// Reads every whole frame of `path`; errors name the file and what is wrong with it.
pub fn read(path: &Path) -> Result<Frames, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&bytes, &path.display().to_string())
}

/// Every whole frame of a file's bytes; `name` is the file's name for errors.
pub fn parse(bytes: &[u8], name: &str) -> Result<Frames, String> {
    if !bytes.starts_with(HEADER) {
        return Err(format!(
            "{name} is not a mooncake master index file (wrong header)"
        ));
    }
    let mut at = HEADER.len();
    let mut batches = Vec::new();
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 4 {
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len > MAX_FRAME || rest.len() < 8 + len as usize {
            break;
        }
        let body = &rest[4..4 + len as usize];
        let sum = &rest[4 + len as usize..8 + len as usize];
        if checksum(body).to_le_bytes() != sum {
            break;
        }
        let b = ReplicationBatch::decode(body)
            .map_err(|e| format!("{name}: a frame does not decode: {e}"))?;
        batches.push(b);
        at += 8 + len as usize;
    }
    Ok(Frames {
        batches,
        torn_tail: bytes.len() - at,
    })
}

/// An index file open for appending.
pub struct Appender {
    file: std::fs::File,
    pub path: PathBuf,
    pub bytes: u64,
}

impl Appender {
    /// Creates (truncating) `path` and writes the header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.write_all(HEADER)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            bytes: HEADER.len() as u64,
        })
    }

    /// Appends bytes with one `write` (a kill cannot split what the kernel took).
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flushes to the device (a snapshot before it replaces the previous one).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_tail_or_foreign_file_is_told() {
        let d = std::env::temp_dir().join(format!("mc-persist-file-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("log");
        let mut a = Appender::create(&p).unwrap();
        for i in 0..3 {
            let b = ReplicationBatch {
                view_id: 7,
                head_seq: i,
                ..Default::default()
            };
            a.append(&frame(&b)).unwrap();
        }
        let torn = frame(&ReplicationBatch {
            view_id: 9,
            ..Default::default()
        });
        a.append(&torn[..torn.len() - 3]).unwrap();
        drop(a);
        let f = read(&p).unwrap();
        assert_eq!(f.batches.len(), 3);
        assert_eq!(f.batches[2].head_seq, 2);
        assert_eq!(f.torn_tail, torn.len() - 3);
        std::fs::write(&p, b"{\"not\": \"ours\"}").unwrap();
        let e = read(&p).err().unwrap();
        assert!(e.contains("not a mooncake master index file"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! The dummy protocol's bytes: length-prefixed frames and the little-endian encoding
//! of their fields. Every read is bounded: a frame may not claim more than
//! [`MAX_FRAME`] bytes, its body is read in chunks (memory grows with the bytes that
//! actually arrive, not with what a stranger's header claims), and a list's claimed
//! length is checked against the bytes left before anything is allocated.

use std::io::{self, Read, Write};

/// Largest frame either side accepts: a batch of values put through the socket.
pub const MAX_FRAME: usize = 512 << 20;
/// A body is read this much at a time.
const CHUNK: usize = 1 << 20;

/// Why a frame or a field could not be read.
#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    /// The peer sent something that is not this protocol.
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Malformed(m) => write!(f, "malformed frame: {m}"),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

fn malformed<T>(m: impl Into<String>) -> Result<T, WireError> {
    Err(WireError::Malformed(m.into()))
}

/// Reads a frame's 4-byte length header (already read by the caller: `header`) and
/// then its body.
pub fn read_body(r: &mut impl Read, header: [u8; 4]) -> Result<Vec<u8>, WireError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return malformed(format!("a frame of {len} bytes (limit {MAX_FRAME})"));
    }
    let mut body = Vec::with_capacity(len.min(CHUNK));
    while body.len() < len {
        let want = (len - body.len()).min(CHUNK);
        let at = body.len();
        body.resize(at + want, 0);
        r.read_exact(&mut body[at..])?;
    }
    Ok(body)
}

/// Reads one frame. `Ok(None)` at a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, WireError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    read_body(r, header).map(Some)
}

/// Writes one frame (header and body in one write when they fit a small buffer).
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message of {} bytes is over the frame limit of {MAX_FRAME}",
                    body.len()
                ),
            )
        })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Builds a message body.
#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn new(op: u8) -> Enc {
        Enc { buf: vec![op] }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn len(&mut self, n: usize) -> &mut Self {
        self.u32(n as u32)
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.len(v.len());
        self.buf.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn strs(&mut self, v: &[String]) -> &mut Self {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
        self
    }
    pub fn i32s(&mut self, v: &[i32]) -> &mut Self {
        self.len(v.len());
        for x in v {
            self.i32(*x);
        }
        self
    }
    pub fn i64s(&mut self, v: &[i64]) -> &mut Self {
        self.len(v.len());
        for x in v {
            self.i64(*x);
        }
        self
    }
}

/// Reads a message body; every getter fails instead of reading past the end.
pub struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return malformed(format!("a field of {n} bytes with {} left", self.buf.len()));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => malformed(format!("a boolean of {b}")),
        }
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// A list's length, checked against the bytes left (each element takes at
    /// least `min_item` bytes), so a claimed length never drives an allocation.
    pub fn len(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return malformed(format!("a list of {n} items in {} bytes", self.buf.len()));
        }
        Ok(n)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes()?).or_else(|_| malformed("a string that is not UTF-8"))
    }
    pub fn string(&mut self) -> Result<String, WireError> {
        self.str().map(str::to_string)
    }
    pub fn strs(&mut self) -> Result<Vec<String>, WireError> {
        let n = self.len(4)?;
        (0..n).map(|_| self.string()).collect()
    }
    pub fn i32s(&mut self) -> Result<Vec<i32>, WireError> {
        let n = self.len(4)?;
        (0..n).map(|_| self.i32()).collect()
    }
    pub fn i64s(&mut self) -> Result<Vec<i64>, WireError> {
        let n = self.len(8)?;
        (0..n).map(|_| self.i64()).collect()
    }
    /// Fails when bytes are left over: a message is exactly its fields.
    pub fn end(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            malformed(format!("{} bytes after the last field", self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut e = Enc::new(7);
        e.u64(1 << 40)
            .i32(-900)
            .str("k€y")
            .strs(&["a".into(), "".into()])
            .i64s(&[-1, 5]);
        let mut d = Dec::new(&e.buf);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u64().unwrap(), 1 << 40);
        assert_eq!(d.i32().unwrap(), -900);
        assert_eq!(d.str().unwrap(), "k€y");
        assert_eq!(d.strs().unwrap(), vec!["a".to_string(), String::new()]);
        assert_eq!(d.i64s().unwrap(), vec![-1, 5]);
        d.end().unwrap();
    }

    #[test]
    fn lying_lengths_are_refused_before_allocating() {
        let mut e = Enc::default();
        e.u32(u32::MAX);
        assert!(Dec::new(&e.buf).strs().is_err());
        assert!(Dec::new(&e.buf).bytes().is_err());
        let header = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(matches!(
            read_body(&mut &[][..], header),
            Err(WireError::Malformed(_))
        ));
        // A header claiming 1 MiB with 3 bytes behind it is an early end, not 1 MiB.
        let mut r: &[u8] = &[1, 2, 3];
        assert!(matches!(
            read_body(&mut r, (1u32 << 20).to_le_bytes()),
            Err(WireError::Io(_))
        ));
    }

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello").unwrap();
        let mut r: &[u8] = &out;
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"hello");
        assert!(read_frame(&mut r).unwrap().is_none());
        let mut cut: &[u8] = &out[..2];
        assert!(read_frame(&mut cut).is_err());
    }
}

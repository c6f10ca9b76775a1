//! The framed control-plane protocol: the same methods and protobuf messages as the
//! gRPC service, without HTTP/2. A client opens a TCP connection to the master's rpc
//! port and sends [`MAGIC`] (the master tells it from the HTTP/2 preface by peeking);
//! then strictly one request frame and one answer frame at a time. Concurrency comes
//! from several connections.
//!
//! Every frame is a little-endian `u32` length, then that many bytes:
//! - request: `u16` path length, the gRPC method path (`/mooncake.v1.Master/BatchExist`),
//!   the request's protobuf bytes;
//! - answer: `u32` gRPC status code, `i32` contract error code (`mc-error-code`, 0 when
//!   absent), `u32` status-message length, the status message (UTF-8), the answer's
//!   protobuf bytes (empty when the code is not OK).
//!
//! A frame longer than [`MAX_FRAME`] is refused before anything is allocated for it.

use std::fmt;
use std::io;

/// What a framed connection starts with (differs from HTTP/2's `PRI * HTTP/2.0`
/// preface from the first byte on).
pub const MAGIC: [u8; 8] = *b"MCRPC\x00\x00\x01";

/// The largest protobuf message either side sends (the master's gRPC limit).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The largest frame: a message of [`MAX_MESSAGE`] plus its path or status message.
pub const MAX_FRAME: usize = MAX_MESSAGE + 128 * 1024;

/// Bytes before every frame: its length.
pub const LEN_BYTES: usize = 4;

const ANSWER_HEAD: usize = 12;

/// Why a frame cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The frame (or the message to frame) exceeds [`MAX_FRAME`].
    TooLarge { len: usize, max: usize },
    /// The frame ends before the fields it declares.
    Truncated { need: usize, have: usize },
    /// A field does not make sense (e.g. a path that is not UTF-8).
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => write!(
                f,
                "frame of {len} bytes exceeds the limit of {max} bytes (64 MiB messages)"
            ),
            FrameError::Truncated { need, have } => {
                write!(f, "truncated frame: {need} bytes declared, {have} present")
            }
            FrameError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The length a frame header announces, checked against [`MAX_FRAME`].
pub fn frame_len(header: [u8; LEN_BYTES]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(len)
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), FrameError> {
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    out.extend_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Appends a whole request frame (length included) to `out`.
pub fn encode_request(path: &str, message: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let path_len =
        u16::try_from(path.len()).map_err(|_| FrameError::Malformed("method path too long"))?;
    put_len(out, 2 + path.len() + message.len())?;
    out.extend_from_slice(&path_len.to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(message);
    Ok(())
}

/// A decoded request frame.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestRef<'a> {
    pub path: &'a str,
    /// Where the protobuf message starts in the frame (it runs to the end).
    pub message_at: usize,
}

/// Decodes a request frame (the bytes after its length).
pub fn decode_request(frame: &[u8]) -> Result<RequestRef<'_>, FrameError> {
    let truncated = |need| FrameError::Truncated {
        need,
        have: frame.len(),
    };
    let head: [u8; 2] = frame
        .get(..2)
        .ok_or(truncated(2))?
        .try_into()
        .expect("two bytes");
    let end = 2 + u16::from_le_bytes(head) as usize;
    let path = frame.get(2..end).ok_or(truncated(end))?;
    let path =
        std::str::from_utf8(path).map_err(|_| FrameError::Malformed("method path not UTF-8"))?;
    Ok(RequestRef {
        path,
        message_at: end,
    })
}

/// Appends a whole answer frame (length included) to `out`.
pub fn encode_answer(
    code: u32,
    error_code: i32,
    status_message: &str,
    message: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    put_len(out, ANSWER_HEAD + status_message.len() + message.len())?;
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&error_code.to_le_bytes());
    out.extend_from_slice(&(status_message.len() as u32).to_le_bytes());
    out.extend_from_slice(status_message.as_bytes());
    out.extend_from_slice(message);
    Ok(())
}

/// A decoded answer frame.
#[derive(Debug, PartialEq, Eq)]
pub struct AnswerRef<'a> {
    /// The gRPC status code (0: OK).
    pub code: u32,
    /// The contract error code the status carried (`mc-error-code`), 0 when none.
    pub error_code: i32,
    pub status_message: &'a str,
    /// Where the protobuf message starts in the frame (it runs to the end; always at
    /// least [`ANSWER_MIN_PREFIX`] bytes in, so a gRPC length prefix can be written
    /// over the bytes before it).
    pub message_at: usize,
}

/// Bytes every answer frame has before its message.
pub const ANSWER_MIN_PREFIX: usize = ANSWER_HEAD;

/// Decodes an answer frame (the bytes after its length).
pub fn decode_answer(frame: &[u8]) -> Result<AnswerRef<'_>, FrameError> {
    if frame.len() < ANSWER_HEAD {
        return Err(FrameError::Truncated {
            need: ANSWER_HEAD,
            have: frame.len(),
        });
    }
    let word = |at: usize| <[u8; 4]>::try_from(&frame[at..at + 4]).expect("four bytes");
    let code = u32::from_le_bytes(word(0));
    let error_code = i32::from_le_bytes(word(4));
    let end = ANSWER_HEAD + u32::from_le_bytes(word(8)) as usize;
    let msg = frame.get(ANSWER_HEAD..end).ok_or(FrameError::Truncated {
        need: end,
        have: frame.len(),
    })?;
    let status_message =
        std::str::from_utf8(msg).map_err(|_| FrameError::Malformed("status message not UTF-8"))?;
    Ok(AnswerRef {
        code,
        error_code,
        status_message,
        message_at: end,
    })
}

/// Reads one frame's bytes (after its length) from a blocking reader into `buf`.
pub fn read_frame_sync(r: &mut impl io::Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut head = [0u8; LEN_BYTES];
    r.read_exact(&mut head)?;
    let len = frame_len(head)?;
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)
}

/// Writes the 5-byte gRPC message prefix (uncompressed, big-endian length) for a
/// message of `len` bytes into `dst`.
pub fn grpc_prefix(len: usize, dst: &mut [u8]) {
    dst[0] = 0;
    dst[1..5].copy_from_slice(&(len as u32).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        &frame[4..]
    }

    #[test]
    fn magic_is_not_the_http2_preface() {
        assert_ne!(MAGIC[0], b"PRI * HTTP/2.0"[0]);
    }

    #[test]
    fn request_round_trip() {
        let mut out = Vec::new();
        encode_request("/mooncake.v1.Master/BatchExist", b"\x0a\x03abc", &mut out).unwrap();
        let f = body(&out);
        let r = decode_request(f).unwrap();
        assert_eq!(r.path, "/mooncake.v1.Master/BatchExist");
        assert_eq!(&f[r.message_at..], b"\x0a\x03abc");
        // An empty message is a valid request.
        out.clear();
        encode_request("/p/q", b"", &mut out).unwrap();
        let r = decode_request(body(&out)).unwrap();
        assert_eq!((r.path, r.message_at), ("/p/q", 6));
    }

    #[test]
    fn answer_round_trip() {
        let mut out = Vec::new();
        encode_answer(5, -704, "object not found: k é", b"", &mut out).unwrap();
        let a = decode_answer(body(&out)).unwrap();
        assert_eq!(a.code, 5);
        assert_eq!(a.error_code, -704);
        assert_eq!(a.status_message, "object not found: k é");
        out.clear();
        encode_answer(0, 0, "", b"payload", &mut out).unwrap();
        let f = body(&out);
        let a = decode_answer(f).unwrap();
        assert_eq!((a.code, a.error_code, a.status_message), (0, 0, ""));
        assert_eq!(&f[a.message_at..], b"payload");
        assert!(a.message_at >= 5);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let head = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(frame_len(head), Err(FrameError::TooLarge { .. })));
        assert!(frame_len(u32::MAX.to_le_bytes()).is_err());
        assert_eq!(frame_len((MAX_FRAME as u32).to_le_bytes()), Ok(MAX_FRAME));
        let big = vec![0u8; MAX_FRAME];
        let mut out = Vec::new();
        let e = encode_request("/a/b", &big, &mut out).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        assert!(out.is_empty());
        assert!(encode_answer(0, 0, "", &big, &mut out).is_err());
        // Reading one announces the error before allocating.
        let mut r = std::io::Cursor::new(head.to_vec());
        let e = read_frame_sync(&mut r, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_frames_are_errors() {
        let mut out = Vec::new();
        encode_request("/mooncake.v1.Master/Heartbeat", b"xy", &mut out).unwrap();
        let f = body(&out);
        assert!(matches!(
            decode_request(&f[..10]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(decode_request(&f[..1]).is_err());
        out.clear();
        encode_answer(3, -1, "bad", b"", &mut out).unwrap();
        let f = body(&out);
        assert!(decode_answer(&f[..13]).is_err());
        assert!(decode_answer(&f[..4]).is_err());
        // A stream that ends mid-frame.
        out.clear();
        encode_request("/a/b", b"message", &mut out).unwrap();
        out.truncate(out.len() - 2);
        let e = read_frame_sync(&mut std::io::Cursor::new(out), &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // A path that is not UTF-8.
        let bad = [2u8, 0, 0xff, 0xfe];
        assert!(matches!(
            decode_request(&bad),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn grpc_prefix_is_big_endian() {
        let mut p = [9u8; 5];
        grpc_prefix(0x0102_0304, &mut p);
        assert_eq!(p, [0, 1, 2, 3, 4]);
    }
}

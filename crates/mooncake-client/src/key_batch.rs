//! A batch of keys encoded straight into a `BatchKeyRequest`'s protobuf bytes.
//!
//! Callers that hold keys as borrowed strings (the Python binding holds them as
//! Python `str` objects) would otherwise copy each into its own `String` only for the
//! encoder to copy it again; here each key is validated and appended to one buffer.
//! Keys that fail validation are remembered by position and not sent.

use crate::errors::check_key;
use bytes::{BufMut, Bytes, BytesMut};
use mooncake_common::MooncakeError;

/// `keys` is field 1 of `BatchKeyRequest`, length-delimited (wire type 2).
const KEYS_TAG: u8 = (1 << 3) | 2;

/// Keys in caller order: the valid ones encoded, the others with their error.
#[derive(Debug, Default)]
pub struct KeyBatch {
    buf: BytesMut,
    sent: usize,
    rejected: Vec<(usize, MooncakeError)>,
}

impl KeyBatch {
    /// An empty batch with room for `keys` keys of about `key_len` bytes.
    pub fn with_capacity(keys: usize, key_len: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(keys * (key_len + 3)),
            sent: 0,
            rejected: Vec::new(),
        }
    }

    /// Appends `key` (or records why it cannot be asked about).
    pub fn push(&mut self, key: &str) {
        let at = self.len();
        match check_key(key) {
            Ok(()) => {
                self.buf.put_u8(KEYS_TAG);
                prost::encoding::encode_varint(key.len() as u64, &mut self.buf);
                self.buf.put_slice(key.as_bytes());
                self.sent += 1;
            }
            Err(e) => self.rejected.push((at, e)),
        }
    }

    /// Keys pushed so far.
    pub fn len(&self) -> usize {
        self.sent + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (encoded request of the valid keys, how many, the rejected keys by position).
    pub(crate) fn into_parts(self) -> (Bytes, usize, Vec<(usize, MooncakeError)>) {
        (self.buf.freeze(), self.sent, self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_proto::BatchKeyRequest;
    use prost::Message;

    #[test]
    fn decodes_as_the_generated_message_and_keeps_rejects_by_position() {
        let long = "k".repeat(300);
        let too_long = "x".repeat(crate::MAX_KEY_LEN + 1);
        let mut b = KeyBatch::with_capacity(4, 8);
        for k in ["a", "", long.as_str(), too_long.as_str(), "ключ"] {
            b.push(k);
        }
        assert_eq!(b.len(), 5);
        let (bytes, sent, rejected) = b.into_parts();
        let req = BatchKeyRequest::decode(bytes).unwrap();
        assert_eq!(req.keys, vec!["a".to_string(), long, "ключ".to_string()]);
        assert_eq!(sent, 3);
        let at: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, vec![1, 3]);
    }
}

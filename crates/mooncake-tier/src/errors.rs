//! What the SSD tier reports when it cannot do what was asked.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The tier's directory or capacity is unusable; names the setting and the problem.
    #[error("SSD tier: {0}")]
    Config(String),
    /// A file operation failed (names the file and the operation).
    #[error("SSD tier: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The record does not fit the tier's file at that offset.
    #[error("SSD tier: record of {len} bytes at offset {offset} does not fit the tier's {capacity} bytes")]
    OutOfSpace {
        offset: u64,
        len: u64,
        capacity: u64,
    },
    /// No record holds the asked range (never written, replaced, or dropped as corrupt).
    #[error("SSD tier: no record holds [{offset}, {offset}+{len})")]
    Missing { offset: u64, len: u64 },
    /// The bytes on disk do not match their checksum: the record is dropped, never returned.
    #[error("SSD tier: record {key:?} at offset {offset} failed its checksum; dropped")]
    Checksum { key: String, offset: u64 },
}

impl TierError {
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| TierError::Io { what, path, source }
    }
}

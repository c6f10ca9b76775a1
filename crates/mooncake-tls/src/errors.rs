//! What can be wrong with TLS settings; every variant names the file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS {what} file {path}: cannot read it: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS {what} file {path}: {problem}")]
    Content {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("TLS: {0}")]
    Settings(String),
    /// An error found earlier, as its message.
    #[error("{0}")]
    Earlier(String),
}

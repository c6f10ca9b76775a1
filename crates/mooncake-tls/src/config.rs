//! The client side's settings from the environment, read once per process:
//! `MOONCAKE_TLS_CA_FILE` (the CA that signed the master's certificate: set, every
//! connection to the master and to an `https://` metadata server is TLS),
//! `MOONCAKE_TLS_CERT_FILE` and `MOONCAKE_TLS_KEY_FILE` (the client's own certificate
//! and key, for a master that requires client certificates).

use crate::errors::TlsError;
use crate::load::client_config;
use crate::stream::Connector;
use std::path::PathBuf;
use std::sync::OnceLock;

pub const CA_FILE_ENV: &str = "MOONCAKE_TLS_CA_FILE";
pub const CERT_FILE_ENV: &str = "MOONCAKE_TLS_CERT_FILE";
pub const KEY_FILE_ENV: &str = "MOONCAKE_TLS_KEY_FILE";

/// The client's TLS files as named by the environment (empty values count as unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClientFiles {
    pub fn from_env() -> Self {
        let get = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            ca: get(CA_FILE_ENV),
            cert: get(CERT_FILE_ENV),
            key: get(KEY_FILE_ENV),
        }
    }

    /// The connector these files make: `None` without a CA (plain connections); an
    /// error naming the file or variable that is wrong.
    pub fn connector(&self) -> Result<Option<Connector>, TlsError> {
        let Some(ca) = &self.ca else {
            if self.cert.is_some() || self.key.is_some() {
                return Err(TlsError::Settings(format!(
                    "{CERT_FILE_ENV}/{KEY_FILE_ENV} are set but {CA_FILE_ENV} is not: \
                     set it to the CA file that signed the master's certificate"
                )));
            }
            return Ok(None);
        };
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => {
                return Err(TlsError::Settings(format!(
                    "{CERT_FILE_ENV} and {KEY_FILE_ENV} go together: set both or neither"
                )))
            }
        };
        Ok(Some(Connector::new(client_config(ca, identity)?)))
    }
}

/// The process's client connector, from the environment at first use: `Ok(None)`
/// when `MOONCAKE_TLS_CA_FILE` is unset. The result (an error too) is kept for the
/// life of the process, so every connection agrees.
pub fn client() -> Result<Option<Connector>, TlsError> {
    static CLIENT: OnceLock<Result<Option<Connector>, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            ClientFiles::from_env()
                .connector()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(TlsError::Earlier)
}

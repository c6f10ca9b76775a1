//! A certificate and key that are read again when their files change, so that a
//! renewed certificate is presented without a restart.
//!
//! Every handshake asks the resolver for the identity; at most once per [`POLL`] it
//! looks at the files' modification times, and when either changed it reads both
//! again. A pair that does not load (a key written before its certificate, a
//! truncated file) keeps the last good identity and is logged once per change;
//! connections already open keep the certificate they were made with.

use crate::errors::TlsError;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the files' modification times are looked at (on a handshake).
pub const POLL: Duration = Duration::from_secs(1);

type Stamp = (Option<SystemTime>, Option<SystemTime>);

struct State {
    stamp: Stamp,
    checked: Instant,
    current: Arc<CertifiedKey>,
}

/// The identity in `cert` and `key`, re-read when they change.
pub struct ReloadingIdentity {
    cert: PathBuf,
    key: PathBuf,
    load: fn(&Path, &Path) -> Result<Arc<CertifiedKey>, TlsError>,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingIdentity")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl ReloadingIdentity {
    /// Loads the pair once with `load`; an error here is the caller's to report (a
    /// process does not start with files it cannot use).
    pub(crate) fn new(
        cert: &Path,
        key: &Path,
        load: fn(&Path, &Path) -> Result<Arc<CertifiedKey>, TlsError>,
    ) -> Result<Self, TlsError> {
        let stamp = (mtime(cert), mtime(key));
        let current = load(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            load,
            state: Mutex::new(State {
                stamp,
                checked: Instant::now(),
                current,
            }),
        })
    }

    /// The identity in force, read again first if the files changed (looked at no
    /// more than once per [`POLL`]).
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checked.elapsed() >= POLL {
            st.checked = Instant::now();
            let stamp = (mtime(&self.cert), mtime(&self.key));
            if stamp != st.stamp {
                st.stamp = stamp;
                match (self.load)(&self.cert, &self.key) {
                    Ok(k) => {
                        st.current = k;
                        tracing::info!(cert = %self.cert.display(), "TLS: certificate reloaded");
                    }
                    Err(e) => tracing::warn!(
                        "TLS: {e}; keeping the certificate loaded before (it is read again when the files change)"
                    ),
                }
            }
        }
        st.current.clone()
    }
}

impl ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

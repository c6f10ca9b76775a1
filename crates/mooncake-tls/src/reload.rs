//! Files that are read again when they change, so that a renewed certificate or a
//! rotated CA takes effect without a restart.
//!
//! Every handshake asks for what is in force; at most once per [`POLL`] that looks at
//! the files' modification times, and when any changed it loads them again. Files
//! that do not load (a key written before its certificate, a truncated CA file) keep
//! the last good contents and are logged once per change; connections already open
//! keep what they were made with.
//!
//! [`ReloadingIdentity`] is a certificate and its key (what a server or client
//! presents); the CA files (what a peer's certificate must chain to) are watched the
//! same way by the verifiers in `verify`.

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

struct State<T> {
    stamp: Vec<Option<SystemTime>>,
    checked: Instant,
    current: T,
}

type Loader<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// What `load` makes of `paths`, made again when any of them changes.
pub(crate) struct Watched<T> {
    paths: Vec<PathBuf>,
    /// What the files are, for the log ("certificate", "CA").
    what: &'static str,
    load: Loader<T>,
    state: Mutex<State<T>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl<T: Clone> Watched<T> {
    /// Loads once; an error here is the caller's to report (a process does not start
    /// with files it cannot use).
    pub(crate) fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let stamp = paths.iter().map(|p| mtime(p)).collect();
        let current = load()?;
        Ok(Self {
            paths,
            what,
            load: Box::new(load),
            state: Mutex::new(State {
                stamp,
                checked: Instant::now(),
                current,
            }),
        })
    }

    /// What is in force, loaded again first if the files changed (looked at no more
    /// than once per [`POLL`]).
    pub(crate) fn current(&self) -> T {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checked.elapsed() >= POLL {
            st.checked = Instant::now();
            let stamp: Vec<_> = self.paths.iter().map(|p| mtime(p)).collect();
            if stamp != st.stamp {
                st.stamp = stamp;
                match (self.load)() {
                    Ok(v) => {
                        st.current = v;
                        tracing::info!(file = %self.paths[0].display(), "TLS: {} reloaded", self.what);
                    }
                    Err(e) => tracing::warn!(
                        "TLS: {e}; keeping the {} loaded before (it is read again when the files change)",
                        self.what
                    ),
                }
            }
        }
        st.current.clone()
    }
}

/// The identity in `cert` and `key`, re-read when they change.
pub struct ReloadingIdentity {
    cert: PathBuf,
    key: PathBuf,
    inner: Watched<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingIdentity")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl ReloadingIdentity {
    /// Loads the pair once with `load`; an error here is the caller's to report (a
    /// process does not start with files it cannot use).
    pub(crate) fn new(
        cert: &Path,
        key: &Path,
        load: fn(&Path, &Path) -> Result<Arc<CertifiedKey>, TlsError>,
    ) -> Result<Self, TlsError> {
        let (c, k) = (cert.to_path_buf(), key.to_path_buf());
        let inner = Watched::new("certificate", vec![c.clone(), k.clone()], move || {
            load(&c, &k)
        })?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            inner,
        })
    }

    /// The identity in force, read again first if the files changed (looked at no
    /// more than once per [`POLL`]).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.inner.current()
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

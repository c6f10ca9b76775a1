//! PEM files into rustls configurations. Whatever is wrong with a file is an error
//! that names it; nothing here panics on bad input.

use crate::errors::TlsError;
use crate::reload::ReloadingIdentity;
use crate::reload::Watched;
use crate::verify::{ClientVerifier, ServerVerifier, Trust};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The provider every configuration uses (explicitly, so that another crate enabling
/// a second provider cannot make the choice ambiguous). rustls deprecates it for
/// lacking post-quantum key exchange; aws-lc-rs has that, at the cost of cmake and a
/// long C build.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn content(what: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError::Content {
        what,
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// Every certificate in a PEM file; none is an error.
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(what, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content(
            what,
            path,
            "holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\")",
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => content(
            "key",
            path,
            "holds no private key (expected PEM \"-----BEGIN PRIVATE KEY-----\")",
        ),
        e => content("key", path, format!("not valid PEM: {e}")),
    })
}

/// The CA file's certificates as roots, and as themselves (see `verify`).
fn roots(path: &Path) -> Result<(Arc<RootCertStore>, Vec<CertificateDer<'static>>), TlsError> {
    let certs = certificates("CA", path)?;
    let mut roots = RootCertStore::empty();
    for c in &certs {
        roots
            .add(c.clone())
            .map_err(|e| content("CA", path, format!("unusable certificate: {e}")))?;
    }
    Ok((Arc::new(roots), certs))
}

/// A certificate chain with its key, checked to match.
fn identity(cert: &Path, key: &Path) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let chain = certificates("certificate", cert)?;
    let key_der = private_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| content("key", key, format!("unusable private key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .or_else(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown) => Ok(()),
            e => Err(e),
        })
        .map_err(|e| {
            content(
                "key",
                key,
                format!("does not match the certificate in {}: {e}", cert.display()),
            )
        })?;
    Ok(Arc::new(certified))
}

/// The server side's check of client certificates against the CA file, read again
/// when it changes.
fn client_trust(ca: &Path) -> Result<Arc<Trust<dyn ClientCertVerifier>>, TlsError> {
    let (roots, trusted) = roots(ca)?;
    let inner: Arc<dyn ClientCertVerifier> =
        WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| content("CA", ca, e))?;
    Ok(Arc::new(Trust { inner, trusted }))
}

/// The client side's check of the server's certificate against the CA file.
fn server_trust(ca: &Path) -> Result<Arc<Trust<WebPkiServerVerifier>>, TlsError> {
    let (roots, trusted) = roots(ca)?;
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| content("CA", ca, e))?;
    Ok(Arc::new(Trust { inner, trusted }))
}

/// `make(ca)`, made again when the CA file changes.
fn watched<T: Clone + 'static>(
    ca: &Path,
    make: fn(&Path) -> Result<T, TlsError>,
) -> Result<Watched<T>, TlsError> {
    let path = ca.to_path_buf();
    Watched::new("CA", vec![path.clone()], move || make(&path))
}

/// A server's configuration: its certificate chain and key (read again when the
/// files change, see `reload`), and with `client_ca` a requirement that clients
/// present a certificate that CA signed (the CA file is read again when it changes
/// too). The server sends no session tickets: a
/// client's idle check looks for bytes nobody asked for.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = Arc::new(ReloadingIdentity::new(cert, key, identity)?);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(Arc::new(ClientVerifier {
            ca: watched(ca, client_trust)?,
        })),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// A client's configuration: the CA the server's certificate must chain to, and
/// optionally the client's own certificate and key (`(cert, key)`) for mutual TLS,
/// read again when their files change (the CA file too).
pub fn client_config(
    ca: &Path,
    identity_files: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = ServerVerifier {
        ca: watched(ca, server_trust)?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let cfg = match identity_files {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_cert_resolver(Arc::new(ReloadingIdentity::new(cert, key, identity)?)),
    };
    Ok(Arc::new(cfg))
}

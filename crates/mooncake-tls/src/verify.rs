//! Certificate verification: the WebPKI checks, plus trust in a certificate that is
//! itself listed in the CA file. `openssl req -x509` makes a self-signed certificate
//! that is also a CA (`basicConstraints CA:TRUE`); WebPKI refuses a CA certificate as
//! a server's or client's own, so "trust this certificate" (the CA file holding the
//! very certificate the peer presents) would otherwise fail. Such an exact match is
//! accepted as pinned: the peer still proves it holds the key in the handshake.
//!
//! The CA file is watched (`reload`): a rotated CA is in force for the next
//! handshake, and one that does not load keeps the CA before. A server therefore
//! names no CAs in its certificate request (the names would go stale with a rotation):
//! clients send their one certificate, and the check is the verifier's.

use crate::reload::Watched;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

fn pinned(trusted: &[CertificateDer<'static>], end_entity: &CertificateDer<'_>) -> bool {
    trusted.iter().any(|c| c.as_ref() == end_entity.as_ref())
}

/// A CA file's verifier and certificates, as loaded at one time.
pub(crate) struct Trust<V: ?Sized> {
    pub(crate) inner: Arc<V>,
    pub(crate) trusted: Vec<CertificateDer<'static>>,
}

pub(crate) struct ServerVerifier {
    pub(crate) ca: Watched<Arc<Trust<WebPkiServerVerifier>>>,
}

impl std::fmt::Debug for ServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerVerifier")
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ca = self.ca.current();
        match ca.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(_) if pinned(&ca.trusted, end_entity) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.ca
            .current()
            .inner
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.ca
            .current()
            .inner
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.current().inner.supported_verify_schemes()
    }
}

pub(crate) struct ClientVerifier {
    pub(crate) ca: Watched<Arc<Trust<dyn ClientCertVerifier>>>,
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientVerifier")
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let ca = self.ca.current();
        match ca.inner.verify_client_cert(end_entity, intermediates, now) {
            Err(_) if pinned(&ca.trusted, end_entity) => Ok(ClientCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.ca
            .current()
            .inner
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.ca
            .current()
            .inner
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.current().inner.supported_verify_schemes()
    }
}

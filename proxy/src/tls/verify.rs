//! Certificate verifiers that read the current trust bundle at every handshake, so a bundle change
//! (an anchor added, then the old one removed) applies to new handshakes without rebuilding TLS
//! configurations or touching established connections. The chain and name checks themselves are
//! rustls's WebPKI verifiers, built once per bundle (`identity::bundle`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use crate::identity::credentials::Credentials;
use crate::tls::refusal::NO_BUNDLE;

/// Verifies peers against whatever bundle [`Credentials`] holds at the time of the handshake.
#[derive(Debug)]
pub struct CurrentBundle(pub Arc<Credentials>);

impl CurrentBundle {
    fn signature_algorithms(&self) -> &rustls::crypto::WebPkiSupportedAlgorithms {
        &self.0.provider().signature_verification_algorithms
    }
}

impl ServerCertVerifier for CurrentBundle {
    /// The chain leads to an anchor of the bundle and the leaf names `server_name` (the expected
    /// identity, sent as SNI) as a DNS SAN.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let bundle = self
            .0
            .bundle()
            .ok_or_else(|| Error::General(NO_BUNDLE.into()))?;
        bundle.server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.signature_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.signature_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signature_algorithms().supported_schemes()
    }
}

impl ClientCertVerifier for CurrentBundle {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they would have to outlive a bundle swap, and TLS 1.3 clients send their
    /// certificate without them.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    /// The chain leads to an anchor of the bundle and allows client authentication. Which
    /// identities may call is authorization's business (later), not the handshake's.
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let bundle = self
            .0
            .bundle()
            .ok_or_else(|| Error::General(NO_BUNDLE.into()))?;
        bundle
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.signature_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.signature_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signature_algorithms().supported_schemes()
    }
}

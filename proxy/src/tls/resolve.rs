//! Certificate resolvers that hand rustls the proxy's current certificate at every handshake, so a
//! refresh applies to the next handshake without rebuilding TLS configurations.

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::identity::credentials::Credentials;

#[derive(Debug)]
pub struct CurrentCertificate(pub Arc<Credentials>);

impl ResolvesClientCert for CurrentCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.certificate().map(|cert| cert.certified.clone())
    }

    fn has_certs(&self) -> bool {
        self.0.certificate().is_some()
    }
}

impl ResolvesServerCert for CurrentCertificate {
    /// `None` (not certified yet) aborts the handshake; the client sees an alert.
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.certificate().map(|cert| cert.certified.clone())
    }
}

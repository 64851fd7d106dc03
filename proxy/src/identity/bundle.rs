//! The trust bundle: the anchors (PEM) every peer certificate and the identity service must chain
//! to, and the verifiers built from them. Parsed whole or refused whole: a file with one bad anchor
//! is a bad file, and the last good bundle stays in use.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not PEM: {0:?}")]
    Pem(rustls::pki_types::pem::Error),
    #[error("no CERTIFICATE in the bundle")]
    Empty,
    #[error("anchor #{index} is not a usable trust anchor: {source}")]
    BadAnchor {
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build a verifier: {0}")]
    Verifier(String),
}

/// One parsed bundle and the verifiers that use it.
pub struct TrustBundle {
    /// Short SHA-256 fingerprints of the anchors, in file order (for logs).
    pub fingerprints: Vec<String>,
    /// Verifies servers (peer proxies, the identity service): chain to an anchor, and the name.
    pub server_verifier: Arc<WebPkiServerVerifier>,
    /// Verifies clients of the inbound side: chain to an anchor, client authentication required.
    pub client_verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("anchors", &self.fingerprints)
            .finish()
    }
}

impl TrustBundle {
    pub fn parse(pem: &[u8], provider: &Arc<CryptoProvider>) -> Result<Self, BundleError> {
        let mut roots = RootCertStore::empty();
        let mut fingerprints = Vec::new();
        for (index, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = cert.map_err(BundleError::Pem)?;
            fingerprints.push(fingerprint(&cert));
            roots
                .add(cert)
                .map_err(|source| BundleError::BadAnchor { index, source })?;
        }
        if roots.is_empty() {
            return Err(BundleError::Empty);
        }
        let roots = Arc::new(roots);
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| BundleError::Verifier(e.to_string()))?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| BundleError::Verifier(e.to_string()))?;
        Ok(Self {
            fingerprints,
            server_verifier,
            client_verifier,
        })
    }

    pub fn read(
        path: &std::path::Path,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, BundleError> {
        let pem = std::fs::read(path).map_err(|source| BundleError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&pem, provider)
    }
}

/// The first 8 bytes of a certificate's SHA-256, in hex: enough to tell anchors apart in logs.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor_pem() -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn parses_anchors_and_refuses_bad_files_whole() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let two = format!("{}{}", anchor_pem(), anchor_pem());
        let bundle = TrustBundle::parse(two.as_bytes(), &provider).unwrap();
        assert_eq!(bundle.fingerprints.len(), 2);
        assert!(matches!(
            TrustBundle::parse(b"", &provider),
            Err(BundleError::Empty)
        ));
        assert!(TrustBundle::parse(b"garbage", &provider).is_err());
        let truncated = &two[..two.len() - 40];
        assert!(TrustBundle::parse(truncated.as_bytes(), &provider).is_err());
        let broken = format!(
            "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            anchor_pem()
        );
        assert!(matches!(
            TrustBundle::parse(broken.as_bytes(), &provider),
            Err(BundleError::BadAnchor { index: 1, .. })
        ));
    }
}

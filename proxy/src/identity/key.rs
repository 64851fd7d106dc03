//! The proxy's private key: ECDSA P-256, made in memory at start. It is never written, never
//! logged (`Debug` prints no key material) and never sent: only CSRs signed with it leave the
//! process. Certificate refreshes reuse it, as Linkerd's proxy does.

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate an ECDSA P-256 key: {0}")]
    Generate(rcgen::Error),
    #[error("the key is not usable for TLS: {0}")]
    Tls(rustls::Error),
    #[error("cannot make a CSR for {name:?}: {source}")]
    Csr {
        name: String,
        #[source]
        source: rcgen::Error,
    },
}

pub struct LocalKey {
    pair: rcgen::KeyPair,
    signing: Arc<dyn SigningKey>,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey(ECDSA P-256, in memory)")
    }
}

impl LocalKey {
    pub fn generate() -> Result<Self, KeyError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(KeyError::Generate)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(&der).map_err(KeyError::Tls)?;
        Ok(Self { pair, signing })
    }

    /// A PKCS#10 request (PEM) whose only subject alternative name is the DNS name `name`.
    pub fn csr_pem(&self, name: &str) -> Result<String, KeyError> {
        let csr_error = |source| KeyError::Csr {
            name: name.to_string(),
            source,
        };
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string()]).map_err(csr_error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params
            .serialize_request(&self.pair)
            .and_then(|csr| csr.pem())
            .map_err(csr_error)
    }

    /// The key as rustls signs with it (shared by every certificate made for it).
    pub fn signing_key(&self) -> Arc<dyn SigningKey> {
        self.signing.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_csr_and_never_prints_the_key() {
        let key = LocalKey::generate().unwrap();
        let csr = key
            .csr_pem("web.shop.serviceaccount.identity.cluster.local")
            .unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(!csr.contains("PRIVATE KEY"));
        assert_eq!(format!("{key:?}"), "LocalKey(ECDSA P-256, in memory)");
        assert!(key.signing_key().public_key().is_some());
    }
}

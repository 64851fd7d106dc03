//! What the proxy proves and trusts right now: its certificate (with the in-memory key) and the
//! trust bundle. Both sit behind `ArcSwap`s that TLS reads at every handshake (see `tls::resolve`
//! and `tls::verify`), so a refresh or a bundle change applies to new handshakes at once and never
//! touches established connections.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;

use super::bundle::TrustBundle;
use super::key::{KeyError, LocalKey};

/// A certificate the proxy holds, with its key.
pub struct Certificate {
    pub certified: Arc<CertifiedKey>,
    pub valid_until: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum UnusableCertificate {
    #[error("the answer holds no certificate")]
    Empty,
    #[error("the certificate is not for this proxy's key: {0}")]
    KeyMismatch(rustls::Error),
    #[error("no trust bundle is loaded to check it against")]
    NoBundle,
    #[error("it does not verify against the trust bundle as {name}: {source}")]
    Untrusted {
        name: String,
        #[source]
        source: rustls::Error,
    },
}

pub struct Credentials {
    name: String,
    own_name: ServerName<'static>,
    provider: Arc<CryptoProvider>,
    key: LocalKey,
    certificate: ArcSwapOption<Certificate>,
    bundle: ArcSwapOption<TrustBundle>,
    bundle_changed: Notify,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .field("certified", &self.certificate.load().is_some())
            .field("bundle", &self.bundle.load())
            .finish()
    }
}

impl Credentials {
    /// Makes the key. `name` has been checked (`identity::name::check`), so it is a DNS name.
    pub fn new(name: &str, provider: Arc<CryptoProvider>) -> Result<Self, KeyError> {
        let own_name = ServerName::try_from(name.to_string()).map_err(|_| {
            KeyError::Tls(rustls::Error::General(format!(
                "{name:?} is not a DNS name"
            )))
        })?;
        Ok(Self {
            name: name.to_string(),
            own_name,
            provider,
            key: LocalKey::generate()?,
            certificate: ArcSwapOption::empty(),
            bundle: ArcSwapOption::empty(),
            bundle_changed: Notify::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key(&self) -> &LocalKey {
        &self.key
    }

    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    pub fn certificate(&self) -> Option<Arc<Certificate>> {
        self.certificate.load_full()
    }

    pub fn bundle(&self) -> Option<Arc<TrustBundle>> {
        self.bundle.load_full()
    }

    /// Makes `bundle` the one every new handshake verifies against, and wakes the refresher.
    pub fn set_bundle(&self, bundle: TrustBundle) {
        self.bundle.store(Some(Arc::new(bundle)));
        self.bundle_changed.notify_waiters();
    }

    /// Resolves at the next bundle change.
    pub async fn bundle_changed(&self) {
        self.bundle_changed.notified().await
    }

    /// Checks a chain the identity service issued (leaf first): it is for this proxy's key, chains
    /// to the current bundle, names this proxy's identity and is valid now.
    pub fn check(
        &self,
        chain: Vec<CertificateDer<'static>>,
        valid_until: SystemTime,
    ) -> Result<Certificate, UnusableCertificate> {
        if chain.is_empty() {
            return Err(UnusableCertificate::Empty);
        }
        let certified = CertifiedKey::new(chain, self.key.signing_key());
        certified
            .keys_match()
            .map_err(UnusableCertificate::KeyMismatch)?;
        self.verify_own(&certified)?;
        Ok(Certificate {
            certified: Arc::new(certified),
            valid_until,
        })
    }

    /// Whether the current certificate still verifies against the current bundle (after an anchor
    /// was dropped from the bundle, it may not).
    pub fn current_is_trusted(&self) -> bool {
        self.certificate()
            .is_some_and(|cert| self.verify_own(&cert.certified).is_ok())
    }

    fn verify_own(&self, certified: &CertifiedKey) -> Result<(), UnusableCertificate> {
        let bundle = self.bundle().ok_or(UnusableCertificate::NoBundle)?;
        let (leaf, intermediates) = certified
            .cert
            .split_first()
            .ok_or(UnusableCertificate::Empty)?;
        bundle
            .server_verifier
            .verify_server_cert(leaf, intermediates, &self.own_name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|source| UnusableCertificate::Untrusted {
                name: self.name.clone(),
                source,
            })
    }

    /// Makes `certificate` the one every new handshake presents.
    pub fn install(&self, certificate: Certificate) {
        self.certificate.store(Some(Arc::new(certificate)));
    }
}

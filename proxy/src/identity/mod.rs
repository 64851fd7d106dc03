//! The proxy's identity: a key made in memory, a certificate for
//! `<sa>.<ns>.serviceaccount.identity.<trust-domain>` from the operator's identity service, and
//! the trust bundle peers are verified against.
//!
//! - [`name`]: identity names and the service name derived from them;
//! - [`key`]: the in-memory ECDSA P-256 key and its CSRs;
//! - [`bundle`] / [`bundle_watch`]: the trust bundle, and reloading its file;
//! - [`credentials`]: the current certificate and bundle, read by every TLS handshake;
//! - [`certify`]: one call to the identity service; [`refresh`]: staying certified.

pub mod bundle;
pub mod bundle_watch;
pub mod certify;
pub mod credentials;
pub mod key;
pub mod name;
pub mod refresh;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::Lifecycle;
use crate::metrics::MtlsMetrics;
use certify::CertifyClient;
use credentials::Credentials;

/// A certify call (connect, TLS, answer) gives up after this long and is retried.
const CERTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy needs to obtain and keep its identity (from the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentitySettings {
    /// `<sa>.<ns>.serviceaccount.identity.<trust-domain>`.
    pub name: String,
    pub trust_domain: String,
    /// The identity service, `host:port`.
    pub service_addr: String,
    /// The DNS name the service's certificate must carry (`weft-identity.<trust-domain>`).
    pub service_name: String,
    /// The projected ServiceAccount token (audience `identity.weft.dev`), read at every call.
    pub token_file: PathBuf,
    /// The trust bundle (PEM anchors), reloaded when it changes.
    pub trust_bundle_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Key(#[from] key::KeyError),
    #[error("identity service name: {0}")]
    ServiceName(String),
}

/// Makes the key and starts the bundle watcher and the refresher. The proxy is not ready until
/// the first certificate arrives.
pub fn start(
    settings: &IdentitySettings,
    bundle_poll: Duration,
    metrics: MtlsMetrics,
    lifecycle: Arc<Lifecycle>,
) -> Result<Arc<Credentials>, IdentityError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let credentials = Arc::new(Credentials::new(&settings.name, provider)?);
    let client = CertifyClient::new(
        settings.service_addr.clone(),
        &settings.service_name,
        &credentials,
        CERTIFY_TIMEOUT,
    )
    .map_err(IdentityError::ServiceName)?;
    tracing::info!(
        identity = %settings.name,
        service = %settings.service_addr,
        service_name = %settings.service_name,
        "identity: key made in memory; certifying"
    );
    // Loaded before the first certify call, which needs it to verify the service.
    bundle_watch::load(&settings.trust_bundle_file, &credentials, &metrics);
    tokio::spawn(bundle_watch::watch(
        settings.trust_bundle_file.clone(),
        bundle_poll,
        credentials.clone(),
        metrics.clone(),
    ));
    let refresher = refresh::Refresher {
        credentials: credentials.clone(),
        client,
        token_file: settings.token_file.clone(),
        metrics,
        lifecycle,
    };
    tokio::spawn(refresher.run());
    Ok(credentials)
}

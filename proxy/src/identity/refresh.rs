//! Keeps the proxy certified: a certificate at start (not ready until then, with the reason on
//! `/ready`), a refresh at 70 % of its remaining life (clamped to 10 s - 24 h, Linkerd's rule), and
//! bounded retries with backoff when a call fails. The ServiceAccount token is read from its file
//! at every call: the kubelet rotates it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::time::Instant;
use tracing::{info, warn};
use weft_wire::identity::{CertifyRequest, CertifyResponse};

use crate::identity::certify::{CertifyClient, CertifyError};
use crate::identity::credentials::{Certificate, Credentials};
use crate::lifecycle::Lifecycle;
use crate::metrics::MtlsMetrics;

pub const MIN_REFRESH: Duration = Duration::from_secs(10);
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Retries never wait longer than this (unless the service asks to, with `Retry-After`).
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// When to refresh a certificate that is valid for `remaining` more.
pub fn refresh_in(remaining: Duration) -> Duration {
    remaining.mul_f64(0.7).clamp(MIN_REFRESH, MAX_REFRESH)
}

/// The wait before retry number `failures` (1 for the first), before jitter.
pub fn retry_in(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(RETRY_MAX)
}

pub struct Refresher {
    pub credentials: Arc<Credentials>,
    pub client: CertifyClient,
    pub token_file: PathBuf,
    pub metrics: MtlsMetrics,
    pub lifecycle: Arc<Lifecycle>,
}

impl Refresher {
    pub async fn run(self) {
        let name = self.credentials.name().to_string();
        self.lifecycle
            .set_not_ready(Some("identity: not certified yet".into()));
        let mut failures = 0u32;
        loop {
            let wait = match self.certify_once().await {
                Ok(certificate) => {
                    failures = 0;
                    let valid_until = certificate.valid_until;
                    let remaining = valid_until
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    self.credentials.install(certificate);
                    let expiry = valid_until
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    self.metrics.cert_expiration.set(expiry as i64);
                    self.metrics.cert_refresh_count.inc();
                    let next = refresh_in(remaining);
                    info!(
                        identity = %name,
                        valid_until_unix = expiry,
                        next_refresh_in = ?next,
                        "certified"
                    );
                    self.lifecycle.set_not_ready(None);
                    next
                }
                Err(error) => {
                    failures += 1;
                    let reason = error.reason().to_string();
                    self.metrics.refresh_failed(&reason);
                    let jitter = 0.8 + 0.2 * fastrand::f64();
                    let wait = retry_in(failures)
                        .mul_f64(jitter)
                        .max(error.retry_after().unwrap_or_default());
                    let current = self.credentials.certificate();
                    let usable = current
                        .as_ref()
                        .is_some_and(|c| c.valid_until > SystemTime::now());
                    if usable {
                        warn!(identity = %name, %reason, failures, retry_in = ?wait, "certificate refresh failed (the current certificate is still valid): {error}");
                    } else {
                        let state = if current.is_some() {
                            "certificate expired"
                        } else {
                            "not certified"
                        };
                        warn!(identity = %name, %reason, failures, retry_in = ?wait, "{state}: {error}");
                        self.lifecycle
                            .set_not_ready(Some(format!("identity: {state}: {reason}: {error}")));
                    }
                    wait
                }
            };
            self.wait(wait).await;
        }
    }

    /// Sleeps `delay`, or less when a new trust bundle makes an earlier call worthwhile: the proxy
    /// has no certificate yet (the bundle may have been what was missing), or its certificate no
    /// longer verifies against the bundle.
    async fn wait(&self, delay: Duration) {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.credentials.bundle_changed() => {
                    if self.credentials.certificate().is_none() {
                        return;
                    }
                    if !self.credentials.current_is_trusted() {
                        info!("the trust bundle changed and no longer trusts the current certificate: refreshing now");
                        return;
                    }
                }
            }
        }
    }

    async fn certify_once(&self) -> Result<Certificate, CertifyError> {
        let path = self.token_file.display().to_string();
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|source| CertifyError::TokenUnreadable {
                path: path.clone(),
                source,
            })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(CertifyError::TokenEmpty(path));
        }
        let name = self.credentials.name();
        let request = CertifyRequest {
            identity: name.to_string(),
            token: token.to_string(),
            csr_pem: self.credentials.key().csr_pem(name)?,
        };
        let response = self.client.certify(&request).await?;
        let (chain, valid_until) = read_answer(&response)?;
        self.credentials
            .check(chain, valid_until)
            .map_err(|e| CertifyError::Unusable(e.to_string()))
    }
}

/// The leaf and its chain (DER, leaf first) and the expiry of a certify answer.
pub fn read_answer(
    response: &CertifyResponse,
) -> Result<(Vec<CertificateDer<'static>>, SystemTime), CertifyError> {
    let unusable = |what: &str, e: rustls::pki_types::pem::Error| {
        CertifyError::Unusable(format!("{what} is not PEM: {e:?}"))
    };
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(response.leaf_pem.as_bytes()) {
        chain.push(cert.map_err(|e| unusable("leafPem", e))?);
    }
    if chain.len() != 1 {
        return Err(CertifyError::Unusable(format!(
            "leafPem holds {} certificates, expected one",
            chain.len()
        )));
    }
    for cert in CertificateDer::pem_slice_iter(response.chain_pem.as_bytes()) {
        chain.push(cert.map_err(|e| unusable("chainPem", e))?);
    }
    let seconds = u64::try_from(response.valid_until_unix).map_err(|_| {
        CertifyError::Unusable(format!(
            "validUntilUnix {} is before 1970",
            response.valid_until_unix
        ))
    })?;
    Ok((chain, UNIX_EPOCH + Duration::from_secs(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_at_70_percent_within_bounds() {
        assert_eq!(refresh_in(Duration::from_secs(20)), Duration::from_secs(14));
        assert_eq!(
            refresh_in(Duration::from_secs(24 * 3600)),
            Duration::from_secs(60480)
        );
        assert_eq!(refresh_in(Duration::from_secs(5)), MIN_REFRESH);
        assert_eq!(refresh_in(Duration::ZERO), MIN_REFRESH);
        assert_eq!(refresh_in(Duration::from_secs(30 * 86400)), MAX_REFRESH);
    }

    #[test]
    fn retries_back_off_up_to_a_bound() {
        assert_eq!(retry_in(1), Duration::from_millis(500));
        assert_eq!(retry_in(2), Duration::from_secs(1));
        assert_eq!(retry_in(5), Duration::from_secs(8));
        assert_eq!(retry_in(6), RETRY_MAX);
        assert_eq!(retry_in(1000), RETRY_MAX);
    }

    #[test]
    fn reads_answers_and_refuses_bad_ones() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = CertifyResponse {
            leaf_pem: cert.pem(),
            chain_pem: cert.pem(),
            valid_until_unix: 100,
        };
        let (chain, until) = read_answer(&good).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(until, UNIX_EPOCH + Duration::from_secs(100));
        let two_leaves = CertifyResponse {
            leaf_pem: format!("{}{}", cert.pem(), cert.pem()),
            ..good.clone()
        };
        assert!(matches!(
            read_answer(&two_leaves),
            Err(CertifyError::Unusable(_))
        ));
        let negative = CertifyResponse {
            valid_until_unix: -1,
            ..good
        };
        assert!(read_answer(&negative).is_err());
    }
}

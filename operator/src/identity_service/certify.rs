//! One certify call, start to end: read the request, find the trust domain's issuer, have the API server
//! review the token, rate-limit the (now authenticated) identity, check the CSR, and sign.
//!
//! The order matters: the rate limit is keyed by an identity only after its token proved it, so nobody
//! can spend another proxy's budget; the CSR is parsed only after that, so unauthenticated callers cost
//! no signature checks.

use super::{
    csr,
    issuers::IssuerSet,
    leaf,
    rate_limit::RateLimiter,
    refusal::Refusal,
    request::{self, Certifiable},
    review::Reviewer,
    token,
};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::Instrument;
use weft_wire::identity::{CertifyResponse, refusal};

/// Signs proxies' certificates.
pub struct Certifier<R> {
    issuers: Arc<ArcSwap<IssuerSet>>,
    limiter: Mutex<RateLimiter>,
    reviewer: R,
    metrics: Arc<Metrics>,
}

impl<R: Reviewer> Certifier<R> {
    pub fn new(
        issuers: Arc<ArcSwap<IssuerSet>>,
        limiter: RateLimiter,
        reviewer: R,
        metrics: Arc<Metrics>,
    ) -> Self {
        for reason in super::refusal::ALL_REASONS {
            metrics.declare_certify_refusal(reason);
        }
        Self {
            issuers,
            limiter: Mutex::new(limiter),
            reviewer,
            metrics,
        }
    }

    /// Answers one certify call whose body is `body`, counting and logging the decision.
    pub async fn certify(&self, body: &[u8]) -> Result<CertifyResponse, Refusal> {
        let span = tracing::info_span!("certify", identity = tracing::field::Empty);
        async {
            let result = self.decide(body, Timestamp::now, Instant::now).await;
            match &result {
                Ok(response) => {
                    self.metrics.certified();
                    tracing::info!(valid_until = response.valid_until_unix, "certified");
                }
                Err(refused) => {
                    self.metrics.certify_refused(refused.reason);
                    tracing::info!(reason = refused.reason, why = %refused.message, "refused");
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Counts and logs a call refused before its body could be read.
    pub fn record_refusal(&self, refused: &Refusal) {
        self.metrics.certify_refused(refused.reason);
        tracing::info!(reason = refused.reason, why = %refused.message, "certify call refused");
    }

    /// The decision, with the clocks passed in (wall time for certificates, a monotonic one for the
    /// rate limit) so tests control them.
    async fn decide(
        &self,
        body: &[u8],
        wall_clock: impl Fn() -> Timestamp,
        monotonic: impl Fn() -> Instant,
    ) -> Result<CertifyResponse, Refusal> {
        let request = {
            let issuers = self.issuers.load();
            if issuers.domains.is_empty() {
                return Err(Refusal::no_issuer(
                    "no Identity is known yet (none exists, or the service is still reading them)",
                ));
            }
            request::parse(body, issuers.trust_domains())?
        };
        tracing::Span::current().record("identity", request.identity.as_str());
        // Refuse at once when there is nothing to sign with: no need to bother the API server.
        self.issuers.load().issuer(&request.trust_domain)?;

        self.authenticate(&request).await?;
        self.limiter
            .lock()
            .try_acquire(&request.identity, monotonic())
            .map_err(|wait| Refusal::rate_limited(&request.identity, wait))?;
        let public_key = csr::check(&request.csr_pem, &request.identity)?;

        // Read the issuer again: it may have rotated while the API server was reviewing the token.
        let issuer = self.issuers.load().issuer(&request.trust_domain)?;
        let now = wall_clock();
        let window = leaf::window(now, issuer.leaf_lifetime, issuer.clock_skew, &issuer.cert)?;
        let signed = leaf::sign(&issuer, &request.identity, &public_key, window)
            .map_err(|e| Refusal::no_issuer(format!("signing failed: {e}")))?;
        Ok(CertifyResponse {
            leaf_pem: signed.pem,
            chain_pem: issuer.chain_pem.clone(),
            valid_until_unix: signed.cert.not_after.as_second(),
        })
    }

    async fn authenticate(&self, request: &Certifiable) -> Result<(), Refusal> {
        let status = self
            .reviewer
            .review(&request.token)
            .await
            .map_err(|why| Refusal::new(refusal::REVIEW_FAILED, why))?;
        token::judge(
            &status,
            &request.token,
            &request.service_account,
            &request.namespace,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_service::{
        csr::tests::csr_for,
        issuers::{Domain, tests::issuer},
        rate_limit::Limits,
    };
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
    use std::time::Duration;
    use weft_wire::identity::{CertifyRequest, TOKEN_AUDIENCE};

    const IDENTITY: &str = "web.shop.serviceaccount.identity.cluster.local";

    /// Says every token is the ServiceAccount its text names (`system:serviceaccount:ns:sa`), or fails
    /// with the text after `fail:`.
    struct FakeReviewer;

    impl Reviewer for FakeReviewer {
        async fn review(&self, token: &str) -> Result<TokenReviewStatus, String> {
            if let Some(why) = token.strip_prefix("fail:") {
                return Err(why.to_string());
            }
            Ok(TokenReviewStatus {
                authenticated: Some(true),
                audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
                user: Some(UserInfo {
                    username: Some(token.to_string()),
                    ..UserInfo::default()
                }),
                error: None,
            })
        }
    }

    fn now_secs() -> i64 {
        Timestamp::now().as_second()
    }

    fn certifier(
        issuer: Option<Result<crate::identity_service::issuers::CurrentIssuer, String>>,
    ) -> Certifier<FakeReviewer> {
        let mut set = IssuerSet::default();
        if let Some(issuer) = issuer {
            set.domains.insert(
                "cluster.local".into(),
                Domain {
                    identity: "mesh".into(),
                    issuer: issuer.map(Arc::new),
                },
            );
        }
        Certifier::new(
            Arc::new(ArcSwap::from_pointee(set)),
            RateLimiter::new(Limits::new(2, 1.0).expect("limits")),
            FakeReviewer,
            Arc::new(Metrics::new()),
        )
    }

    fn body(token: &str, csr_names: &[&str]) -> Vec<u8> {
        let (_, csr_pem) = csr_for(csr_names);
        serde_json::to_vec(&CertifyRequest {
            identity: IDENTITY.into(),
            token: token.into(),
            csr_pem,
        })
        .expect("json")
    }

    const WEB: &str = "system:serviceaccount:shop:web";

    #[tokio::test]
    async fn certifies_and_counts() {
        let certifier = certifier(Some(Ok(issuer(now_secs() - 60, now_secs() + 3600))));
        let response = certifier
            .certify(&body(WEB, &[IDENTITY]))
            .await
            .expect("certified");
        assert!(response.leaf_pem.contains("BEGIN CERTIFICATE"));
        assert!(response.valid_until_unix <= now_secs() + 3600);
        assert!(
            certifier
                .metrics
                .render()
                .contains("weft_operator_identity_certify_total 1")
        );
    }

    #[tokio::test]
    async fn each_refusal_has_its_reason_and_is_counted() {
        let certifier = certifier(Some(Ok(issuer(now_secs() - 60, now_secs() + 3600))));
        let cases = [
            (
                body("system:serviceaccount:shop:db", &[IDENTITY]),
                refusal::IDENTITY_MISMATCH,
            ),
            (
                body(WEB, &["db.shop.serviceaccount.identity.cluster.local"]),
                refusal::BAD_CSR,
            ),
            (
                body("fail:connection refused", &[IDENTITY]),
                refusal::REVIEW_FAILED,
            ),
            (b"{}".to_vec(), refusal::BAD_REQUEST),
        ];
        for (input, reason) in cases {
            let refused = certifier.certify(&input).await.expect_err(reason);
            assert_eq!(refused.reason, reason);
            assert!(
                certifier.metrics.render().contains(&format!(
                    "weft_operator_identity_certify_refused_total{{reason=\"{reason}\"}} 1"
                )),
                "{reason} counted"
            );
        }
    }

    #[tokio::test]
    async fn rate_limits_an_authenticated_identity_only() {
        let certifier = certifier(Some(Ok(issuer(now_secs() - 60, now_secs() + 3600))));
        let start = Instant::now();
        let at = |offset: u64| move || start + Duration::from_millis(offset);
        // Refused tokens do not spend the identity's budget.
        for _ in 0..5 {
            let refused = certifier
                .decide(
                    &body("system:serviceaccount:shop:db", &[IDENTITY]),
                    Timestamp::now,
                    at(0),
                )
                .await
                .expect_err("mismatch");
            assert_eq!(refused.reason, refusal::IDENTITY_MISMATCH);
        }
        for _ in 0..2 {
            certifier
                .decide(&body(WEB, &[IDENTITY]), Timestamp::now, at(0))
                .await
                .expect("within the burst");
        }
        let refused = certifier
            .decide(&body(WEB, &[IDENTITY]), Timestamp::now, at(0))
            .await
            .expect_err("limited");
        assert_eq!(refused.reason, refusal::RATE_LIMITED);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
        certifier
            .decide(&body(WEB, &[IDENTITY]), Timestamp::now, at(1000))
            .await
            .expect("refilled");
    }

    #[tokio::test]
    async fn never_signs_without_a_valid_issuer() {
        let none = certifier(None);
        assert_eq!(
            none.certify(&body(WEB, &[IDENTITY]))
                .await
                .expect_err("none")
                .reason,
            refusal::NO_ISSUER
        );
        let broken = certifier(Some(Err("the issuer Secret does not exist".into())));
        assert_eq!(
            broken
                .certify(&body(WEB, &[IDENTITY]))
                .await
                .expect_err("broken")
                .reason,
            refusal::NO_ISSUER
        );
        // An issuer that was valid when loaded but has expired since: the clock says so at signing.
        let expiring = certifier(Some(Ok(issuer(now_secs() - 60, now_secs() + 3600))));
        let later = || Timestamp::from_second(now_secs() + 3601).expect("time");
        let refused = expiring
            .decide(&body(WEB, &[IDENTITY]), later, Instant::now)
            .await
            .expect_err("expired");
        assert_eq!(refused.reason, refusal::NO_ISSUER);
    }
}

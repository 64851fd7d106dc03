//! When to renew an issuer and whether the one in the Secret can stay: cert-manager's semantics,
//! as pure functions of the certificate, the spec and the clock.

use super::pki::{self, CertInfo, PkiError};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The moment an issuer valid for `[not_before, not_after]` is renewed: `not_after - renew_before` when
/// `renew_before` is set and shorter than the certificate's actual lifetime, otherwise two thirds into the
/// lifetime (cert-manager's default; it applies the same fallback when the lifetime was capped).
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    renew_before: Option<Duration>,
) -> Timestamp {
    let lifetime = not_after.duration_since(not_before);
    let default_before = lifetime / 3;
    let before = match renew_before.and_then(|d| SignedDuration::try_from(d).ok()) {
        Some(before) if before < lifetime => before,
        _ => default_before,
    };
    not_after.checked_sub(before).unwrap_or(not_before)
}

/// The validity window of the next issuer: from `now - backdate` (so peers whose clocks run a little
/// slow accept it) to `now + duration`, never past the anchor's own expiry.
pub fn validity_window(
    now: Timestamp,
    duration: Duration,
    backdate: Duration,
    anchor_not_after: Timestamp,
) -> (Timestamp, Timestamp, bool) {
    let not_before = now.checked_sub(backdate).unwrap_or(now);
    let wanted = now.checked_add(duration).unwrap_or(anchor_not_after);
    if wanted > anchor_not_after {
        (not_before, anchor_not_after, true)
    } else {
        (not_before, wanted, false)
    }
}

/// What is in an issuer Secret, as read from the API (raw; nothing validated yet).
#[derive(Debug, Clone, Default)]
pub struct SecretContents {
    pub tls_crt: Option<Vec<u8>>,
    pub tls_key: Option<Vec<u8>>,
    /// The spec hash the issuer was made for (annotation), if recorded.
    pub spec_hash: Option<String>,
    /// The revision the issuer was made as (annotation), if recorded.
    pub revision: Option<i64>,
}

/// An issuer certificate whose key is present and matches: the Secret is internally consistent.
#[derive(Debug, Clone)]
pub struct IssuerView {
    /// The issuer first, then any intermediates the Secret carries; never empty (see [`inspect`]).
    chain: Vec<CertInfo>,
}

impl IssuerView {
    /// The issuer certificate.
    pub fn cert(&self) -> &CertInfo {
        &self.chain[0]
    }

    /// The issuer, then any intermediates.
    pub fn chain(&self) -> &[CertInfo] {
        &self.chain
    }
}

/// Why a Secret's content is not a usable issuer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    #[error("has no tls.crt")]
    MissingCertificate,
    #[error("has no tls.key")]
    MissingKey,
    #[error("tls.crt is unusable: {0}")]
    InvalidCertificate(PkiError),
    #[error("tls.key is unusable: {0}")]
    InvalidKey(PkiError),
    #[error("tls.key does not belong to tls.crt")]
    KeyMismatch,
    #[error("tls.crt is not a CA certificate")]
    NotCa,
}

/// Reads and cross-checks a Secret's certificate and key.
pub fn inspect(contents: &SecretContents) -> Result<IssuerView, SecretProblem> {
    let crt = contents
        .tls_crt
        .as_deref()
        .ok_or(SecretProblem::MissingCertificate)?;
    let key = contents
        .tls_key
        .as_deref()
        .ok_or(SecretProblem::MissingKey)?;
    let chain = pki::parse_certificates(crt).map_err(SecretProblem::InvalidCertificate)?;
    let key = pki::parse_private_key(key).map_err(SecretProblem::InvalidKey)?;
    pki::key_matches(&key, &chain[0]).map_err(|_| SecretProblem::KeyMismatch)?;
    if !chain[0].is_ca || !chain[0].may_sign_certificates {
        return Err(SecretProblem::NotCa);
    }
    Ok(IssuerView { chain })
}

/// Why the operator issues a new issuer; the `Issuing` condition's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReissueReason {
    /// There is no issuer Secret.
    DoesNotExist,
    /// The Secret's content is not a consistent CA (garbage, missing key, key of another certificate).
    Invalid(SecretProblem),
    /// The issuer is not signed by the current signing anchor (the anchor was changed or replaced).
    IncorrectIssuer(String),
    /// The spec fields the certificate is made from changed.
    SpecChanged,
    /// The issuer has expired (renewal was missed, e.g. the operator was down).
    Expired,
    /// The renewal time has come.
    Renewing,
}

impl ReissueReason {
    /// The `Issuing` condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DoesNotExist => "DoesNotExist",
            Self::Invalid(_) => "InvalidIssuer",
            Self::IncorrectIssuer(_) => "IncorrectIssuer",
            Self::SpecChanged => "SpecChanged",
            Self::Expired => "Expired",
            Self::Renewing => "Renewing",
        }
    }

    /// The `Issuing` condition message.
    pub fn message(&self) -> String {
        match self {
            Self::DoesNotExist => "the issuer Secret does not exist".into(),
            Self::Invalid(problem) => format!("the issuer Secret {problem}"),
            Self::IncorrectIssuer(why) => {
                format!("the issuer does not chain to the signing anchor: {why}")
            }
            Self::SpecChanged => {
                "the spec changed (trust domain, duration or key algorithm)".into()
            }
            Self::Expired => "the issuer has expired".into(),
            Self::Renewing => "the renewal time has come".into(),
        }
    }
}

/// The decision for a managed issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The issuer stays; renew at `renewal_time`.
    Keep { renewal_time: Timestamp },
    /// Issue a new one now.
    Reissue(ReissueReason),
}

/// Decides whether the issuer read from the Secret (`current`: absent, broken, or consistent) can stay,
/// given the anchor that signs now, the spec hash it must have been made for, and the clock.
pub fn decide(
    current: Option<&Result<IssuerView, SecretProblem>>,
    recorded_spec_hash: Option<&str>,
    signing_anchor: &CertInfo,
    spec_hash: &str,
    renew_before: Option<Duration>,
    now: Timestamp,
) -> Verdict {
    let view = match current {
        None => return Verdict::Reissue(ReissueReason::DoesNotExist),
        Some(Err(problem)) => return Verdict::Reissue(ReissueReason::Invalid(problem.clone())),
        Some(Ok(view)) => view,
    };
    let cert = view.cert();
    if let Err(error) = pki::verify_signed_by(cert, signing_anchor) {
        return Verdict::Reissue(ReissueReason::IncorrectIssuer(error.to_string()));
    }
    if recorded_spec_hash != Some(spec_hash) {
        return Verdict::Reissue(ReissueReason::SpecChanged);
    }
    if cert.is_expired_at(now) {
        return Verdict::Reissue(ReissueReason::Expired);
    }
    let renewal_time = renewal_time(cert.not_before, cert.not_after, renew_before);
    if now >= renewal_time {
        return Verdict::Reissue(ReissueReason::Renewing);
    }
    Verdict::Keep { renewal_time }
}

/// How long a certificate has left, as a fraction of its lifetime (0 when expired).
pub fn remaining_fraction(cert: &CertInfo, now: Timestamp) -> f64 {
    let lifetime = cert.not_after.duration_since(cert.not_before).as_secs_f64();
    let left = cert.not_after.duration_since(now).as_secs_f64();
    if lifetime <= 0.0 || left <= 0.0 {
        0.0
    } else {
        left / lifetime
    }
}

/// Whether an anchor is close enough to expiry to warn: under a third of its lifetime or under 30 days left.
/// A generated one-year anchor warns from day 335; a test anchor of an hour from minute 40.
pub fn anchor_expiring_soon(cert: &CertInfo, now: Timestamp) -> bool {
    const THIRTY_DAYS: SignedDuration = SignedDuration::from_hours(30 * 24);
    let lifetime = cert.not_after.duration_since(cert.not_before);
    let threshold = if lifetime / 3 < THIRTY_DAYS {
        lifetime / 3
    } else {
        THIRTY_DAYS
    };
    !cert.is_expired_at(now) && cert.not_after.duration_since(now) < threshold
}

#[cfg(test)]
mod tests {
    use super::super::pki::tests::{NOW, anchor, at};
    use super::*;
    use weft_crds::identity::KeyAlgorithm;

    const HOUR: u64 = 3600;

    #[test]
    fn default_renewal_is_two_thirds_into_the_lifetime() {
        // cert-manager: 90 days -> renew 30 days before expiry.
        let day = 86400;
        let t = renewal_time(at(0), at(90 * day), None);
        assert_eq!(t, at(60 * day));
    }

    #[test]
    fn renew_before_counts_back_from_expiry() {
        // Linkerd's cert-manager example: 48h with renewBefore 25h -> renew 23h in.
        let t = renewal_time(at(0), at(48 * 3600), Some(Duration::from_secs(25 * HOUR)));
        assert_eq!(t, at(23 * 3600));
        // The e2e scenario: 30s with renewBefore 15s.
        assert_eq!(
            renewal_time(at(100), at(130), Some(Duration::from_secs(15))),
            at(115)
        );
    }

    #[test]
    fn renew_before_not_shorter_than_the_lifetime_falls_back_to_two_thirds() {
        // E.g. the lifetime was capped by the anchor's expiry.
        let t = renewal_time(at(0), at(30), Some(Duration::from_secs(45)));
        assert_eq!(t, at(20));
    }

    #[test]
    fn validity_is_backdated_and_capped_at_the_anchor() {
        let (nb, na, capped) = validity_window(
            at(1000),
            Duration::from_secs(100),
            Duration::from_secs(20),
            at(5000),
        );
        assert_eq!((nb, na, capped), (at(980), at(1100), false));
        let (_, na, capped) = validity_window(
            at(1000),
            Duration::from_secs(100),
            Duration::from_secs(20),
            at(1050),
        );
        assert_eq!((na, capped), (at(1050), true));
    }

    fn issuer_secret(
        not_before: i64,
        not_after: i64,
    ) -> (super::super::pki::SigningAnchor, SecretContents) {
        let (_, signing) = anchor();
        let issued = pki::issue_issuer(
            &signing,
            "cluster.local",
            KeyAlgorithm::EcdsaP256,
            at(NOW),
            at(not_before),
            at(not_after),
        )
        .expect("issues");
        let contents = SecretContents {
            tls_crt: Some(issued.cert_pem.into_bytes()),
            tls_key: Some(issued.key_pem.into_bytes()),
            spec_hash: Some("h1".into()),
            revision: Some(3),
        };
        (signing, contents)
    }

    fn verdict_at(contents: &SecretContents, signing: &CertInfo, now: i64) -> Verdict {
        let view = inspect(contents);
        decide(
            Some(&view),
            contents.spec_hash.as_deref(),
            signing,
            "h1",
            Some(Duration::from_secs(15)),
            at(now),
        )
    }

    #[test]
    fn a_fresh_issuer_stays_until_its_renewal_time() {
        let (signing, contents) = issuer_secret(NOW - 20, NOW + 30);
        assert_eq!(
            verdict_at(&contents, &signing.cert, NOW),
            Verdict::Keep {
                renewal_time: at(NOW + 15)
            }
        );
        assert_eq!(
            verdict_at(&contents, &signing.cert, NOW + 15),
            Verdict::Reissue(ReissueReason::Renewing)
        );
        assert_eq!(
            verdict_at(&contents, &signing.cert, NOW + 31),
            Verdict::Reissue(ReissueReason::Expired)
        );
    }

    #[test]
    fn a_missing_secret_is_issued_at_once() {
        let (signing, _) = issuer_secret(NOW, NOW + 30);
        let v = decide(None, None, &signing.cert, "h1", None, at(NOW));
        assert_eq!(v, Verdict::Reissue(ReissueReason::DoesNotExist));
    }

    #[test]
    fn a_spec_change_reissues() {
        let (signing, contents) = issuer_secret(NOW, NOW + 30);
        let view = inspect(&contents);
        let v = decide(Some(&view), Some("h0"), &signing.cert, "h1", None, at(NOW));
        assert_eq!(v, Verdict::Reissue(ReissueReason::SpecChanged));
    }

    #[test]
    fn an_issuer_of_another_anchor_is_replaced() {
        let (_, contents) = issuer_secret(NOW, NOW + 30);
        let (_, other) = anchor();
        let v = verdict_at(&contents, &other.cert, NOW);
        assert!(
            matches!(v, Verdict::Reissue(ReissueReason::IncorrectIssuer(_))),
            "{v:?}"
        );
    }

    #[test]
    fn broken_secrets_are_named_precisely() {
        let (_, good) = issuer_secret(NOW, NOW + 30);
        let (_, other) = issuer_secret(NOW, NOW + 30);

        let mut no_key = good.clone();
        no_key.tls_key = None;
        assert_eq!(inspect(&no_key).err(), Some(SecretProblem::MissingKey));

        let mut garbage = good.clone();
        garbage.tls_crt = Some(b"garbage".to_vec());
        assert!(matches!(
            inspect(&garbage),
            Err(SecretProblem::InvalidCertificate(_))
        ));

        let mut swapped = good.clone();
        swapped.tls_key = other.tls_key.clone();
        assert_eq!(inspect(&swapped).err(), Some(SecretProblem::KeyMismatch));

        // A leaf (not a CA) with its own key.
        let leaf = rcgen::generate_simple_self_signed(vec!["x.example".to_string()]).expect("leaf");
        let not_ca = SecretContents {
            tls_crt: Some(leaf.cert.pem().into_bytes()),
            tls_key: Some(leaf.signing_key.serialize_pem().into_bytes()),
            ..Default::default()
        };
        assert_eq!(inspect(&not_ca).err(), Some(SecretProblem::NotCa));
    }

    #[test]
    fn anchors_warn_in_their_last_third_or_last_month() {
        let (issued, _) = anchor(); // one day + one minute of lifetime
        assert!(!anchor_expiring_soon(&issued.cert, at(NOW)));
        assert!(anchor_expiring_soon(&issued.cert, at(NOW + 86400 - 3600)));
        assert!(
            !anchor_expiring_soon(&issued.cert, at(NOW + 86401)),
            "expired is not 'soon'"
        );
        assert!(remaining_fraction(&issued.cert, at(NOW + 86401)) == 0.0);
    }
}

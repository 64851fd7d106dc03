//! External mode: another manager (typically cert-manager) writes the issuer Secret. The operator checks
//! that it is a CA whose key matches, valid now, and chaining to an anchor of the bundle, and reports it.
//! It never writes that Secret.

use super::{
    anchors::{Anchor, Anchors},
    objects,
    pki::{self, CertInfo},
    renewal::{self, IssuerView, SecretProblem},
    report::{Report, rfc3339},
    settings::ObjectName,
};
use crate::context::Context;
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{Api, ResourceExt};
use std::time::Duration;
use weft_crds::Identity;

/// How often an external issuer is re-checked at least (cert-manager may rotate it at any time; the watch
/// usually tells sooner).
const RECHECK: Duration = Duration::from_secs(600);

/// What is wrong with an external issuer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalProblem {
    #[error("the issuer Secret {0} does not exist")]
    NotFound(ObjectName),
    #[error("the issuer Secret {object} {problem}")]
    Invalid {
        object: ObjectName,
        problem: SecretProblem,
    },
    #[error("the issuer {subject} does not chain to an anchor of the trust bundle: {why}")]
    NotTrusted { subject: String, why: String },
    #[error("the issuer {subject} expired at {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("the issuer {subject} is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
}

impl ExternalProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "IssuerSecretNotFound",
            Self::Invalid {
                problem: SecretProblem::KeyMismatch,
                ..
            } => "IssuerKeyMismatch",
            Self::Invalid {
                problem: SecretProblem::NotCa,
                ..
            } => "IssuerNotCA",
            Self::Invalid { .. } => "IssuerInvalid",
            Self::NotTrusted { .. } => "IssuerNotTrusted",
            Self::Expired { .. } => "IssuerExpired",
            Self::NotYetValid { .. } => "IssuerNotYetValid",
        }
    }
}

/// Checks an external issuer read from `object` against the bundle's anchors at `now`.
pub fn validate(
    object: &ObjectName,
    secret: Option<&Secret>,
    bundle: &[Anchor],
    now: Timestamp,
) -> Result<IssuerView, ExternalProblem> {
    let secret = secret.ok_or_else(|| ExternalProblem::NotFound(object.clone()))?;
    let view = renewal::inspect(&objects::secret_contents(secret)).map_err(|problem| {
        ExternalProblem::Invalid {
            object: object.clone(),
            problem,
        }
    })?;
    let cert = view.cert();
    if cert.is_expired_at(now) {
        return Err(ExternalProblem::Expired {
            subject: cert.subject.clone(),
            not_after: rfc3339(cert.not_after),
        });
    }
    if now < cert.not_before {
        return Err(ExternalProblem::NotYetValid {
            subject: cert.subject.clone(),
            not_before: rfc3339(cert.not_before),
        });
    }
    chains_to_bundle(view.chain(), bundle).map_err(|why| ExternalProblem::NotTrusted {
        subject: cert.subject.clone(),
        why,
    })?;
    Ok(view)
}

/// `chain[0]` is signed by `chain[1]` ... and the last is signed by (or is) an anchor.
fn chains_to_bundle(chain: &[CertInfo], bundle: &[Anchor]) -> Result<(), String> {
    for pair in chain.windows(2) {
        pki::verify_signed_by(&pair[0], &pair[1]).map_err(|e| e.to_string())?;
    }
    let Some(last) = chain.last() else {
        return Err("no certificate".into());
    };
    if bundle
        .iter()
        .any(|a| a.cert.fingerprint == last.fingerprint)
    {
        return Ok(());
    }
    let mut reasons = Vec::new();
    for anchor in bundle {
        match pki::verify_signed_by(last, &anchor.cert) {
            Ok(()) => return Ok(()),
            Err(error) => reasons.push(error.to_string()),
        }
    }
    if reasons.is_empty() {
        Err("the bundle is empty".into())
    } else {
        Err(reasons.join("; "))
    }
}

/// Validates and reports the external issuer of `identity`; returns when to look again.
pub async fn reconcile(
    ctx: &Context,
    identity: &Identity,
    anchors: &Anchors,
    object: &ObjectName,
    now: Timestamp,
    report: &mut Report,
) -> Result<Duration, super::Error> {
    report.not_issuing("External", format!("{object} is managed outside weft"));
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &object.namespace);
    let secret = api.get_opt(&object.name).await?;

    let Some(bundle) = anchors.bundle() else {
        let problem = anchors.problem().map(|p| (p.reason(), p.to_string()));
        let (reason, message) =
            problem.unwrap_or_else(|| ("AnchorInvalid".into(), "no usable anchor".into()));
        report.not_ready(&reason, message);
        return Ok(super::managed::RETRY_PROBLEM);
    };

    match validate(object, secret.as_ref(), &bundle, now) {
        Ok(view) => {
            let cert = view.cert();
            let previous_not_after = report.previous().not_after.clone();
            let rotated = previous_not_after.as_deref() != Some(rfc3339(cert.not_after).as_str());
            let revision = match (report.previous().revision, rotated) {
                (Some(revision), true) => revision + 1,
                (Some(revision), false) => revision,
                (None, _) => 1,
            };
            if rotated && previous_not_after.is_some() {
                report.normal(
                    "IssuerUpdated",
                    format!(
                        "{object} now holds {} valid until {}",
                        cert.subject,
                        rfc3339(cert.not_after)
                    ),
                );
            }
            // cert-manager's default renewal point, for display: the external manager decides the real one.
            let renewal = renewal::renewal_time(cert.not_before, cert.not_after, None);
            report.issuer(cert, Some(revision), Some(renewal));
            ctx.metrics
                .issuer_expires_at(&identity.name_any(), cert.not_after.as_second());
            report.ready(
                "ExternalIssuerValid",
                format!(
                    "{object} holds {} valid until {}, chaining to the trust bundle",
                    cert.subject,
                    rfc3339(cert.not_after)
                ),
            );
            if renewal::remaining_fraction(cert, now) < 1.0 / 3.0 {
                report.warn(
                    "IssuerExpiringSoon",
                    format!(
                        "the external issuer in {object} expires at {} and has not been renewed",
                        rfc3339(cert.not_after)
                    ),
                );
            }
            let expiry = super::managed::until(now, cert.not_after);
            Ok(expiry.min(RECHECK))
        }
        Err(problem) => {
            report.no_issuer();
            report.not_ready(problem.reason(), problem.to_string());
            Ok(super::managed::RETRY_PROBLEM)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pki::tests::{NOW, anchor, at};
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;
    use weft_crds::identity::KeyAlgorithm;

    fn object() -> ObjectName {
        ObjectName {
            namespace: "weft-system".into(),
            name: "cm-issuer".into(),
        }
    }

    fn tls_secret(crt: &str, key: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([
                ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
                ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
            ])),
            ..Secret::default()
        }
    }

    fn bundle_of(cert: &CertInfo) -> Vec<Anchor> {
        vec![Anchor {
            cert: cert.clone(),
            source: object(),
            signing: true,
        }]
    }

    #[test]
    fn a_cert_manager_style_issuer_is_accepted() {
        let (root, signing) = anchor();
        let issued = pki::issue_issuer(
            &signing,
            "cluster.local",
            KeyAlgorithm::EcdsaP256,
            at(NOW),
            at(NOW),
            at(NOW + 3600),
        )
        .expect("issues");
        let secret = tls_secret(&issued.cert_pem, &issued.key_pem);
        let view = validate(
            &object(),
            Some(&secret),
            &bundle_of(&root.cert),
            at(NOW + 1),
        )
        .expect("valid");
        assert_eq!(view.cert().not_after, at(NOW + 3600));
    }

    #[test]
    fn problems_with_an_external_issuer_have_reasons() {
        let (root, signing) = anchor();
        let (other_root, _) = anchor();
        let issued = pki::issue_issuer(
            &signing,
            "cluster.local",
            KeyAlgorithm::EcdsaP256,
            at(NOW),
            at(NOW),
            at(NOW + 3600),
        )
        .expect("issues");
        let secret = tls_secret(&issued.cert_pem, &issued.key_pem);
        let reason = |secret: Option<&Secret>, bundle: &[Anchor], now: i64| {
            validate(&object(), secret, bundle, at(now))
                .expect_err("a problem")
                .reason()
        };
        assert_eq!(
            reason(None, &bundle_of(&root.cert), NOW),
            "IssuerSecretNotFound"
        );
        assert_eq!(
            reason(Some(&secret), &bundle_of(&other_root.cert), NOW + 1),
            "IssuerNotTrusted"
        );
        assert_eq!(
            reason(Some(&secret), &bundle_of(&root.cert), NOW + 3601),
            "IssuerExpired"
        );
        let swapped = tls_secret(&issued.cert_pem, &other_root.key_pem);
        assert_eq!(
            reason(Some(&swapped), &bundle_of(&root.cert), NOW + 1),
            "IssuerKeyMismatch"
        );
        let garbage = tls_secret("garbage", &issued.key_pem);
        assert_eq!(
            reason(Some(&garbage), &bundle_of(&root.cert), NOW + 1),
            "IssuerInvalid"
        );
    }
}

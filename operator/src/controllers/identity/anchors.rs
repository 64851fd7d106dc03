//! Trust anchors: the signing anchor (a user's Secret, or one the operator generates) and the anchors
//! that are only trusted; read from the API, checked, and sorted into what may sign, what is trusted,
//! and what has expired.

use super::{
    objects::{self, CA_CRT, CA_KEY},
    pki::{self, CertInfo, PkiError, SigningAnchor},
    renewal,
    settings::{AnchorSource, ObjectName, Settings, TrustedAnchorSource},
};
use crate::context::{Context, FIELD_MANAGER};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    api::{PostParams, Resource},
};
use std::time::Duration;
use weft_crds::Identity;

/// How far a generated anchor's `notBefore` is backdated, for clocks that run slow.
const ANCHOR_BACKDATE: Duration = Duration::from_secs(60);

/// What is wrong with one anchor source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorProblem {
    #[error("{0} does not exist")]
    NotFound(ObjectName),
    #[error("cannot read {object}: {error}")]
    Unreadable { object: ObjectName, error: String },
    #[error("{object} has no key {key:?}")]
    MissingKey { object: ObjectName, key: String },
    #[error("{object}: {key}: {error}")]
    Invalid {
        object: ObjectName,
        key: String,
        error: Box<PkiError>,
    },
    #[error("{0}: the private key in ca.key does not belong to the certificate in ca.crt")]
    KeyMismatch(ObjectName),
    #[error(
        "{object}: {subject} is not a CA certificate (basicConstraints CA:TRUE and keyCertSign are needed)"
    )]
    NotCa { object: ObjectName, subject: String },
    #[error("{object}: {subject} expired at {not_after}")]
    Expired {
        object: ObjectName,
        subject: String,
        not_after: Timestamp,
    },
    #[error("{object}: {subject} is not valid before {not_before}")]
    NotYetValid {
        object: ObjectName,
        subject: String,
        not_before: Timestamp,
    },
}

impl AnchorProblem {
    fn kind(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFound",
            Self::Unreadable { .. } => "Unreadable",
            Self::MissingKey { .. } | Self::Invalid { .. } => "Invalid",
            Self::KeyMismatch(_) => "KeyMismatch",
            Self::NotCa { .. } => "NotCA",
            Self::Expired { .. } => "Expired",
            Self::NotYetValid { .. } => "NotYetValid",
        }
    }
}

/// A problem with the signing anchor or with one of the trusted anchors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    #[error("trust anchor: {0}")]
    Signing(AnchorProblem),
    #[error("additional trust anchor: {0}")]
    Trusted(AnchorProblem),
}

impl AnchorError {
    /// The `Ready` condition reason: `Anchor<Kind>` for the signing anchor (e.g. `AnchorNotFound`,
    /// `AnchorNotCA`, `AnchorExpired`, `AnchorInvalid`), `AdditionalAnchor<Kind>` for a trusted one.
    pub fn reason(&self) -> String {
        match self {
            Self::Signing(problem) => format!("Anchor{}", problem.kind()),
            Self::Trusted(problem) => format!("AdditionalAnchor{}", problem.kind()),
        }
    }
}

/// One anchor of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub cert: CertInfo,
    pub source: ObjectName,
    pub signing: bool,
}

/// The signing anchor as far as it could be read.
#[derive(Debug)]
pub enum Signing {
    /// Certificate and matching key: may sign.
    WithKey(Box<SigningAnchor>),
    /// Certificate only (external mode: the operator never signs the issuer).
    CertOnly(CertInfo),
}

impl Signing {
    pub fn cert(&self) -> &CertInfo {
        match self {
            Self::WithKey(anchor) => &anchor.cert,
            Self::CertOnly(cert) => cert,
        }
    }
}

/// Every anchor of an Identity, read and checked.
#[derive(Debug)]
pub struct Anchors {
    pub signing: Result<Signing, AnchorError>,
    pub source: ObjectName,
    /// Trusted anchors still valid, or the first problem found among them.
    pub trusted: Result<Vec<Anchor>, AnchorError>,
    /// Trusted anchors left out of the bundle because they expired.
    pub expired: Vec<Anchor>,
    /// Set when the operator generated (or regenerated) its anchor in this pass: why.
    pub generated: Option<String>,
}

impl Anchors {
    /// The bundle's anchors: the signing one first, then the trusted ones, without duplicates; `None` when
    /// an anchor could not be read (the last good bundle then stays published).
    pub fn bundle(&self) -> Option<Vec<Anchor>> {
        let signing = self.signing.as_ref().ok()?;
        let trusted = self.trusted.as_ref().ok()?;
        let mut anchors = vec![Anchor {
            cert: signing.cert().clone(),
            source: self.source.clone(),
            signing: true,
        }];
        for anchor in trusted {
            if !anchors
                .iter()
                .any(|a| a.cert.fingerprint == anchor.cert.fingerprint)
            {
                anchors.push(anchor.clone());
            }
        }
        Some(anchors)
    }

    /// The first problem, signing anchor first.
    pub fn problem(&self) -> Option<&AnchorError> {
        self.signing.as_ref().err().or(self.trusted.as_ref().err())
    }
}

/// The bundle ConfigMap's content: every anchor, PEM, in order.
pub fn bundle_pem(anchors: &[Anchor]) -> String {
    anchors.iter().map(|a| a.cert.pem()).collect()
}

// === pure checks ===

fn check_cert(
    object: &ObjectName,
    key: &str,
    pem: Option<&[u8]>,
    now: Timestamp,
) -> Result<CertInfo, AnchorProblem> {
    let pem = pem.ok_or_else(|| AnchorProblem::MissingKey {
        object: object.clone(),
        key: key.to_string(),
    })?;
    let cert = pki::parse_certificates(pem)
        .map_err(|error| AnchorProblem::Invalid {
            object: object.clone(),
            key: key.to_string(),
            error: Box::new(error),
        })?
        .remove(0);
    check_validity(object, cert, now)
}

fn check_validity(
    object: &ObjectName,
    cert: CertInfo,
    now: Timestamp,
) -> Result<CertInfo, AnchorProblem> {
    if !cert.is_ca || !cert.may_sign_certificates {
        return Err(AnchorProblem::NotCa {
            object: object.clone(),
            subject: cert.subject,
        });
    }
    if cert.is_expired_at(now) {
        return Err(AnchorProblem::Expired {
            object: object.clone(),
            subject: cert.subject,
            not_after: cert.not_after,
        });
    }
    if now < cert.not_before {
        return Err(AnchorProblem::NotYetValid {
            object: object.clone(),
            subject: cert.subject,
            not_before: cert.not_before,
        });
    }
    Ok(cert)
}

/// Checks a signing anchor's `ca.crt` and `ca.key`: a CA, valid now, and the key is the certificate's.
pub fn check_signing(
    object: &ObjectName,
    ca_crt: Option<&[u8]>,
    ca_key: Option<&[u8]>,
    now: Timestamp,
) -> Result<SigningAnchor, AnchorProblem> {
    let cert = check_cert(object, CA_CRT, ca_crt, now)?;
    let key_pem = ca_key.ok_or_else(|| AnchorProblem::MissingKey {
        object: object.clone(),
        key: CA_KEY.to_string(),
    })?;
    let key = pki::parse_private_key(key_pem).map_err(|error| AnchorProblem::Invalid {
        object: object.clone(),
        key: CA_KEY.to_string(),
        error: Box::new(error),
    })?;
    SigningAnchor::new(cert, key).map_err(|_| AnchorProblem::KeyMismatch(object.clone()))
}

/// Checks a trusted anchor PEM (one or more certificates): every one must be a CA; expired ones are
/// returned apart, to be left out of the bundle.
pub fn check_trusted(
    object: &ObjectName,
    key: &str,
    pem: Option<&[u8]>,
    now: Timestamp,
) -> Result<(Vec<Anchor>, Vec<Anchor>), AnchorProblem> {
    let pem = pem.ok_or_else(|| AnchorProblem::MissingKey {
        object: object.clone(),
        key: key.to_string(),
    })?;
    let certs = pki::parse_certificates(pem).map_err(|error| AnchorProblem::Invalid {
        object: object.clone(),
        key: key.to_string(),
        error: Box::new(error),
    })?;
    let (mut valid, mut expired) = (Vec::new(), Vec::new());
    for cert in certs {
        let anchor = |cert| Anchor {
            cert,
            source: object.clone(),
            signing: false,
        };
        match check_validity(object, cert.clone(), now) {
            Ok(cert) => valid.push(anchor(cert)),
            // A not-yet-valid anchor is published: it is the next one in a rotation.
            Err(AnchorProblem::NotYetValid { .. }) => valid.push(anchor(cert)),
            Err(AnchorProblem::Expired { .. }) => expired.push(anchor(cert)),
            Err(problem) => return Err(problem),
        }
    }
    Ok((valid, expired))
}

// === reading from the API ===

async fn get_opt<K>(
    api: &Api<K>,
    object: &ObjectName,
) -> Result<Result<K, AnchorProblem>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(&object.name).await {
        Ok(Some(found)) => Ok(Ok(found)),
        Ok(None) => Ok(Err(AnchorProblem::NotFound(object.clone()))),
        // Refused by RBAC: a configuration problem to report, not a transient one to retry fast.
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            Ok(Err(AnchorProblem::Unreadable {
                object: object.clone(),
                error: status.message.clone(),
            }))
        }
        Err(error) => Err(error),
    }
}

/// Reads and checks every anchor of `identity`; generates the operator's own anchor when it is used and
/// missing (or expired). API errors other than "not found"/"forbidden" are returned for a retry.
pub async fn load(
    ctx: &Context,
    identity: &Identity,
    settings: &Settings,
    now: Timestamp,
) -> Result<Anchors, kube::Error> {
    let source = settings.anchor.secret().clone();
    let secrets = |ns: &str| Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let mut generated = None;

    let signing = match &settings.anchor {
        AnchorSource::Secret(object) => get_opt(&secrets(&object.namespace), object)
            .await?
            .and_then(|secret| {
                let crt = objects::secret_value(&secret, CA_CRT);
                if settings.issuer_is_external() {
                    check_cert(object, CA_CRT, crt, now).map(Signing::CertOnly)
                } else {
                    check_signing(object, crt, objects::secret_value(&secret, CA_KEY), now)
                        .map(|anchor| Signing::WithKey(Box::new(anchor)))
                }
            }),
        AnchorSource::IssuerCa(object) => get_opt(&secrets(&object.namespace), object)
            .await?
            .and_then(|secret| {
                check_cert(object, CA_CRT, objects::secret_value(&secret, CA_CRT), now)
            })
            .map(Signing::CertOnly),
        AnchorSource::Generated { secret, lifetime } => {
            let (result, note) =
                generated_anchor(ctx, identity, settings, secret, *lifetime, now).await?;
            generated = note;
            result.map(|anchor| Signing::WithKey(Box::new(anchor)))
        }
    }
    .map_err(AnchorError::Signing);

    let mut trusted = Vec::new();
    let mut expired = Vec::new();
    let mut trusted_problem = None;
    for extra in &settings.trusted {
        let checked = match extra {
            TrustedAnchorSource::Secret { object, key } => {
                get_opt(&secrets(&object.namespace), object)
                    .await?
                    .and_then(|secret| {
                        check_trusted(object, key, objects::secret_value(&secret, key), now)
                    })
            }
            TrustedAnchorSource::ConfigMap { object, key } => {
                let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &object.namespace);
                get_opt(&api, object).await?.and_then(|config_map| {
                    let value = config_map
                        .data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(String::as_bytes);
                    check_trusted(object, key, value, now)
                })
            }
        };
        match checked {
            Ok((valid, gone)) => {
                trusted.extend(valid);
                expired.extend(gone);
            }
            Err(problem) => {
                trusted_problem.get_or_insert(AnchorError::Trusted(problem));
            }
        }
    }

    Ok(Anchors {
        signing,
        source,
        trusted: match trusted_problem {
            Some(problem) => Err(problem),
            None => Ok(trusted),
        },
        expired,
        generated,
    })
}

/// The operator's own anchor: read it; create it when missing; replace it when it is ours and expired
/// (everything signed by it is dead anyway). A damaged one is reported, never overwritten: key material a
/// human may want to look at is not thrown away.
async fn generated_anchor(
    ctx: &Context,
    identity: &Identity,
    settings: &Settings,
    object: &ObjectName,
    lifetime: Duration,
    now: Timestamp,
) -> Result<(Result<SigningAnchor, AnchorProblem>, Option<String>), kube::Error> {
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &object.namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let existing = api.get_opt(&object.name).await?;
    let replace_reason = match &existing {
        None => "did not exist".to_string(),
        Some(secret) => {
            let checked = check_signing(
                object,
                objects::secret_value(secret, CA_CRT),
                objects::secret_value(secret, CA_KEY),
                now,
            );
            match checked {
                Err(AnchorProblem::Expired { not_after, .. })
                    if objects::written_for(&secret.metadata, &identity.name_any()) =>
                {
                    format!("had expired at {not_after}")
                }
                other => return Ok((other, None)),
            }
        }
    };
    let fresh = match pki::generate_anchor(&settings.trust_domain, now, lifetime, ANCHOR_BACKDATE) {
        Ok(fresh) => fresh,
        Err(error) => {
            return Ok((
                Err(AnchorProblem::Invalid {
                    object: object.clone(),
                    key: CA_CRT.to_string(),
                    error: Box::new(error),
                }),
                None,
            ));
        }
    };
    let mut secret = objects::anchor_secret(identity, object, &fresh);
    let written = match existing {
        None => api.create(&params, &secret).await,
        Some(old) => {
            // Optimistic concurrency: replace exactly the object that was checked.
            secret.metadata.resource_version = old.metadata.resource_version;
            api.replace(&object.name, &params, &secret).await
        }
    };
    // A conflict (another writer, only possible around a leader change) is retried with what is there then.
    written?;
    tracing::info!(secret = %object, not_after = %fresh.cert.not_after, "generated a trust anchor ({replace_reason})");
    let note = format!(
        "generated trust anchor {} in {object} (valid until {}); the previous one {replace_reason}",
        fresh.cert.fingerprint, fresh.cert.not_after
    );
    let key = pki::parse_private_key(fresh.key_pem.as_bytes());
    let anchor = key
        .and_then(|key| SigningAnchor::new(fresh.cert.clone(), key))
        .map_err(|error| AnchorProblem::Invalid {
            object: object.clone(),
            key: CA_KEY.to_string(),
            error: Box::new(error),
        });
    Ok((anchor, Some(note)))
}

/// Anchors of the bundle that will expire soon (for Warning Events).
pub fn expiring_soon(anchors: &[Anchor], now: Timestamp) -> Vec<&Anchor> {
    anchors
        .iter()
        .filter(|a| renewal::anchor_expiring_soon(&a.cert, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::pki::tests::{NOW, anchor, at};
    use super::*;

    fn object() -> ObjectName {
        ObjectName {
            namespace: "weft-system".into(),
            name: "anchor".into(),
        }
    }

    #[test]
    fn a_good_anchor_signs() {
        let (issued, _) = anchor();
        let checked = check_signing(
            &object(),
            Some(issued.cert_pem.as_bytes()),
            Some(issued.key_pem.as_bytes()),
            at(NOW),
        );
        assert!(checked.is_ok());
    }

    #[test]
    fn anchor_problems_have_specific_reasons() {
        let (issued, _) = anchor();
        let (other, _) = anchor();
        let crt = Some(issued.cert_pem.as_bytes());
        let key = Some(issued.key_pem.as_bytes());
        let reason = |r: Result<SigningAnchor, AnchorProblem>| {
            AnchorError::Signing(r.expect_err("a problem")).reason()
        };

        assert_eq!(
            reason(check_signing(&object(), None, key, at(NOW))),
            "AnchorInvalid"
        );
        assert_eq!(
            reason(check_signing(&object(), crt, None, at(NOW))),
            "AnchorInvalid"
        );
        assert_eq!(
            reason(check_signing(&object(), Some(b"garbage"), key, at(NOW))),
            "AnchorInvalid"
        );
        assert_eq!(
            reason(check_signing(&object(), crt, Some(b"garbage"), at(NOW))),
            "AnchorInvalid"
        );
        assert_eq!(
            reason(check_signing(
                &object(),
                crt,
                Some(other.key_pem.as_bytes()),
                at(NOW)
            )),
            "AnchorKeyMismatch"
        );
        assert_eq!(
            reason(check_signing(&object(), crt, key, at(NOW + 86401))),
            "AnchorExpired"
        );
        assert_eq!(
            reason(check_signing(&object(), crt, key, at(NOW - 3600))),
            "AnchorNotYetValid"
        );

        let leaf = rcgen::generate_simple_self_signed(vec!["x.example".to_string()]).expect("leaf");
        let leaf_crt = leaf.cert.pem();
        let leaf_key = leaf.signing_key.serialize_pem();
        assert_eq!(
            reason(check_signing(
                &object(),
                Some(leaf_crt.as_bytes()),
                Some(leaf_key.as_bytes()),
                at(NOW)
            )),
            "AnchorNotCA"
        );
        assert_eq!(
            AnchorError::Trusted(AnchorProblem::NotFound(object())).reason(),
            "AdditionalAnchorNotFound"
        );
    }

    #[test]
    fn expired_trusted_anchors_leave_the_bundle() {
        let (old, _) = anchor();
        let later = at(NOW + 86401);
        let (valid, expired) =
            check_trusted(&object(), "ca.crt", Some(old.cert_pem.as_bytes()), later).expect("ok");
        assert!(valid.is_empty());
        assert_eq!(expired.len(), 1);
    }

    #[test]
    fn the_bundle_lists_signing_first_without_duplicates() {
        let (a, signing) = anchor();
        let (b, _) = anchor();
        let both = format!("{}{}", b.cert_pem, a.cert_pem);
        let (trusted, _) =
            check_trusted(&object(), "ca.crt", Some(both.as_bytes()), at(NOW)).expect("ok");
        let anchors = Anchors {
            signing: Ok(Signing::WithKey(Box::new(signing))),
            source: object(),
            trusted: Ok(trusted),
            expired: vec![],
            generated: None,
        };
        let bundle = anchors.bundle().expect("complete");
        assert_eq!(bundle.len(), 2);
        assert!(bundle[0].signing);
        assert_eq!(bundle[0].cert.fingerprint, a.cert.fingerprint);
        assert_eq!(bundle[1].cert.fingerprint, b.cert.fingerprint);
        let pem = bundle_pem(&bundle);
        assert_eq!(
            pki::parse_certificates(pem.as_bytes())
                .expect("parses")
                .len(),
            2
        );
    }

    #[test]
    fn no_bundle_while_an_anchor_is_broken() {
        let (_, signing) = anchor();
        let anchors = Anchors {
            signing: Ok(Signing::WithKey(Box::new(signing))),
            source: object(),
            trusted: Err(AnchorError::Trusted(AnchorProblem::NotFound(object()))),
            expired: vec![],
            generated: None,
        };
        assert!(anchors.bundle().is_none());
        assert_eq!(
            anchors.problem().map(AnchorError::reason).as_deref(),
            Some("AdditionalAnchorNotFound")
        );
    }
}

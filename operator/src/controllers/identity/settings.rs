//! The spec of an Identity, checked and resolved into what the controller acts on: durations as
//! [`Duration`]s, object references with their namespaces filled in, and the hash of the fields an issuer
//! certificate is made from. What the schema cannot express (no CEL on old API servers) is checked here.

use std::time::Duration;
use weft_crds::duration;
use weft_crds::identity::{IdentitySpec, KeyAlgorithm};

/// The shortest issuer lifetime accepted (cert-manager's minimum is 1h; tests need seconds).
pub const MIN_ISSUER_DURATION: Duration = Duration::from_secs(10);
/// The shortest lifetime of a generated anchor.
pub const MIN_ANCHOR_LIFETIME: Duration = Duration::from_secs(60);

/// A Secret or ConfigMap, namespace resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where the signing anchor comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorSource {
    /// A user's Secret with `ca.crt` and `ca.key`.
    Secret(ObjectName),
    /// A Secret the operator generates (and owns) when absent.
    Generated {
        secret: ObjectName,
        lifetime: Duration,
    },
    /// External mode without a configured anchor: the `ca.crt` of the external issuer Secret (what
    /// cert-manager's CA issuer puts there). Trusted, never used to sign.
    IssuerCa(ObjectName),
}

impl AnchorSource {
    pub fn secret(&self) -> &ObjectName {
        match self {
            Self::Secret(secret) | Self::Generated { secret, .. } | Self::IssuerCa(secret) => {
                secret
            }
        }
    }
}

/// A trusted, non-signing anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedAnchorSource {
    Secret { object: ObjectName, key: String },
    ConfigMap { object: ObjectName, key: String },
}

/// Who writes the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerMode {
    /// The operator issues and rotates the issuer into this Secret.
    Managed(ObjectName),
    /// Another manager (cert-manager) writes this Secret; the operator only validates it.
    External(ObjectName),
}

impl IssuerMode {
    pub fn secret(&self) -> &ObjectName {
        match self {
            Self::Managed(secret) | Self::External(secret) => secret,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Managed(_) => "Managed",
            Self::External(_) => "External",
        }
    }
}

/// A checked spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub trust_domain: String,
    pub anchor: AnchorSource,
    pub trusted: Vec<TrustedAnchorSource>,
    pub issuer: IssuerMode,
    pub duration: Duration,
    pub renew_before: Option<Duration>,
    pub key_algorithm: KeyAlgorithm,
    pub leaf_lifetime: Duration,
    pub clock_skew_allowance: Duration,
    /// The trust-bundle ConfigMap.
    pub bundle: ObjectName,
}

/// What is wrong with a spec. Each variant is a `Ready=False` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("spec.{field}: {source}")]
    InvalidDuration {
        field: &'static str,
        source: duration::DurationError,
    },
    #[error("spec.issuer.duration is {got}; it must be at least {min}")]
    DurationTooShort { got: String, min: String },
    #[error(
        "spec.issuer.renewBefore ({renew_before}) must be shorter than spec.issuer.duration ({duration})"
    )]
    RenewBeforeNotBelowDuration {
        renew_before: String,
        duration: String,
    },
    #[error("spec.issuer.renewBefore must be longer than zero")]
    RenewBeforeZero,
    #[error("spec.trustAnchor.generatedLifetime is {got}; it must be at least {min}")]
    AnchorLifetimeTooShort { got: String, min: String },
    #[error(
        "spec.leaf.clockSkewAllowance ({skew}) must be shorter than spec.leaf.lifetime ({lifetime})"
    )]
    ClockSkewNotBelowLifetime { skew: String, lifetime: String },
    #[error(
        "spec.additionalTrustAnchors[{index}] must name exactly one of secretRef or configMapRef"
    )]
    AmbiguousTrustedAnchor { index: usize },
}

impl SpecError {
    /// The `Ready` condition reason: always `InvalidSpec`; the message says which field and why.
    pub fn reason(&self) -> &'static str {
        "InvalidSpec"
    }
}

fn parse(field: &'static str, text: &str) -> Result<Duration, SpecError> {
    duration::parse(text).map_err(|source| SpecError::InvalidDuration { field, source })
}

impl Settings {
    /// Checks `spec` of the Identity `name`; Secrets and ConfigMaps default to `namespace` (the operator's).
    pub fn from_spec(name: &str, spec: &IdentitySpec, namespace: &str) -> Result<Self, SpecError> {
        let in_ns = |ns: &Option<String>, name: &str| ObjectName {
            namespace: ns.clone().unwrap_or_else(|| namespace.to_string()),
            name: name.to_string(),
        };

        let duration = parse("issuer.duration", &spec.issuer.duration)?;
        let renew_before = spec
            .issuer
            .renew_before
            .as_deref()
            .map(|text| parse("issuer.renewBefore", text))
            .transpose()?;
        let leaf_lifetime = parse("leaf.lifetime", &spec.leaf.lifetime)?;
        let clock_skew_allowance =
            parse("leaf.clockSkewAllowance", &spec.leaf.clock_skew_allowance)?;
        let anchor_lifetime = parse(
            "trustAnchor.generatedLifetime",
            &spec.trust_anchor.generated_lifetime,
        )?;

        let issuer = match &spec.issuer.secret_ref {
            Some(reference) => IssuerMode::External(in_ns(&reference.namespace, &reference.name)),
            None => {
                let secret = spec
                    .issuer
                    .secret_name
                    .clone()
                    .unwrap_or_else(|| format!("{name}-issuer"));
                IssuerMode::Managed(in_ns(&None, &secret))
            }
        };
        // The rotation fields only bind when weft rotates the issuer itself.
        if let IssuerMode::Managed(_) = issuer {
            if duration < MIN_ISSUER_DURATION {
                return Err(SpecError::DurationTooShort {
                    got: spec.issuer.duration.clone(),
                    min: duration::format(MIN_ISSUER_DURATION),
                });
            }
            if let Some(renew_before) = renew_before {
                if renew_before.is_zero() {
                    return Err(SpecError::RenewBeforeZero);
                }
                if renew_before >= duration {
                    return Err(SpecError::RenewBeforeNotBelowDuration {
                        renew_before: spec.issuer.renew_before.clone().unwrap_or_default(),
                        duration: spec.issuer.duration.clone(),
                    });
                }
            }
        }
        if clock_skew_allowance >= leaf_lifetime {
            return Err(SpecError::ClockSkewNotBelowLifetime {
                skew: spec.leaf.clock_skew_allowance.clone(),
                lifetime: spec.leaf.lifetime.clone(),
            });
        }

        let anchor = match (&spec.trust_anchor.secret_ref, &issuer) {
            (Some(reference), _) => {
                AnchorSource::Secret(in_ns(&reference.namespace, &reference.name))
            }
            (None, IssuerMode::External(secret)) => AnchorSource::IssuerCa(secret.clone()),
            (None, IssuerMode::Managed(_)) => {
                if anchor_lifetime < MIN_ANCHOR_LIFETIME {
                    return Err(SpecError::AnchorLifetimeTooShort {
                        got: spec.trust_anchor.generated_lifetime.clone(),
                        min: duration::format(MIN_ANCHOR_LIFETIME),
                    });
                }
                AnchorSource::Generated {
                    secret: in_ns(&None, &format!("{name}-trust-anchor")),
                    lifetime: anchor_lifetime,
                }
            }
        };

        let trusted = spec
            .additional_trust_anchors
            .iter()
            .enumerate()
            .map(
                |(index, extra)| match (&extra.secret_ref, &extra.config_map_ref) {
                    (Some(secret), None) => Ok(TrustedAnchorSource::Secret {
                        object: in_ns(&secret.namespace, &secret.name),
                        key: extra.key.clone(),
                    }),
                    (None, Some(config_map)) => Ok(TrustedAnchorSource::ConfigMap {
                        object: in_ns(&config_map.namespace, &config_map.name),
                        key: extra.key.clone(),
                    }),
                    _ => Err(SpecError::AmbiguousTrustedAnchor { index }),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            trust_domain: spec.trust_domain.clone(),
            anchor,
            trusted,
            issuer,
            duration,
            renew_before,
            key_algorithm: spec.issuer.key_algorithm,
            leaf_lifetime,
            clock_skew_allowance,
            bundle: in_ns(&None, &format!("{name}-trust-bundle")),
        })
    }

    pub fn issuer_is_external(&self) -> bool {
        matches!(self.issuer, IssuerMode::External(_))
    }

    /// A digest of the spec fields an issuer certificate is made from (trust domain, lifetime, key
    /// algorithm), recorded on the issuer Secret: when it differs, the issuer is reissued. `renewBefore` is
    /// left out on purpose: it moves the renewal time, not the certificate.
    pub fn issuer_spec_hash(&self) -> String {
        let text = format!(
            "v1\ntrustDomain={}\nduration={}\nkeyAlgorithm={}\n",
            self.trust_domain,
            self.duration.as_millis(),
            self.key_algorithm.as_str()
        );
        super::pki::sha256_hex(text.as_bytes())[..16].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::identity::{AdditionalTrustAnchor, SecretReference};

    fn spec(json: serde_json::Value) -> IdentitySpec {
        serde_json::from_value(json).expect("spec parses")
    }

    #[test]
    fn defaults_resolve_into_the_operator_namespace() {
        let s = Settings::from_spec("mesh", &spec(serde_json::json!({})), "weft-system")
            .expect("valid");
        assert_eq!(s.duration, Duration::from_secs(48 * 3600));
        assert_eq!(s.renew_before, None);
        assert_eq!(
            s.issuer,
            IssuerMode::Managed(ObjectName {
                namespace: "weft-system".into(),
                name: "mesh-issuer".into()
            })
        );
        assert!(
            matches!(&s.anchor, AnchorSource::Generated { secret, lifetime }
            if secret.name == "mesh-trust-anchor" && *lifetime == Duration::from_secs(8760 * 3600))
        );
        assert_eq!(s.bundle.to_string(), "weft-system/mesh-trust-bundle");
        assert_eq!(s.clock_skew_allowance, Duration::from_secs(20));
    }

    #[test]
    fn renew_before_must_be_below_duration() {
        for renew_before in ["30s", "45s", "1h"] {
            let s = spec(
                serde_json::json!({"issuer": {"duration": "30s", "renewBefore": renew_before}}),
            );
            let err = Settings::from_spec("mesh", &s, "ns").expect_err("rejected");
            assert!(
                matches!(err, SpecError::RenewBeforeNotBelowDuration { .. }),
                "{renew_before}"
            );
            assert_eq!(err.reason(), "InvalidSpec");
        }
        let ok = spec(serde_json::json!({"issuer": {"duration": "30s", "renewBefore": "15s"}}));
        assert_eq!(
            Settings::from_spec("mesh", &ok, "ns")
                .expect("valid")
                .renew_before,
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn too_short_or_unreadable_durations_are_rejected() {
        let check = |json: serde_json::Value| {
            Settings::from_spec("m", &spec(json), "ns").expect_err("rejected")
        };
        assert!(matches!(
            check(serde_json::json!({"issuer": {"duration": "5s"}})),
            SpecError::DurationTooShort { .. }
        ));
        assert!(matches!(
            check(serde_json::json!({"issuer": {"duration": "2d"}})),
            SpecError::InvalidDuration {
                field: "issuer.duration",
                ..
            }
        ));
        assert!(matches!(
            check(serde_json::json!({"leaf": {"lifetime": "10s", "clockSkewAllowance": "20s"}})),
            SpecError::ClockSkewNotBelowLifetime { .. }
        ));
        assert!(matches!(
            check(serde_json::json!({"trustAnchor": {"generatedLifetime": "30s"}})),
            SpecError::AnchorLifetimeTooShort { .. }
        ));
    }

    #[test]
    fn external_mode_ignores_rotation_fields() {
        let s = spec(serde_json::json!({"issuer": {
            "duration": "5s", "renewBefore": "1h",
            "secretRef": {"name": "cm-issuer", "namespace": "certs"}}}));
        let s = Settings::from_spec("m", &s, "ns").expect("valid");
        assert_eq!(s.issuer.secret().to_string(), "certs/cm-issuer");
        assert_eq!(s.issuer.name(), "External");
        assert_eq!(s.anchor, AnchorSource::IssuerCa(s.issuer.secret().clone()));
    }

    #[test]
    fn trusted_anchors_need_exactly_one_reference() {
        let mut s = spec(serde_json::json!({}));
        s.additional_trust_anchors.push(AdditionalTrustAnchor {
            secret_ref: Some(SecretReference {
                name: "a".into(),
                namespace: None,
            }),
            config_map_ref: None,
            key: "ca.crt".into(),
        });
        assert_eq!(
            Settings::from_spec("m", &s, "ns")
                .expect("valid")
                .trusted
                .len(),
            1
        );
        s.additional_trust_anchors.push(AdditionalTrustAnchor {
            secret_ref: None,
            config_map_ref: None,
            key: "ca.crt".into(),
        });
        assert_eq!(
            Settings::from_spec("m", &s, "ns").expect_err("ambiguous"),
            SpecError::AmbiguousTrustedAnchor { index: 1 }
        );
    }

    #[test]
    fn spec_hash_tracks_certificate_fields_only() {
        let base = Settings::from_spec("m", &spec(serde_json::json!({})), "ns").expect("valid");
        let renew = Settings::from_spec(
            "m",
            &spec(serde_json::json!({"issuer": {"renewBefore": "1h"}})),
            "ns",
        )
        .expect("valid");
        assert_eq!(base.issuer_spec_hash(), renew.issuer_spec_hash());
        for changed in [
            serde_json::json!({"issuer": {"duration": "24h"}}),
            serde_json::json!({"issuer": {"keyAlgorithm": "Ed25519"}}),
            serde_json::json!({"trustDomain": "example.org"}),
        ] {
            let other = Settings::from_spec("m", &spec(changed.clone()), "ns").expect("valid");
            assert_ne!(
                base.issuer_spec_hash(),
                other.issuer_spec_hash(),
                "{changed}"
            );
        }
    }
}

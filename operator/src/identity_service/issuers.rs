//! The issuer the service signs with, per trust domain: read from an Identity, its issuer Secret and its
//! trust-bundle ConfigMap, and checked the way the Identity controller checks an external issuer (a CA
//! whose key matches, valid now, chaining to the published bundle). Pure: objects in, values out.

use super::refusal::Refusal;
use crate::controllers::identity::{
    anchors::Anchor,
    external,
    objects::{self, BUNDLE_KEY, TLS_CRT, TLS_KEY},
    pki::{self, CertInfo},
    settings::{ObjectName, Settings},
};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    jiff::Timestamp,
};
use kube::ResourceExt;
use rcgen::{Issuer, KeyPair};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use weft_crds::Identity;

/// An issuer ready to sign leaves for one trust domain.
pub struct CurrentIssuer {
    /// The Identity it belongs to.
    pub identity: String,
    pub trust_domain: String,
    /// The Secret it was read from.
    pub source: ObjectName,
    /// The issuer certificate.
    pub cert: CertInfo,
    /// What a leaf's chain is: the issuer and any intermediates above it, never an anchor, PEM.
    pub chain_pem: String,
    /// The Identity's `spec.leaf.lifetime`.
    pub leaf_lifetime: Duration,
    /// The Identity's `spec.leaf.clockSkewAllowance`.
    pub clock_skew: Duration,
    signer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CurrentIssuer {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentIssuer")
            .field("identity", &self.identity)
            .field("trust_domain", &self.trust_domain)
            .field("subject", &self.cert.subject)
            .field("fingerprint", &self.cert.fingerprint)
            .field("not_after", &self.cert.not_after)
            .finish_non_exhaustive()
    }
}

impl CurrentIssuer {
    pub fn signer(&self) -> &Issuer<'static, KeyPair> {
        &self.signer
    }
}

/// What the service knows about one trust domain.
#[derive(Debug, Clone)]
pub struct Domain {
    /// The Identity that defines it.
    pub identity: String,
    /// The issuer to sign with, or why there is none.
    pub issuer: Result<Arc<CurrentIssuer>, String>,
}

/// Every trust domain the service signs for, by name.
#[derive(Debug, Clone, Default)]
pub struct IssuerSet {
    pub domains: BTreeMap<String, Domain>,
}

impl IssuerSet {
    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// The issuer of `trust_domain`, or a NoIssuer refusal saying why there is none.
    pub fn issuer(&self, trust_domain: &str) -> Result<Arc<CurrentIssuer>, Refusal> {
        let domain = self.domains.get(trust_domain).ok_or_else(|| {
            Refusal::no_issuer(format!(
                "no Identity defines the trust domain {trust_domain}"
            ))
        })?;
        domain.issuer.clone().map_err(|why| {
            Refusal::no_issuer(format!(
                "no usable issuer for {trust_domain} (Identity {}): {why}",
                domain.identity
            ))
        })
    }
}

/// What the issuer of an Identity is read from: the Secret and the bundle its spec names.
pub fn sources(identity: &Identity, namespace: &str) -> Result<(ObjectName, ObjectName), String> {
    let settings = Settings::from_spec(&identity.name_any(), &identity.spec, namespace)
        .map_err(|e| format!("invalid spec: {e}"))?;
    Ok((settings.issuer.secret().clone(), settings.bundle))
}

/// Builds the issuer of `identity` from what was read, checked at `now`.
pub fn load(
    identity: &Identity,
    namespace: &str,
    secret: Option<&Secret>,
    bundle: Option<&ConfigMap>,
    now: Timestamp,
) -> Result<CurrentIssuer, String> {
    let name = identity.name_any();
    let settings = Settings::from_spec(&name, &identity.spec, namespace)
        .map_err(|e| format!("invalid spec: {e}"))?;
    let object = settings.issuer.secret();
    let anchors = bundle_anchors(&settings.bundle, bundle)?;
    let view = external::validate(object, secret, &anchors, now).map_err(|e| e.to_string())?;
    // `validate` checked that tls.crt and tls.key parse and match; read them again to keep them.
    let value = |key: &str| {
        secret
            .and_then(|s| objects::secret_value(s, key))
            .ok_or_else(|| format!("the issuer Secret {object} has no {key}"))
    };
    let chain =
        pki::parse_certificates(value(TLS_CRT)?).map_err(|e| format!("{object} {TLS_CRT}: {e}"))?;
    let key_pem = value(TLS_KEY)?;
    let key = pki::parse_private_key(key_pem).map_err(|e| format!("{object} {TLS_KEY}: {e}"))?;
    let cert = view.cert().clone();
    let signer = Issuer::from_ca_cert_der(&cert.der.clone().into(), key)
        .map_err(|e| format!("{object}: cannot sign with it: {e}"))?;
    let chain_pem = chain
        .iter()
        .filter(|c| {
            !anchors
                .iter()
                .any(|anchor| anchor.cert.fingerprint == c.fingerprint)
        })
        .map(CertInfo::pem)
        .collect();
    Ok(CurrentIssuer {
        identity: name,
        trust_domain: settings.trust_domain,
        source: object.clone(),
        cert,
        chain_pem,
        leaf_lifetime: settings.leaf_lifetime,
        clock_skew: settings.clock_skew_allowance,
        signer,
    })
}

/// The anchors of a trust-bundle ConfigMap.
fn bundle_anchors(object: &ObjectName, bundle: Option<&ConfigMap>) -> Result<Vec<Anchor>, String> {
    let bundle = bundle.ok_or_else(|| format!("the trust bundle {object} does not exist yet"))?;
    let pem = bundle
        .data
        .as_ref()
        .and_then(|data| data.get(BUNDLE_KEY))
        .ok_or_else(|| format!("the trust bundle {object} has no {BUNDLE_KEY}"))?;
    let certs = pki::parse_certificates(pem.as_bytes())
        .map_err(|e| format!("the trust bundle {object}: {e}"))?;
    Ok(certs
        .into_iter()
        .map(|cert| Anchor {
            cert,
            source: object.clone(),
            signing: false,
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::controllers::identity::pki::{generate_anchor, issue_issuer, parse_private_key};
    use k8s_openapi::ByteString;
    use weft_crds::identity::KeyAlgorithm;

    pub(crate) const NOW: i64 = 1_800_000_000;

    pub(crate) fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("in range")
    }

    /// An anchor and an issuer it signed, PEM: (anchor cert, issuer cert, issuer key).
    pub(crate) fn pki_material(not_before: i64, not_after: i64) -> (String, String, String) {
        // An anchor valid around the issuer's window, made at the issuer's start.
        let span = u64::try_from(not_after - not_before).unwrap_or(0);
        let anchor = generate_anchor(
            "cluster.local",
            at(not_before),
            Duration::from_secs(span + 10 * 86400),
            Duration::from_secs(86400),
        )
        .expect("anchor");
        let signing = pki::SigningAnchor::new(
            anchor.cert.clone(),
            parse_private_key(anchor.key_pem.as_bytes()).expect("key"),
        )
        .expect("signing anchor");
        let issued = issue_issuer(
            &signing,
            "cluster.local",
            KeyAlgorithm::EcdsaP256,
            at(not_before),
            at(not_before),
            at(not_after),
        )
        .expect("issuer");
        (anchor.cert_pem, issued.cert_pem, issued.key_pem)
    }

    pub(crate) fn identity(spec: serde_json::Value) -> Identity {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1",
            "kind": "Identity",
            "metadata": { "name": "mesh" },
            "spec": spec,
        }))
        .expect("identity")
    }

    pub(crate) fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    pub(crate) fn bundle(pem: &str) -> ConfigMap {
        ConfigMap {
            data: Some(BTreeMap::from([(BUNDLE_KEY.to_string(), pem.to_string())])),
            ..ConfigMap::default()
        }
    }

    /// A loaded issuer valid over `[not_before, not_after]`.
    pub(crate) fn issuer(not_before: i64, not_after: i64) -> CurrentIssuer {
        let (anchor, cert, key) = pki_material(not_before, not_after);
        load(
            &identity(serde_json::json!({})),
            "weft-system",
            Some(&secret(&[
                ("ca.crt", &anchor),
                ("tls.crt", &cert),
                ("tls.key", &key),
            ])),
            Some(&bundle(&anchor)),
            at(not_before + 1),
        )
        .expect("loads")
    }

    #[test]
    fn loads_a_managed_issuer_with_the_leaf_settings() {
        let (anchor, cert, key) = pki_material(NOW - 60, NOW + 3600);
        let identity = identity(serde_json::json!({
            "trustDomain": "example.org",
            "leaf": { "lifetime": "1h", "clockSkewAllowance": "30s" }
        }));
        let loaded = load(
            &identity,
            "weft-system",
            Some(&secret(&[
                ("ca.crt", &anchor),
                ("tls.crt", &cert),
                ("tls.key", &key),
            ])),
            Some(&bundle(&anchor)),
            at(NOW),
        )
        .expect("loads");
        assert_eq!(loaded.trust_domain, "example.org");
        assert_eq!(loaded.leaf_lifetime, Duration::from_secs(3600));
        assert_eq!(loaded.clock_skew, Duration::from_secs(30));
        assert_eq!(loaded.source.to_string(), "weft-system/mesh-issuer");
        // The chain is the issuer alone: the anchor stays out.
        assert_eq!(loaded.chain_pem, loaded.cert.pem());
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn refuses_an_issuer_that_cannot_be_trusted_or_used() {
        let (anchor, cert, key) = pki_material(NOW - 60, NOW + 3600);
        let (other_anchor, _, other_key) = pki_material(NOW - 60, NOW + 3600);
        let id = identity(serde_json::json!({}));
        let good = secret(&[("tls.crt", &cert), ("tls.key", &key)]);
        let cases: Vec<(&str, Option<Secret>, Option<ConfigMap>, i64)> = vec![
            ("no secret", None, Some(bundle(&anchor)), NOW),
            ("no bundle", Some(good.clone()), None, NOW),
            (
                "other anchor",
                Some(good.clone()),
                Some(bundle(&other_anchor)),
                NOW,
            ),
            (
                "key of another",
                Some(secret(&[("tls.crt", &cert), ("tls.key", &other_key)])),
                Some(bundle(&anchor)),
                NOW,
            ),
            (
                "garbage",
                Some(secret(&[("tls.crt", "x"), ("tls.key", "y")])),
                Some(bundle(&anchor)),
                NOW,
            ),
            (
                "expired",
                Some(good.clone()),
                Some(bundle(&anchor)),
                NOW + 3601,
            ),
            ("not yet valid", Some(good), Some(bundle(&anchor)), NOW - 61),
        ];
        for (what, secret, bundle, now) in cases {
            let result = load(
                &id,
                "weft-system",
                secret.as_ref(),
                bundle.as_ref(),
                at(now),
            );
            assert!(result.is_err(), "{what}: loaded");
        }
    }

    #[test]
    fn a_domain_without_issuer_refuses_with_the_reason() {
        let mut set = IssuerSet::default();
        set.domains.insert(
            "cluster.local".into(),
            Domain {
                identity: "mesh".into(),
                issuer: Err("the issuer Secret weft-system/mesh-issuer does not exist".into()),
            },
        );
        let refused = set.issuer("cluster.local").expect_err("no issuer");
        assert_eq!(refused.reason, weft_wire::identity::refusal::NO_ISSUER);
        assert!(refused.message.contains("does not exist"));
        assert!(set.issuer("other").is_err());
    }
}

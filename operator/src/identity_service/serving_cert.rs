//! The service's own TLS certificate, one per trust domain: a leaf for `weft-identity.<trust-domain>`
//! signed by the domain's current issuer with a key made in memory. It is made again when the issuer
//! changes and halfway through its life; rustls asks [`ServingCerts`] for the current one at each
//! handshake, by SNI.

use super::{
    issuers::{CurrentIssuer, IssuerSet},
    leaf,
};
use crate::controllers::identity::pki::{CertInfo, PkiError};
use arc_swap::ArcSwap;
use k8s_openapi::jiff::Timestamp;
use rcgen::KeyPair;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use weft_wire::identity::{SERVICE_NAME_PREFIX, service_name};

/// How long a serving certificate is made for (less when the issuer expires sooner).
pub const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// One trust domain's serving certificate.
pub struct ServingCert {
    pub certified: Arc<CertifiedKey>,
    /// The issuer that signed it.
    pub issuer_fingerprint: String,
    pub cert: CertInfo,
    /// When it was made (its `notBefore` is backdated by the clock-skew allowance).
    pub made_at: Timestamp,
}

impl ServingCert {
    /// Halfway between its making and its expiry: well before it expires, whatever the lifetime.
    pub fn renew_at(&self) -> Timestamp {
        let half = self.cert.not_after.duration_since(self.made_at) / 2;
        self.made_at
            .checked_add(half)
            .unwrap_or(self.cert.not_after)
    }
}

/// Whether the serving certificate of a domain must be made (again) at `now`: there is none, the issuer
/// changed, or it is halfway through its life and a new one would live longer (one capped at its
/// issuer's expiry cannot: it waits for the rotated issuer instead of being remade in a loop).
pub fn needs_new(current: Option<&ServingCert>, issuer: &CurrentIssuer, now: Timestamp) -> bool {
    match current {
        None => true,
        Some(current) => {
            current.issuer_fingerprint != issuer.cert.fingerprint
                || (now >= current.renew_at() && current.cert.not_after < issuer.cert.not_after)
        }
    }
}

/// The serving certificates of every trust domain, swapped in whole.
pub struct ServingCerts {
    current: ArcSwap<BTreeMap<String, Arc<ServingCert>>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for ServingCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCerts")
            .field("domains", &self.current.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What [`ServingCerts::refresh`] did for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Made {
        trust_domain: String,
        not_after: Timestamp,
    },
    Failed {
        trust_domain: String,
        error: String,
    },
    Dropped {
        trust_domain: String,
    },
}

impl ServingCerts {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            current: ArcSwap::from_pointee(BTreeMap::new()),
            provider,
        }
    }

    /// Brings every domain's certificate in line with `issuers` at `now`. A domain whose issuer is
    /// unusable keeps its certificate while that is valid (it still chains to the bundle); a domain that
    /// is gone, or whose certificate expired, is dropped.
    pub fn refresh(&self, issuers: &IssuerSet, now: Timestamp) -> Vec<Change> {
        let old = self.current.load_full();
        let mut next = BTreeMap::new();
        let mut changes = Vec::new();
        for (trust_domain, domain) in &issuers.domains {
            let existing = old.get(trust_domain);
            match &domain.issuer {
                Ok(issuer) if needs_new(existing.map(Arc::as_ref), issuer, now) => {
                    match self.make(issuer, now) {
                        Ok(made) => {
                            changes.push(Change::Made {
                                trust_domain: trust_domain.clone(),
                                not_after: made.cert.not_after,
                            });
                            next.insert(trust_domain.clone(), Arc::new(made));
                        }
                        Err(error) => {
                            changes.push(Change::Failed {
                                trust_domain: trust_domain.clone(),
                                error,
                            });
                            if let Some(existing) = existing.filter(|c| c.cert.is_valid_at(now)) {
                                next.insert(trust_domain.clone(), existing.clone());
                            }
                        }
                    }
                }
                _ => {
                    if let Some(existing) = existing.filter(|c| c.cert.is_valid_at(now)) {
                        next.insert(trust_domain.clone(), existing.clone());
                    }
                }
            }
        }
        for trust_domain in old.keys() {
            if !next.contains_key(trust_domain) {
                changes.push(Change::Dropped {
                    trust_domain: trust_domain.clone(),
                });
            }
        }
        self.current.store(Arc::new(next));
        changes
    }

    /// The earliest moment a certificate must be made again, if any: the halfway point of those that a
    /// new one would outlive (the others follow their issuer's rotation).
    pub fn next_renewal(&self, issuers: &IssuerSet) -> Option<Timestamp> {
        self.current
            .load()
            .iter()
            .filter(|(domain, cert)| {
                issuers
                    .domains
                    .get(*domain)
                    .and_then(|d| d.issuer.as_ref().ok())
                    .is_some_and(|issuer| cert.cert.not_after < issuer.cert.not_after)
            })
            .map(|(_, cert)| cert.renew_at())
            .min()
    }

    /// The certificate currently served for `trust_domain`.
    pub fn get(&self, trust_domain: &str) -> Option<Arc<ServingCert>> {
        self.current.load().get(trust_domain).cloned()
    }

    fn make(&self, issuer: &CurrentIssuer, now: Timestamp) -> Result<ServingCert, String> {
        let name = service_name(&issuer.trust_domain);
        let window = leaf::window(now, LIFETIME, issuer.clock_skew, &issuer.cert)
            .map_err(|refusal| refusal.message)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot make a key: {e}"))?;
        let signed =
            leaf::sign(issuer, &name, &key, window).map_err(|e: PkiError| e.to_string())?;
        let mut chain = vec![CertificateDer::from(signed.cert.der.clone())];
        chain.extend(
            crate::controllers::identity::pki::parse_certificates(issuer.chain_pem.as_bytes())
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|c| CertificateDer::from(c.der)),
        );
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certified = CertifiedKey::from_der(chain, key_der, &self.provider)
            .map_err(|e| format!("rustls refused the certificate: {e}"))?;
        Ok(ServingCert {
            certified: Arc::new(certified),
            issuer_fingerprint: issuer.cert.fingerprint.clone(),
            cert: signed.cert,
            made_at: now,
        })
    }

    /// The certificate for a client that asked for `server_name` (SNI): the domain it names, else the
    /// only domain there is, else the first by name when the client sent no name at all.
    fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.load();
        let by_name = server_name
            .and_then(|name| name.strip_prefix(SERVICE_NAME_PREFIX))
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|domain| current.get(domain));
        let chosen = match (by_name, server_name) {
            (Some(cert), _) => Some(cert),
            (None, _) if current.len() == 1 => current.values().next(),
            (None, None) => current.values().next(),
            (None, Some(_)) => None,
        };
        chosen.map(|c| c.certified.clone())
    }
}

impl ResolvesServerCert for ServingCerts {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = self.choose(client_hello.server_name());
        if chosen.is_none() {
            tracing::debug!(
                server_name = ?client_hello.server_name(),
                "identity service: no certificate for this server name"
            );
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_service::issuers::{
        Domain,
        tests::{NOW, at, issuer},
    };

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn set(domains: Vec<(&str, Result<CurrentIssuer, String>)>) -> IssuerSet {
        IssuerSet {
            domains: domains
                .into_iter()
                .map(|(name, issuer)| {
                    (
                        name.to_string(),
                        Domain {
                            identity: "mesh".into(),
                            issuer: issuer.map(Arc::new),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn makes_one_per_domain_and_keeps_it_until_halfway() {
        let certs = ServingCerts::new(provider());
        let issuers = set(vec![(
            "cluster.local",
            Ok(issuer(NOW - 60, NOW + 7 * 86400)),
        )]);
        let changes = certs.refresh(&issuers, at(NOW));
        assert!(
            matches!(&changes[..], [Change::Made { not_after, .. }] if *not_after == at(NOW + 86400))
        );
        let first = certs.get("cluster.local").expect("made");
        let (_, parsed) = x509_parser::parse_x509_certificate(&first.cert.der).expect("parses");
        assert_eq!(
            parsed.subject().to_string(),
            "CN=weft-identity.cluster.local"
        );

        // Before halfway nothing changes; at halfway a new one is made.
        assert!(certs.refresh(&issuers, at(NOW + 3600)).is_empty());
        assert_eq!(certs.next_renewal(&issuers), Some(first.renew_at()));
        let halfway = first.renew_at();
        assert_eq!(halfway, at(NOW + 43200));
        assert_eq!(certs.refresh(&issuers, halfway).len(), 1);
        assert_ne!(
            certs.get("cluster.local").expect("made").cert.fingerprint,
            first.cert.fingerprint
        );
    }

    #[test]
    fn follows_the_issuer_and_never_outlives_it() {
        let certs = ServingCerts::new(provider());
        certs.refresh(
            &set(vec![("cluster.local", Ok(issuer(NOW - 60, NOW + 30)))]),
            at(NOW),
        );
        let first = certs.get("cluster.local").expect("made");
        assert_eq!(first.cert.not_after, at(NOW + 30));

        let rotated = issuer(NOW - 60, NOW + 60);
        let rotated_fingerprint = rotated.cert.fingerprint.clone();
        certs.refresh(&set(vec![("cluster.local", Ok(rotated))]), at(NOW + 1));
        let second = certs.get("cluster.local").expect("made");
        assert_eq!(second.issuer_fingerprint, rotated_fingerprint);
        assert_ne!(second.cert.fingerprint, first.cert.fingerprint);
    }

    #[test]
    fn a_cert_capped_at_its_issuer_waits_for_the_rotation() {
        let certs = ServingCerts::new(provider());
        let issuers = set(vec![("cluster.local", Ok(issuer(NOW - 60, NOW + 30)))]);
        certs.refresh(&issuers, at(NOW));
        // Past halfway, but a new one could not live longer: nothing is made, nothing is due.
        assert!(certs.refresh(&issuers, at(NOW + 20)).is_empty());
        assert_eq!(certs.next_renewal(&issuers), None);
    }

    #[test]
    fn keeps_a_valid_cert_while_the_issuer_is_unusable_and_drops_expired_ones() {
        let certs = ServingCerts::new(provider());
        certs.refresh(
            &set(vec![("cluster.local", Ok(issuer(NOW - 60, NOW + 30)))]),
            at(NOW),
        );
        let broken = set(vec![("cluster.local", Err("secret gone".into()))]);
        assert!(certs.refresh(&broken, at(NOW + 10)).is_empty());
        assert!(certs.get("cluster.local").is_some());
        let changes = certs.refresh(&broken, at(NOW + 31));
        assert!(matches!(&changes[..], [Change::Dropped { .. }]));
        assert!(certs.get("cluster.local").is_none());
    }

    #[test]
    fn chooses_by_server_name() {
        let certs = ServingCerts::new(provider());
        certs.refresh(
            &set(vec![
                ("a.org", Ok(issuer(NOW - 60, NOW + 86400))),
                ("b.org", Ok(issuer(NOW - 60, NOW + 86400))),
            ]),
            at(NOW),
        );
        let a = certs.get("a.org").expect("a");
        let b = certs.get("b.org").expect("b");
        let chosen = |name| certs.choose(name).map(|c| c.cert[0].to_vec());
        assert_eq!(
            chosen(Some("weft-identity.a.org")),
            Some(a.cert.der.clone())
        );
        assert_eq!(
            chosen(Some("weft-identity.b.org")),
            Some(b.cert.der.clone())
        );
        assert_eq!(chosen(Some("weft-identity.c.org")), None);
        assert_eq!(chosen(None), Some(a.cert.der.clone()));
    }
}

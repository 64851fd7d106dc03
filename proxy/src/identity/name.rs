//! Identity names (`<sa>.<ns>.serviceaccount.identity.<trust-domain>`) and the names derived from
//! them. Pure functions.

use weft_wire::identity::{parse_identity_name, service_name};

const INFIX: &str = ".serviceaccount.identity.";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error(
        "identity name {0:?} is not of the form <serviceaccount>.<namespace>.serviceaccount.identity.<trust-domain>"
    )]
    Shape(String),
    #[error("identity name {name:?} is not in the trust domain {trust_domain:?}")]
    OtherTrustDomain { name: String, trust_domain: String },
    #[error("{0:?} is not a valid DNS name")]
    NotDns(String),
}

/// The trust domain an identity name belongs to (what follows `.serviceaccount.identity.`).
pub fn trust_domain_of(name: &str) -> Option<&str> {
    let (_, domain) = name.split_once(INFIX)?;
    (!domain.is_empty()).then_some(domain)
}

/// Checks `name` against `trust_domain` (or the domain the name itself carries) and returns the
/// trust domain. A certificate carries the name as a DNS SAN, so it must also be a DNS name.
pub fn check(name: &str, trust_domain: Option<&str>) -> Result<String, NameError> {
    let domain = match trust_domain {
        Some(domain) => domain,
        None => trust_domain_of(name).ok_or_else(|| NameError::Shape(name.to_string()))?,
    };
    if parse_identity_name(name, domain).is_none() {
        return Err(match trust_domain_of(name) {
            Some(_) if trust_domain.is_some() => NameError::OtherTrustDomain {
                name: name.to_string(),
                trust_domain: domain.to_string(),
            },
            _ => NameError::Shape(name.to_string()),
        });
    }
    rustls::pki_types::ServerName::try_from(name)
        .map_err(|_| NameError::NotDns(name.to_string()))?;
    Ok(domain.to_string())
}

/// The DNS name the identity service's certificate carries in `trust_domain`.
pub fn default_service_name(trust_domain: &str) -> String {
    service_name(trust_domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "web.shop.serviceaccount.identity.cluster.local";

    #[test]
    fn derives_the_trust_domain_and_the_service_name() {
        assert_eq!(trust_domain_of(NAME), Some("cluster.local"));
        assert_eq!(check(NAME, None).as_deref(), Ok("cluster.local"));
        assert_eq!(
            default_service_name("cluster.local"),
            "weft-identity.cluster.local"
        );
    }

    #[test]
    fn refuses_other_shapes_and_domains() {
        assert!(matches!(
            check("web.shop.cluster.local", None),
            Err(NameError::Shape(_))
        ));
        assert!(matches!(
            check(NAME, Some("example.org")),
            Err(NameError::OtherTrustDomain { .. })
        ));
        assert!(matches!(
            check("a.b.c.serviceaccount.identity.cluster.local", None),
            Err(NameError::Shape(_))
        ));
        assert!(matches!(
            check("we b.shop.serviceaccount.identity.cluster.local", None),
            Err(NameError::NotDns(_))
        ));
    }
}

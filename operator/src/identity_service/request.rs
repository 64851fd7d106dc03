//! A certify request read and checked before anything is asked of the API server: well-formed JSON,
//! sizes within bounds, and an identity name of a trust domain this service signs for.

use super::refusal::Refusal;
use weft_wire::identity::{CertifyRequest, parse_identity_name};

/// Longest identity name accepted (a DNS name).
const MAX_IDENTITY_LEN: usize = 253;
/// Longest token accepted; projected ServiceAccount tokens are about 1 KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest CSR accepted; an ECDSA or Ed25519 CSR is well under 1 KiB, RSA-4096 about 2 KiB.
const MAX_CSR_LEN: usize = 16 * 1024;

/// A request whose shape is right: what remains is to check who sent it and what it asks to sign.
#[derive(Clone, PartialEq, Eq)]
pub struct Certifiable {
    pub identity: String,
    pub service_account: String,
    pub namespace: String,
    pub trust_domain: String,
    pub token: String,
    pub csr_pem: String,
}

impl std::fmt::Debug for Certifiable {
    // The token is a credential: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certifiable")
            .field("identity", &self.identity)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// Reads `body` and finds the trust domain (among `trust_domains`) the asked-for identity belongs to.
/// When several match (`a.b` and `b`), the longest wins: it is the more specific.
pub fn parse<'a>(
    body: &[u8],
    trust_domains: impl IntoIterator<Item = &'a str>,
) -> Result<Certifiable, Refusal> {
    let request: CertifyRequest = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("the body is not a certify request: {e}")))?;
    if request.identity.is_empty() || request.identity.len() > MAX_IDENTITY_LEN {
        return Err(Refusal::bad_request(format!(
            "identity must be 1 to {MAX_IDENTITY_LEN} characters"
        )));
    }
    if request.token.is_empty() || request.token.len() > MAX_TOKEN_LEN {
        return Err(Refusal::bad_request(format!(
            "token must be 1 to {MAX_TOKEN_LEN} bytes"
        )));
    }
    if request.csr_pem.is_empty() || request.csr_pem.len() > MAX_CSR_LEN {
        return Err(Refusal::bad_request(format!(
            "csrPem must be 1 to {MAX_CSR_LEN} bytes"
        )));
    }
    let (trust_domain, (service_account, namespace)) = trust_domains
        .into_iter()
        .filter_map(|domain| {
            parse_identity_name(&request.identity, domain).map(|parts| (domain, parts))
        })
        .max_by_key(|(domain, _)| domain.len())
        .ok_or_else(|| {
            Refusal::bad_request(format!(
                "{:?} is not <serviceaccount>.<namespace>.serviceaccount.identity.<trust-domain> \
                 for a trust domain this service signs for",
                request.identity
            ))
        })?;
    Ok(Certifiable {
        service_account: service_account.to_string(),
        namespace: namespace.to_string(),
        trust_domain: trust_domain.to_string(),
        identity: request.identity,
        token: request.token,
        csr_pem: request.csr_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::identity::refusal;

    fn body(identity: &str, token: &str, csr: &str) -> Vec<u8> {
        serde_json::to_vec(&CertifyRequest {
            identity: identity.into(),
            token: token.into(),
            csr_pem: csr.into(),
        })
        .expect("json")
    }

    #[test]
    fn finds_service_account_namespace_and_domain() {
        let request = parse(
            &body("web.shop.serviceaccount.identity.cluster.local", "t", "c"),
            ["example.org", "cluster.local"],
        )
        .expect("valid");
        assert_eq!(request.service_account, "web");
        assert_eq!(request.namespace, "shop");
        assert_eq!(request.trust_domain, "cluster.local");
    }

    #[test]
    fn the_most_specific_domain_wins() {
        let request = parse(
            &body(
                "web.shop.serviceaccount.identity.east.example.org",
                "t",
                "c",
            ),
            ["example.org", "east.example.org"],
        )
        .expect("valid");
        assert_eq!(request.trust_domain, "east.example.org");
        assert_eq!(request.namespace, "shop");
    }

    #[test]
    fn refuses_what_is_not_a_request_of_ours() {
        let domains = ["cluster.local"];
        for (what, input) in [
            ("not JSON", b"hello".to_vec()),
            ("missing fields", br#"{"identity":"x"}"#.to_vec()),
            (
                "other domain",
                body("web.shop.serviceaccount.identity.other.org", "t", "c"),
            ),
            (
                "not an identity name",
                body("web.shop.cluster.local", "t", "c"),
            ),
            (
                "empty token",
                body("web.shop.serviceaccount.identity.cluster.local", "", "c"),
            ),
            (
                "huge token",
                body(
                    "web.shop.serviceaccount.identity.cluster.local",
                    &"x".repeat(MAX_TOKEN_LEN + 1),
                    "c",
                ),
            ),
            (
                "empty csr",
                body("web.shop.serviceaccount.identity.cluster.local", "t", ""),
            ),
        ] {
            let refused = parse(&input, domains).expect_err(what);
            assert_eq!(refused.reason, refusal::BAD_REQUEST, "{what}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let request = parse(
            &body(
                "web.shop.serviceaccount.identity.cluster.local",
                "secret-token",
                "c",
            ),
            ["cluster.local"],
        )
        .expect("valid");
        assert!(!format!("{request:?}").contains("secret-token"));
    }
}

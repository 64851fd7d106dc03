//! The identity service: a proxy proves its ServiceAccount with a projected token and gets a
//! short-lived certificate for its identity name.
//!
//! # Protocol
//! HTTP/2 (ALPN `h2`; HTTP/1.1 is accepted too) over TLS 1.3 only to the operator's identity port
//! (`--identity-addr`, 8080 in `config/`; every operator replica serves it), verified against the
//! trust bundle with the server name [`SERVICE_NAME_PREFIX`]`.<trust-domain>` (see [`service_name`]; the
//! service picks its certificate by this SNI). The service's certificate is signed by the same issuer
//! as the leaves it hands out. No client certificate: the token proves who calls.
//!
//! `POST /v1/certify`, `content-type: application/json`, body [`CertifyRequest`] (at most 64 KiB).
//! - `200` with a [`CertifyResponse`]: the signed leaf, the chain up to (not including) the anchor,
//!   and the expiry;
//! - `4xx`/`5xx` with a [`CertifyError`]: `reason` is one of [`refusal`]'s constants (machine-readable,
//!   also the `reason` label of the operator's refusal counter), `message` says why in words. The
//!   status follows the reason: 400 `BadRequest`/`BadCsr`, 401 `TokenInvalid`/`TokenAudience`,
//!   403 `IdentityMismatch`, 429 `RateLimited` (with `retry-after` in seconds), 503 `NoIssuer`/
//!   `ReviewFailed` (retry with backoff).
//!
//! The leaf: DNS SAN = the identity (only), not a CA, EKU serverAuth + clientAuth, valid from now minus
//! the Identity's `spec.leaf.clockSkewAllowance` for `spec.leaf.lifetime`, never past the issuer's
//! expiry. Only the CSR's public key is used; its SANs must be exactly the identity. The service checks
//! the token with a TokenReview for [`TOKEN_AUDIENCE`] and requires its user to be
//! `system:serviceaccount:<namespace>:<serviceaccount>` of the identity; it rate-limits each
//! authenticated identity (token bucket; burst 10, 1 per second by default).
//!
//! JSON rather than protobuf: one call a day per proxy does not need a codec, and `curl` can speak it.

use serde::{Deserialize, Serialize};

/// Path of the certify call.
pub const CERTIFY_PATH: &str = "/v1/certify";

/// Audience the proxy's projected ServiceAccount token must carry (Linkerd: `identity.l5d.io`).
pub const TOKEN_AUDIENCE: &str = "identity.weft.dev";

/// The identity service's certificate names the DNS name `weft-identity.<trust-domain>`, which the
/// proxy verifies before it sends its token.
pub const SERVICE_NAME_PREFIX: &str = "weft-identity";

/// A proxy's request for a certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertifyRequest {
    /// The identity name asked for: `<sa>.<ns>.serviceaccount.identity.<trust-domain>`.
    pub identity: String,
    /// The pod's projected ServiceAccount token (audience [`TOKEN_AUDIENCE`]).
    pub token: String,
    /// A PKCS#10 certificate signing request in PEM, for a key the proxy made and keeps.
    pub csr_pem: String,
}

/// A signed certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertifyResponse {
    /// The leaf certificate, PEM.
    pub leaf_pem: String,
    /// Intermediates from the leaf's issuer up to, not including, the trust anchor, PEM.
    pub chain_pem: String,
    /// The leaf's `notAfter`, in seconds since the Unix epoch.
    pub valid_until_unix: i64,
}

/// Why a certify call was refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertifyError {
    pub reason: String,
    pub message: String,
}

/// Machine-readable refusal reasons.
pub mod refusal {
    /// The body is not a valid [`super::CertifyRequest`].
    pub const BAD_REQUEST: &str = "BadRequest";
    /// The TokenReview said the token is not authenticated (expired, forged, revoked).
    pub const TOKEN_INVALID: &str = "TokenInvalid";
    /// The token is valid but not for [`super::TOKEN_AUDIENCE`].
    pub const TOKEN_AUDIENCE: &str = "TokenAudience";
    /// The token belongs to another ServiceAccount than the identity asked for.
    pub const IDENTITY_MISMATCH: &str = "IdentityMismatch";
    /// The CSR is unparsable, not self-signed correctly, or names something else than the identity.
    pub const BAD_CSR: &str = "BadCsr";
    /// Too many requests for this identity.
    pub const RATE_LIMITED: &str = "RateLimited";
    /// No valid issuer is available to sign (never signs with an expired one).
    pub const NO_ISSUER: &str = "NoIssuer";
    /// The TokenReview could not be made (API server unreachable).
    pub const REVIEW_FAILED: &str = "ReviewFailed";
}

/// `<serviceaccount>.<namespace>.serviceaccount.identity.<trust-domain>` (Linkerd's shape without
/// its control-plane namespace).
pub fn identity_name(service_account: &str, namespace: &str, trust_domain: &str) -> String {
    format!("{service_account}.{namespace}.serviceaccount.identity.{trust_domain}")
}

/// The (service account, namespace) an identity name stands for in `trust_domain`, or `None` when
/// it is not of that shape. Kubernetes names contain no dots, so the split is unambiguous.
pub fn parse_identity_name<'a>(name: &'a str, trust_domain: &str) -> Option<(&'a str, &'a str)> {
    let rest = name
        .strip_suffix(trust_domain)?
        .strip_suffix(".serviceaccount.identity.")?;
    let (service_account, namespace) = rest.split_once('.')?;
    if service_account.is_empty() || namespace.is_empty() || namespace.contains('.') {
        return None;
    }
    Some((service_account, namespace))
}

/// The DNS name the identity service's certificate carries in `trust_domain`.
pub fn service_name(trust_domain: &str) -> String {
    format!("{SERVICE_NAME_PREFIX}.{trust_domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = identity_name("web", "shop", "cluster.local");
        assert_eq!(name, "web.shop.serviceaccount.identity.cluster.local");
        assert_eq!(
            parse_identity_name(&name, "cluster.local"),
            Some(("web", "shop"))
        );
    }

    #[test]
    fn rejects_other_shapes() {
        assert_eq!(
            parse_identity_name(
                "web.shop.serviceaccount.identity.other.domain",
                "cluster.local"
            ),
            None
        );
        assert_eq!(
            parse_identity_name("web.serviceaccount.identity.cluster.local", "cluster.local"),
            None
        );
        assert_eq!(
            parse_identity_name(
                "a.b.c.serviceaccount.identity.cluster.local",
                "cluster.local"
            ),
            None
        );
        assert_eq!(
            parse_identity_name(
                ".shop.serviceaccount.identity.cluster.local",
                "cluster.local"
            ),
            None
        );
    }

    #[test]
    fn request_is_camel_case_json() {
        let request = CertifyRequest {
            identity: "a".into(),
            token: "t".into(),
            csr_pem: "c".into(),
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"identity":"a","token":"t","csrPem":"c"}"#);
    }
}

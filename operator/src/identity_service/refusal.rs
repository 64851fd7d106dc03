//! Why a certify call was refused: the wire reason (also the metric label), the HTTP status, and a message
//! for the proxy's log. Messages never contain the token or key material.

use http::StatusCode;
use std::time::Duration;
use weft_wire::identity::{CertifyError, refusal};

/// A refused certify call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// One of [`weft_wire::identity::refusal`]'s constants.
    pub reason: &'static str,
    pub message: String,
    /// When the caller may try again (rate limiting): the `retry-after` header.
    pub retry_after: Option<Duration>,
}

/// Every reason the service can give, so the refusal counter starts at zero for each of them.
pub const ALL_REASONS: [&str; 8] = [
    refusal::BAD_REQUEST,
    refusal::TOKEN_INVALID,
    refusal::TOKEN_AUDIENCE,
    refusal::IDENTITY_MISMATCH,
    refusal::BAD_CSR,
    refusal::RATE_LIMITED,
    refusal::NO_ISSUER,
    refusal::REVIEW_FAILED,
];

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Too many calls for `identity`; a token is back after `wait`.
    pub fn rate_limited(identity: &str, wait: Duration) -> Self {
        Self {
            reason: refusal::RATE_LIMITED,
            message: format!(
                "too many certify calls for {identity}; retry in {} ms",
                wait.as_millis().max(1)
            ),
            retry_after: Some(wait),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(refusal::BAD_REQUEST, message)
    }

    pub fn bad_csr(message: impl Into<String>) -> Self {
        Self::new(refusal::BAD_CSR, message)
    }

    pub fn no_issuer(message: impl Into<String>) -> Self {
        Self::new(refusal::NO_ISSUER, message)
    }

    /// The HTTP status: 400 for what the caller sent, 401 for a token that does not authenticate it
    /// here, 403 for a token of someone else, 429 for too many calls, 503 when the service cannot sign
    /// right now (the caller should retry).
    pub fn status(&self) -> StatusCode {
        match self.reason {
            refusal::BAD_REQUEST | refusal::BAD_CSR => StatusCode::BAD_REQUEST,
            refusal::TOKEN_INVALID | refusal::TOKEN_AUDIENCE => StatusCode::UNAUTHORIZED,
            refusal::IDENTITY_MISMATCH => StatusCode::FORBIDDEN,
            refusal::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The response body.
    pub fn to_wire(&self) -> CertifyError {
        CertifyError {
            reason: self.reason.to_string(),
            message: self.message.clone(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_status() {
        let status = |reason| Refusal::new(reason, "").status().as_u16();
        assert_eq!(status(refusal::BAD_REQUEST), 400);
        assert_eq!(status(refusal::BAD_CSR), 400);
        assert_eq!(status(refusal::TOKEN_INVALID), 401);
        assert_eq!(status(refusal::TOKEN_AUDIENCE), 401);
        assert_eq!(status(refusal::IDENTITY_MISMATCH), 403);
        assert_eq!(status(refusal::RATE_LIMITED), 429);
        assert_eq!(status(refusal::NO_ISSUER), 503);
        assert_eq!(status(refusal::REVIEW_FAILED), 503);
    }
}

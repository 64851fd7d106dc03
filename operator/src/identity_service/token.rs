//! Deciding on a TokenReview's answer: the token must be authenticated, for [`TOKEN_AUDIENCE`], and of
//! the ServiceAccount the requested identity names. Pure: the review itself is made in
//! [`super::review`].

use super::refusal::Refusal;
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::TokenReviewStatus;
use weft_wire::identity::{TOKEN_AUDIENCE, refusal};

/// Checks the API server's verdict on a token against the ServiceAccount `service_account` in
/// `namespace`. `token` is only read to tell a wrong audience from other failures (its claims are not
/// trusted: the API server's verdict is).
pub fn judge(
    status: &TokenReviewStatus,
    token: &str,
    service_account: &str,
    namespace: &str,
) -> Result<(), Refusal> {
    if status.authenticated != Some(true) {
        // The API server refuses a token of another audience with an opaque error; the token's own
        // `aud` claim says which case this is.
        if unverified_audiences(token).is_some_and(|aud| !aud.iter().any(|a| a == TOKEN_AUDIENCE)) {
            return Err(Refusal::new(
                refusal::TOKEN_AUDIENCE,
                format!("the token is not for the audience {TOKEN_AUDIENCE}"),
            ));
        }
        let why = status.error.as_deref().unwrap_or("no reason given");
        return Err(Refusal::new(
            refusal::TOKEN_INVALID,
            format!("the API server did not authenticate the token: {why}"),
        ));
    }
    let audiences = status.audiences.as_deref().unwrap_or_default();
    if !audiences.iter().any(|a| a == TOKEN_AUDIENCE) {
        return Err(Refusal::new(
            refusal::TOKEN_AUDIENCE,
            format!("the token is valid for {audiences:?}, not for {TOKEN_AUDIENCE}"),
        ));
    }
    let username = status
        .user
        .as_ref()
        .and_then(|user| user.username.as_deref())
        .unwrap_or_default();
    let expected = service_account_username(service_account, namespace);
    if username != expected {
        return Err(Refusal::new(
            refusal::IDENTITY_MISMATCH,
            format!("the token belongs to {username:?}, not to {expected:?}"),
        ));
    }
    Ok(())
}

/// The username Kubernetes gives a ServiceAccount's tokens.
pub fn service_account_username(service_account: &str, namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// The `aud` claim of a JWT, read without checking its signature; `None` when `token` is not a JWT.
pub fn unverified_audiences(token: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    match claims.get("aud")? {
        serde_json::Value::String(one) => Some(vec![one.clone()]),
        serde_json::Value::Array(many) => Some(
            many.iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn jwt(claims: serde_json::Value) -> String {
        let encode = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(v).expect("json"))
        };
        format!(
            "{}.{}.c2lnbmF0dXJl",
            encode(&serde_json::json!({"alg": "RS256"})),
            encode(&claims)
        )
    }

    fn authenticated(username: &str, audiences: &[&str]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            user: Some(UserInfo {
                username: Some(username.into()),
                ..UserInfo::default()
            }),
            error: None,
        }
    }

    #[test]
    fn accepts_the_service_account_of_the_identity() {
        let status = authenticated("system:serviceaccount:shop:web", &[TOKEN_AUDIENCE]);
        assert_eq!(judge(&status, "opaque", "web", "shop"), Ok(()));
    }

    #[test]
    fn refuses_another_service_account_or_namespace() {
        for username in [
            "system:serviceaccount:shop:db",
            "system:serviceaccount:other:web",
            "admin",
            "",
        ] {
            let status = authenticated(username, &[TOKEN_AUDIENCE]);
            let refused = judge(&status, "opaque", "web", "shop").expect_err(username);
            assert_eq!(refused.reason, refusal::IDENTITY_MISMATCH, "{username}");
        }
    }

    #[test]
    fn refuses_an_authenticated_token_without_our_audience() {
        let status = authenticated("system:serviceaccount:shop:web", &["https://kubernetes"]);
        let refused = judge(&status, "opaque", "web", "shop").expect_err("refused");
        assert_eq!(refused.reason, refusal::TOKEN_AUDIENCE);
    }

    #[test]
    fn tells_a_wrong_audience_from_an_invalid_token() {
        let unauthenticated = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token audiences are invalid".into()),
            ..TokenReviewStatus::default()
        };
        let other_audience = jwt(serde_json::json!({"aud": ["https://kubernetes"]}));
        assert_eq!(
            judge(&unauthenticated, &other_audience, "web", "shop")
                .expect_err("refused")
                .reason,
            refusal::TOKEN_AUDIENCE
        );
        let ours = jwt(serde_json::json!({"aud": TOKEN_AUDIENCE, "exp": 1}));
        let refused = judge(&unauthenticated, &ours, "web", "shop").expect_err("refused");
        assert_eq!(refused.reason, refusal::TOKEN_INVALID);
        assert!(refused.message.contains("token audiences are invalid"));
        assert_eq!(
            judge(&TokenReviewStatus::default(), "not-a-jwt", "web", "shop")
                .expect_err("refused")
                .reason,
            refusal::TOKEN_INVALID
        );
    }

    #[test]
    fn reads_audiences_as_string_or_list() {
        assert_eq!(
            unverified_audiences(&jwt(serde_json::json!({"aud": "a"}))),
            Some(vec!["a".to_string()])
        );
        assert_eq!(
            unverified_audiences(&jwt(serde_json::json!({"aud": ["a", "b"]}))),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(unverified_audiences("a.!!!.c"), None);
        assert_eq!(unverified_audiences(""), None);
    }
}

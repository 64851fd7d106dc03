//! Asking the API server about a token: a TokenReview (authentication.k8s.io/v1) for
//! [`TOKEN_AUDIENCE`]. Behind a trait so the certify flow can be tested without an API server.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::{Api, Client, api::PostParams};
use weft_wire::identity::TOKEN_AUDIENCE;

/// Reviews tokens.
pub trait Reviewer: Send + Sync + 'static {
    /// The API server's verdict on `token`, or why none could be had.
    fn review(&self, token: &str)
    -> impl Future<Output = Result<TokenReviewStatus, String>> + Send;
}

/// The real one: a TokenReview through the operator's client.
pub struct KubeReviewer {
    api: Api<TokenReview>,
}

impl KubeReviewer {
    pub fn new(client: Client) -> Self {
        Self {
            api: Api::all(client),
        }
    }
}

impl Reviewer for KubeReviewer {
    async fn review(&self, token: &str) -> Result<TokenReviewStatus, String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
            },
            ..TokenReview::default()
        };
        // The error text of a failed create names the resource and the API server's message, never the
        // request body, so it is safe to log.
        let reviewed = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview failed: {e}"))?;
        reviewed
            .status
            .ok_or_else(|| "the TokenReview came back without a status".to_string())
    }
}

//! The identity service: proxies send a CSR and their ServiceAccount token, and get a short-lived leaf
//! certificate for their identity. Every replica serves it, leader or not: signing needs only the issuer
//! Secret, which every replica reads. The protocol is `weft_wire::identity`.
//!
//! - [`args`]: flags (address, rate limit, resync period);
//! - [`request`]: reading and checking a certify request;
//! - [`review`] / [`token`]: the TokenReview, and deciding on its answer;
//! - [`csr`]: the proxy's certificate signing request;
//! - [`leaf`]: a leaf's validity window and signing;
//! - [`rate_limit`]: token buckets per identity;
//! - [`issuers`]: the issuer per trust domain, read from an Identity's Secret and bundle;
//! - [`tracker`]: keeping those issuers current (watches and a timer);
//! - [`serving_cert`]: the service's own TLS certificate per trust domain;
//! - [`certify`]: one call, start to end, with its metrics and log;
//! - [`refusal`]: refusal reasons and HTTP statuses;
//! - [`server`]: TLS 1.3 and HTTP/2 or HTTP/1.1.

pub mod args;
pub mod certify;
pub mod csr;
pub mod issuers;
pub mod leaf;
pub mod rate_limit;
pub mod refusal;
pub mod request;
pub mod review;
pub mod server;
pub mod serving_cert;
pub mod token;
pub mod tracker;

use crate::metrics::Metrics;
use anyhow::Context as _;
use arc_swap::ArcSwap;
use args::ServiceArgs;
use issuers::IssuerSet;
use kube::Client;
use rate_limit::{Limits, RateLimiter};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Binds the service's port and starts serving and tracking issuers in the background. Fails only when
/// the flags are wrong or the port cannot be bound.
pub async fn start(
    client: Client,
    namespace: String,
    metrics: Arc<Metrics>,
    args: &ServiceArgs,
) -> anyhow::Result<()> {
    let limits = Limits::new(args.identity_rate_burst, args.identity_rate_per_second)
        .map_err(anyhow::Error::msg)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let issuers = Arc::new(ArcSwap::from_pointee(IssuerSet::default()));
    let serving = Arc::new(serving_cert::ServingCerts::new(provider.clone()));
    let tls = server::tls_config(provider, serving.clone())
        .context("cannot configure TLS for the identity service")?;
    let listener = TcpListener::bind(args.identity_addr)
        .await
        .with_context(|| format!("identity service: cannot listen on {}", args.identity_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "identity service listening");

    let certifier = Arc::new(certify::Certifier::new(
        issuers.clone(),
        RateLimiter::new(limits),
        review::KubeReviewer::new(client.clone()),
        metrics.clone(),
    ));
    let tracker = tracker::Tracker {
        client,
        namespace,
        resync: args.identity_issuer_resync,
        issuers,
        serving,
        metrics,
    };
    tokio::spawn(tracker.run());
    tokio::spawn(server::serve(listener, tls, certifier));
    Ok(())
}

//! Runs only the MeshPolicy and TrafficSplit controllers against the cluster of `KUBECONFIG`, without
//! leader election: a way to try them against a real API server while the rest of the operator changes.
//!
//! `KUBECONFIG=... cargo run -p weft-operator --example policy_only`
use tracing_subscriber::EnvFilter;
use weft_operator::{
    context::Context,
    controllers::{mesh_policy, traffic_split},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let client = kube::Client::try_default().await?;
    let ctx = Context::new(
        client,
        "default".to_string(),
        Some("policy-only".to_string()),
    );
    tokio::select! {
        _ = mesh_policy::run(ctx.clone()) => {}
        _ = traffic_split::run(ctx) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

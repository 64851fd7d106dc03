//! `weft-operator`: reads its arguments, sets up logging, the Kubernetes client, the admin server and the
//! identity service (served by every replica), waits
//! to become leader, and runs the controllers while it leads.
//!
//! Exit codes: 0 after SIGTERM/SIGINT (the Lease is released first so a standby takes over at once);
//! 1 when leadership is lost (the process stops writing at once; the Deployment restarts it as a standby)
//! or on a startup error.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use std::{process::ExitCode, sync::Arc};
use tokio::net::TcpListener;
use weft_operator::{
    admin::{self, AdminState},
    args::Args,
    context::Context,
    controllers, identity_service, leader,
};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = init_tracing(&args.log_format) {
        eprintln!("weft-operator: {error}");
        return ExitCode::from(2);
    }
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let holder = leader::holder_identity(args.pod_name.as_deref());
    let client = kube::Client::try_default()
        .await
        .context("cannot create a Kubernetes client (KUBECONFIG or in-cluster config)")?;
    let ctx = Context::new(client.clone(), args.namespace.clone(), Some(holder.clone()));

    let listener = TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.admin_addr))?;
    let admin_state = Arc::new(AdminState::new(ctx.metrics.clone()));
    tracing::info!(addr = %listener.local_addr()?, "admin server listening (/live, /ready, /metrics)");
    tokio::spawn(admin::serve(listener, admin_state.clone()));
    // Every replica signs proxies' certificates, leader or standby.
    identity_service::start(
        client.clone(),
        args.namespace.clone(),
        ctx.metrics.clone(),
        &args.identity,
    )
    .await?;

    let lease_settings = leader::LeaseSettings {
        name: args.lease_name.clone(),
        holder: holder.clone(),
        duration: args.lease_duration,
    };
    let leases = kube::Api::<Lease>::namespaced(client, &args.namespace);
    tracing::info!(%holder, namespace = %args.namespace, lease = %args.lease_name, "starting; waiting for the leader Lease");

    let mut leadership = tokio::select! {
        leadership = leader::acquire(&leases, &lease_settings, || admin_state.set_ready()) => leadership,
        signal = shutdown_signal() => {
            tracing::info!("{signal} while standing by; exiting");
            return Ok(ExitCode::SUCCESS);
        }
    };
    ctx.metrics.set_leader(true);

    let controllers = async {
        tokio::join!(
            controllers::identity::run(ctx.clone()),
            controllers::mesh_policy::run(ctx.clone()),
            controllers::traffic_split::run(ctx.clone()),
        )
    };
    tokio::select! {
        lost = leadership.hold() => {
            // Stop writing now: exiting drops every in-flight reconcile.
            tracing::error!("lost leadership: {lost}; exiting so the Deployment restarts this replica as a standby");
            std::process::exit(1);
        }
        _ = controllers => {
            tracing::error!("the controllers stopped unexpectedly");
            leadership.release().await;
            Ok(ExitCode::FAILURE)
        }
        signal = shutdown_signal() => {
            tracing::info!("{signal}: stopping the controllers and releasing the Lease");
            leadership.release().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves on SIGTERM (Kubernetes' stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action (exit) applies; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

fn init_tracing(format: &str) -> Result<(), String> {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        "plain" => fmt().with_env_filter(filter).init(),
        "json" => fmt().json().with_env_filter(filter).init(),
        other => return Err(format!("--log-format {other:?}: expected plain or json")),
    }
    Ok(())
}

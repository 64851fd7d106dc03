//! Wires the proxy together and runs it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info};

use crate::admin::Admin;
use crate::args::Args;
use crate::config::ConfigError;
use crate::config_watch;
use crate::endpoint::ClientSettings;
use crate::lifecycle::{Lifecycle, Phase, reached};
use crate::load::EwmaConfig;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::server::{Direction, Listener, ServerSettings};
use crate::tls::accept::ServerTls;
use crate::tls::connect::ClientTls;

/// After the proxy decides to stop, connections get this long to finish their requests.
const FINAL_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration {path}: {source}")]
    Config {
        path: String,
        #[source]
        source: ConfigError,
    },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("identity: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
}

pub async fn run(args: Args) -> Result<(), AppError> {
    let config = config_watch::load(&args.config).map_err(|source| AppError::Config {
        path: args.config.display().to_string(),
        source,
    })?;
    let lifecycle = Arc::new(Lifecycle::default());
    let (metrics, mtls) = match &args.identity {
        None => (Arc::new(Metrics::new()), None),
        Some(settings) => {
            let metrics = Arc::new(Metrics::with_mtls());
            let mtls_metrics = metrics.mtls().cloned().expect("registered by with_mtls");
            let credentials = crate::identity::start(
                settings,
                args.config_poll,
                mtls_metrics.clone(),
                lifecycle.clone(),
            )?;
            let client = ClientTls::new(
                credentials.clone(),
                mtls_metrics.clone(),
                args.detect_timeout,
            )?;
            let server = ServerTls::new(
                credentials,
                mtls_metrics,
                args.inbound_permissive.clone(),
                args.detect_timeout,
            )?;
            (metrics, Some((Arc::new(client), Arc::new(server))))
        }
    };
    let client_settings = Arc::new(ClientSettings {
        ewma: EwmaConfig {
            default_rtt: args.ewma_default_rtt,
            decay: args.ewma_decay,
        },
        connect_timeout: args.connect_timeout,
        tls: mtls.as_ref().map(|(client, _)| client.clone()),
        ..ClientSettings::default()
    });
    let router = Arc::new(Router::new(metrics.clone(), client_settings));
    router.apply(&config);

    let (config_tx, mut config_rx) = watch::channel(Arc::new(config));
    tokio::spawn(config_watch::watch_file(
        args.config.clone(),
        args.config_poll,
        config_tx,
    ));
    let applier = router.clone();
    tokio::spawn(async move {
        while config_rx.changed().await.is_ok() {
            let config = config_rx.borrow_and_update().clone();
            applier.apply(&config);
        }
    });

    let server_settings = ServerSettings {
        detect_timeout: args.detect_timeout,
        header_read_timeout: args.detect_timeout,
        opaque_ports: args.opaque_ports.clone(),
        ..ServerSettings::default()
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(AppError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AppError::Signals)?;

    let admin_listener = bind("admin", args.admin).await?;
    let outbound_listener = bind("outbound", args.outbound).await?;
    let inbound_listener = match args.inbound {
        Some(addr) => Some(bind("inbound", addr).await?),
        None => None,
    };

    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        lifecycle: lifecycle.clone(),
    });
    tokio::spawn(admin.run(admin_listener));
    let outbound = Arc::new(Listener::new(
        Direction::Outbound,
        router.clone(),
        lifecycle.clone(),
        server_settings.clone(),
        None,
        None,
    ));
    let mut accept_loops = vec![tokio::spawn(outbound.run(outbound_listener))];
    if let Some(listener) = inbound_listener {
        let inbound = Arc::new(Listener::new(
            Direction::Inbound,
            router.clone(),
            lifecycle.clone(),
            server_settings,
            args.inbound_app,
            mtls.as_ref().map(|(_, server)| server.clone()),
        ));
        accept_loops.push(tokio::spawn(inbound.run(listener)));
    }

    // === shutdown ===
    let mut phase = lifecycle.subscribe();
    tokio::select! {
        _ = sigterm.recv() => {
            info!(grace = ?args.shutdown_grace, "SIGTERM: not ready; serving until the application is gone or the grace period ends");
            lifecycle.advance(Phase::Draining);
            tokio::select! {
                _ = tokio::time::sleep(args.shutdown_grace) => info!("grace period over"),
                _ = application_gone(args.inbound_app) => info!("application is gone"),
                _ = sigterm.recv() => info!("second SIGTERM"),
                _ = sigint.recv() => info!("SIGINT"),
                _ = reached(&mut phase, Phase::Stopping) => {}
            }
        }
        _ = sigint.recv() => info!("SIGINT"),
        _ = reached(&mut phase, Phase::Stopping) => {}
    }
    lifecycle.advance(Phase::Stopping);
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    lifecycle.connections.close();
    if tokio::time::timeout(FINAL_DRAIN, lifecycle.connections.wait())
        .await
        .is_err()
    {
        info!(
            open = lifecycle.connections.len(),
            "closing connections still open after the final drain"
        );
    }
    info!("stopped");
    Ok(())
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    // Tests and scripts read this line to learn ports chosen by the OS (port 0).
    info!("{what} listening on {local}");
    Ok(listener)
}

/// Resolves when the application stops accepting connections on its inbound port. Without a
/// known port the application's end cannot be observed: never resolves.
async fn application_gone(app: Option<SocketAddr>) {
    let Some(app) = app else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match TcpStream::connect(app).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(e) => error!(%app, error = %e, "probing the application"),
            Ok(_) => {}
        }
    }
}

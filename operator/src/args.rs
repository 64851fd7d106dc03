//! Command line and environment of `weft-operator`.

use clap::Parser;
use std::{net::SocketAddr, time::Duration};

#[derive(Parser, Debug, Clone)]
#[command(name = "weft-operator", version, about = "weft's control plane")]
pub struct Args {
    /// Namespace the operator runs in; home of the Lease and of the Identity's Secrets and ConfigMaps.
    #[arg(long, env = "WEFT_NAMESPACE", default_value = "weft-system")]
    pub namespace: String,

    /// This replica's name in the Lease and in Events (the pod name when run by a Deployment).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Name of the coordination.k8s.io Lease that elects the one replica that writes.
    #[arg(long, env = "WEFT_LEASE_NAME", default_value = "weft-operator")]
    pub lease_name: String,

    /// How long a leader's claim holds without renewal; a standby takes over after it lapses.
    #[arg(long, env = "WEFT_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// Address of the operator's own HTTP server: /metrics, /live, /ready.
    #[arg(long, env = "WEFT_ADMIN_ADDR", default_value = "0.0.0.0:9990")]
    pub admin_addr: SocketAddr,

    /// Log format: `plain` or `json`.
    #[arg(long, env = "WEFT_LOG_FORMAT", default_value = "plain")]
    pub log_format: String,

    #[command(flatten)]
    pub identity: crate::identity_service::args::ServiceArgs,
}

/// Parses a flag's duration with the grammar of the CRDs (`90s`, `15m`, `1h30m`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weft_crds::duration::parse(text).map_err(|e| e.to_string())
}

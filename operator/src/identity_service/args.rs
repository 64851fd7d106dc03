//! The identity service's command line and environment (flattened into the operator's [`crate::args::Args`]).

use crate::args::parse_duration;
use clap::Args;
use std::{net::SocketAddr, time::Duration};

#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Address of the identity service (HTTPS; proxies send their CSRs here). Every replica serves it.
    /// `127.0.0.1:0` picks a free port; the bound address is logged.
    #[arg(long, env = "WEFT_IDENTITY_ADDR", default_value = "0.0.0.0:8080")]
    pub identity_addr: SocketAddr,

    /// Certificates one identity may get in a burst before the rate limit applies.
    #[arg(long, env = "WEFT_IDENTITY_RATE_BURST", default_value_t = 10)]
    pub identity_rate_burst: u32,

    /// Certificates per second one identity may get once its burst is spent (token bucket refill).
    #[arg(long, env = "WEFT_IDENTITY_RATE_PER_SECOND", default_value_t = 1.0)]
    pub identity_rate_per_second: f64,

    /// How often every issuer Secret is re-read whatever the watches say, so a missed watch event
    /// cannot leave the service on an old issuer (linkerd2#15109).
    #[arg(long, env = "WEFT_IDENTITY_ISSUER_RESYNC", default_value = "30s", value_parser = parse_duration)]
    pub identity_issuer_resync: Duration,
}

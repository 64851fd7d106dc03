//! weft-proxy: the data plane of weft. Per-request, latency-aware balancing of HTTP/1.1, HTTP/2
//! and gRPC; opaque TCP forwarding; golden metrics; no Kubernetes dependency.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod args;
pub mod body;
pub mod config;
pub mod config_watch;
pub mod detect;
pub mod endpoint;
pub mod forward;
pub mod h2_forward;
pub mod h2_pipe;
pub mod identity;
pub mod io;
pub mod lifecycle;
pub mod load;
pub mod metrics;
pub mod ports;
pub mod router;
pub mod server;
pub mod tcp;
pub mod tls;

pub use app::run;
pub use args::Args;

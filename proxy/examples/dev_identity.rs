//! A stand-alone identity service for benchmarks and demos without Kubernetes: it speaks weft's
//! identity protocol (TLS 1.3, HTTP/2, `POST /v1/certify`) and signs proxies' CSRs with a test
//! anchor and issuer made at start. It accepts ANY token: never run it in a real mesh. Proxies keep
//! their keys in memory exactly as with the operator; only the trust bundle is written out.
//!
//! ```text
//! cargo build --release -p weft-proxy --example dev_identity
//! target/release/examples/dev_identity --addr 127.0.0.1:8130 --bundle-out /tmp/bundle.pem \
//!     [--trust-domain cluster.local] [--leaf-lifetime 86400]
//! ```
//! Prints `identity service listening addr=<ip:port>` once serving; runs until killed.

#![forbid(unsafe_code)]

#[path = "../tests/support/identity_service.rs"]
mod identity_service;
#[path = "../tests/support/pki.rs"]
mod pki;

use std::sync::Arc;
use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage: dev_identity --bundle-out <file> [--addr 127.0.0.1:0] [--trust-domain cluster.local] [--leaf-lifetime <seconds>]"
    );
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut addr = "127.0.0.1:0".to_string();
    let mut trust_domain = "cluster.local".to_string();
    let mut bundle_out = None;
    let mut lifetime = Duration::from_secs(86400);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--addr" => addr = value,
            "--trust-domain" => trust_domain = value,
            "--bundle-out" => bundle_out = Some(value),
            "--leaf-lifetime" => match value.parse() {
                Ok(seconds) => lifetime = Duration::from_secs(seconds),
                Err(_) => usage(),
            },
            _ => usage(),
        }
    }
    let Some(bundle_out) = bundle_out else {
        usage()
    };
    let anchor = pki::TestCa::anchor("weft dev anchor");
    let issuer = Arc::new(anchor.issuer("weft dev issuer"));
    if let Err(error) = std::fs::write(&bundle_out, anchor.pem()) {
        eprintln!("dev_identity: cannot write {bundle_out}: {error}");
        std::process::exit(1);
    }
    let service =
        identity_service::IdentityService::start_on(&addr, issuer, &trust_domain, lifetime).await;
    println!("identity service listening addr={}", service.addr);
    let _ = tokio::signal::ctrl_c().await;
}

//! Harness for weft's end-to-end tests: a real kube-apiserver + etcd per test (started by
//! `e2e/envtest.sh`), the operator and proxies as their real binaries in separate processes,
//! and waiting on conditions with deadlines (never sleeps standing in for readiness).
#![forbid(unsafe_code)]

pub mod cluster;
pub mod identity;
pub mod identity_client;
pub mod mesh;
pub mod paths;
pub mod pki;
pub mod process;
pub mod wait;

pub use cluster::Cluster;
pub use process::Process;
pub use wait::{eventually, poll_until};

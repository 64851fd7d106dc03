//! One module per resource kind. Each exposes `pub async fn run(ctx: Context)`, which runs its
//! kube-runtime `Controller` until the process shuts down; `main` starts them only while this
//! replica holds the leader Lease.

pub mod identity;
pub mod mesh_policy;
pub mod outcome;
pub mod report;
pub mod traffic_split;
pub mod triggers;

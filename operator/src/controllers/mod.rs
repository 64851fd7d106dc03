//! One module per resource kind. Each exposes `pub async fn run(ctx: Context)`, which runs its
//! kube-runtime `Controller` until the process shuts down; `main` starts them only while this
//! replica holds the leader Lease.

pub mod identity;
pub mod mesh_policy;
pub mod outcome;
pub mod report;
pub mod traffic_split;
pub mod triggers;

use kube::ResourceExt;
use std::cmp::Ordering;

/// Which of two policies (or splits) competing for one target is senior: older first, the name
/// breaking ties (creation times have one-second precision). An object without a creation time
/// (not yet stored) counts as the newest.
pub fn seniority<K: ResourceExt>(a: &K, b: &K) -> Ordering {
    let created = |o: &K| o.meta().creation_timestamp.as_ref().map(|t| t.0);
    match (created(a), created(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.name_any().cmp(&b.name_any()))
}

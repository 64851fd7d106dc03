//! The YAML in crds/ applies to a real API server, establishes all three CRDs, and makes
//! `kubectl get` and `kubectl explain` useful.

use std::time::Duration;
use weft_e2e::{Cluster, poll_until};

#[tokio::test]
async fn crds_establish_and_kubectl_reads_them() {
    let cluster = Cluster::with_crds("crds").await;

    let (ok, out, err) = cluster.kubectl(&["get", "identities,meshpolicies,trafficsplits", "-A"]);
    assert!(ok, "kubectl get failed: {err}");
    assert!(
        out.is_empty() || out.contains("No resources found") || !err.contains("error"),
        "unexpected kubectl output: {out} {err}"
    );

    // short names and the `weft` category resolve
    let (ok, _, err) = cluster.kubectl(&["get", "weft", "-A"]);
    assert!(ok, "kubectl get weft (category) failed: {err}");

    // `kubectl explain` shows the documented issuer fields (doc comments of the Rust types)
    // (the API server publishes a new CRD's OpenAPI a moment after it is Established)
    let out = poll_until(
        "kubectl explain identity.spec.issuer",
        Duration::from_secs(30),
        || async {
            match cluster.kubectl(&["explain", "identity.spec.issuer"]) {
                (true, out, _) => Ok(out),
                (false, _, err) => Err(err),
            }
        },
    )
    .await;
    for field in ["duration", "renewBefore", "keyAlgorithm"] {
        assert!(out.contains(field), "explain lacks {field}:\n{out}");
    }
    assert!(
        out.contains("DESCRIPTION") && out.lines().filter(|l| l.trim().len() > 40).count() >= 3,
        "explain shows no documentation:\n{out}"
    );
}

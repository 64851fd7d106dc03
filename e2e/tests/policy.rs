//! MeshPolicy and TrafficSplit against a real kube-apiserver, the operator as its real binary:
//! the conditions and status a user reads with `kubectl get`.

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
    discovery::ApiResource,
};
use serde::de::DeserializeOwned;
use std::time::Duration;
use weft_crds::{MeshPolicy, TrafficSplit, condition};
use weft_e2e::{Cluster, poll_until};

const NS: &str = "shop";

async fn create<K>(client: &Client, object: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).expect("object");
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {:?}: {e}", object.meta().name));
}

fn service(name: &str, selector: serde_json::Value, port: i32) -> serde_json::Value {
    serde_json::json!({
        "metadata": { "name": name, "namespace": NS },
        "spec": { "selector": selector, "ports": [{ "name": "http", "port": port }] }
    })
}

fn pod(name: &str, labels: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "metadata": { "name": name, "namespace": NS, "labels": labels },
        "spec": { "containers": [{ "name": "app", "image": "example.invalid/app" }] }
    })
}

fn endpoints(name: &str, ip: &str, port: i32) -> serde_json::Value {
    serde_json::json!({
        "metadata": { "name": name, "namespace": NS },
        "subsets": [{ "addresses": [{ "ip": ip }], "ports": [{ "name": "http", "port": port }] }]
    })
}

/// Waits until `get` shows the condition `type_` with `status` and `reason`; returns the object.
async fn wait_for<K, F, Fut>(what: &str, type_: &str, status: &str, reason: &str, get: F) -> K
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(K, Vec<condition::Condition>), String>>,
{
    poll_until(
        &format!("{what}: {type_}={status} ({reason})"),
        Duration::from_secs(30),
        || async {
            let (object, conditions) = get().await?;
            match condition::find(&conditions, type_) {
                Some(c) if format!("{:?}", c.status) == status && c.reason == reason => Ok(object),
                other => Err(format!("{type_} is {other:?}")),
            }
        },
    )
    .await
}

async fn policy(
    client: &Client,
    name: &str,
) -> Result<(MeshPolicy, Vec<condition::Condition>), String> {
    let p = Api::<MeshPolicy>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .map_err(|e| e.to_string())?;
    let conditions = p
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    Ok((p, conditions))
}

async fn split(
    client: &Client,
    name: &str,
) -> Result<(TrafficSplit, Vec<condition::Condition>), String> {
    let s = Api::<TrafficSplit>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .map_err(|e| e.to_string())?;
    let conditions = s
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    Ok((s, conditions))
}

#[tokio::test]
async fn mesh_policy_reports_its_target_and_matches() {
    let cluster = Cluster::with_crds("mesh-policy").await;
    let client = &cluster.client;
    cluster.create_namespace(NS).await;
    let mut operator = cluster.spawn_operator("op-a", &[]);

    // the sample applies as written
    let sample = weft_e2e::paths::repo_root().join("config/samples/meshpolicy.yaml");
    let (ok, _, err) = cluster.kubectl(&["apply", "-n", NS, "-f", &sample.display().to_string()]);
    assert!(ok, "the MeshPolicy sample does not apply: {err}");
    // its Service does not exist yet
    wait_for("web", "Accepted", "False", "TargetNotFound", || {
        policy(client, "web")
    })
    .await;

    create::<Service>(
        client,
        service("web", serde_json::json!({ "app": "web" }), 8080),
    )
    .await;
    create::<Pod>(client, pod("web-1", serde_json::json!({ "app": "web" }))).await;
    create::<Pod>(client, pod("web-2", serde_json::json!({ "app": "web" }))).await;
    create::<Pod>(client, pod("db-1", serde_json::json!({ "app": "db" }))).await;
    let accepted = poll_until(
        "web accepted with its two pods",
        Duration::from_secs(30),
        || async {
            let (p, conditions) = policy(client, "web").await?;
            let status = p.status.clone().unwrap_or_default();
            match condition::find(&conditions, "Accepted") {
                Some(c) if c.reason == "Accepted" && status.matched_pods == 2 => Ok(p),
                other => Err(format!(
                    "Accepted {other:?}, matched {}",
                    status.matched_pods
                )),
            }
        },
    )
    .await;
    let status = accepted.status.expect("status");
    assert_eq!(status.observed_generation, accepted.metadata.generation);
    assert_eq!(status.target.as_deref(), Some("Service/web"));

    // both a selector and a targetRef: refused by the schema's oneOf
    let both = Api::<DynamicObject>::namespaced_with(client.clone(), NS, &ApiResource::erase::<MeshPolicy>(&()))
        .create(&PostParams::default(), &serde_json::from_value(serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "MeshPolicy",
            "metadata": { "name": "both", "namespace": NS },
            "spec": { "selector": { "matchLabels": { "app": "db" } }, "targetRef": { "kind": "Service", "name": "web" } }
        })).expect("object"))
        .await;
    assert!(
        matches!(both, Err(kube::Error::Api(ref s)) if s.code == 422),
        "{both:?}"
    );

    // Strict mTLS with unauthenticated clients allowed is a contradiction
    create::<MeshPolicy>(
        client,
        serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "MeshPolicy",
            "metadata": { "name": "contradiction", "namespace": NS },
            "spec": { "selector": { "matchLabels": { "app": "db" } }, "mtls": { "mode": "Strict" },
                      "authorization": { "allUnauthenticated": true } }
        }),
    )
    .await;
    wait_for(
        "contradiction",
        "Accepted",
        "False",
        "InvalidAuthorization",
        || policy(client, "contradiction"),
    )
    .await;

    // nonsense is refused by the schema before the operator sees it
    let bad = Api::<DynamicObject>::namespaced_with(client.clone(), NS, &ApiResource::erase::<MeshPolicy>(&()))
        .create(&PostParams::default(), &serde_json::from_value(serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "MeshPolicy",
            "metadata": { "name": "nonsense", "namespace": NS },
            "spec": { "selector": {}, "mtls": { "mode": "Sometimes" }, "circuitBreaking": { "consecutiveFailures": -3 } }
        })).expect("object"))
        .await;
    assert!(
        matches!(bad, Err(kube::Error::Api(ref s)) if s.code == 422),
        "{bad:?}"
    );

    let (ok, out, err) = cluster.kubectl(&["get", "meshpolicies", "-n", NS]);
    assert!(ok, "{err}");
    assert!(out.contains("ACCEPTED") && out.contains("web"), "{out}");
    assert!(
        operator.try_wait().is_none(),
        "operator exited:\n{}",
        operator.log()
    );
}

#[tokio::test]
async fn traffic_split_resolves_backends_and_reports_effective_weights() {
    let cluster = Cluster::with_crds("traffic-split").await;
    let client = &cluster.client;
    cluster.create_namespace(NS).await;
    let mut operator = cluster.spawn_operator("op-a", &[]);

    create::<TrafficSplit>(client, serde_json::json!({
        "apiVersion": "weft.dev/v1alpha1", "kind": "TrafficSplit",
        "metadata": { "name": "web-canary", "namespace": NS },
        "spec": { "service": "web", "backends": [ { "service": "web-v1", "weight": 90 }, { "service": "web-v2", "weight": 10 } ] }
    }))
    .await;
    wait_for(
        "web-canary",
        "ResolvedRefs",
        "False",
        "ApexNotFound",
        || split(client, "web-canary"),
    )
    .await;

    create::<Service>(
        client,
        service("web", serde_json::json!({ "app": "web" }), 8080),
    )
    .await;
    create::<Service>(
        client,
        service(
            "web-v1",
            serde_json::json!({ "app": "web", "v": "1" }),
            8080,
        ),
    )
    .await;
    create::<Endpoints>(client, endpoints("web-v1", "10.1.0.1", 8080)).await;
    // web-v2 does not exist: its share goes to web-v1
    let resolved = poll_until("web-v1 takes all", Duration::from_secs(30), || async {
        let (s, conditions) = split(client, "web-canary").await?;
        let v1 = s
            .status
            .as_ref()
            .and_then(|st| st.backends.iter().find(|b| b.service == "web-v1").cloned());
        match (condition::find(&conditions, "ResolvedRefs"), v1) {
            (Some(c), Some(b)) if c.reason == "BackendNotFound" && b.percent == "100%" => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let status = resolved.status.expect("status");
    let v1 = status
        .backends
        .iter()
        .find(|b| b.service == "web-v1")
        .expect("web-v1 status");
    assert_eq!(v1.percent, "100%", "{status:?}");

    create::<Service>(
        client,
        service(
            "web-v2",
            serde_json::json!({ "app": "web", "v": "2" }),
            8080,
        ),
    )
    .await;
    create::<Endpoints>(client, endpoints("web-v2", "10.1.0.2", 8080)).await;
    let resolved = wait_for("web-canary", "ResolvedRefs", "True", "ResolvedRefs", || {
        split(client, "web-canary")
    })
    .await;
    let status = resolved.status.expect("status");
    let percents: Vec<_> = status
        .backends
        .iter()
        .map(|b| (b.service.clone(), b.percent.clone()))
        .collect();
    assert_eq!(
        percents,
        vec![
            ("web-v1".into(), "90%".into()),
            ("web-v2".into(), "10%".into())
        ]
    );
    assert!(
        condition::find(&status.conditions, "Accepted").is_some_and(|c| c.reason == "Accepted")
    );

    // a backend on a port the apex lacks gets nothing (SMI)
    create::<Service>(
        client,
        service(
            "web-v3",
            serde_json::json!({ "app": "web", "v": "3" }),
            9999,
        ),
    )
    .await;
    create::<Endpoints>(client, endpoints("web-v3", "10.1.0.3", 9999)).await;
    create::<TrafficSplit>(
        client,
        serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "TrafficSplit",
            "metadata": { "name": "wrong-port", "namespace": NS },
            "spec": { "service": "web", "backends": [ { "service": "web-v3", "weight": 1 } ] }
        }),
    )
    .await;
    wait_for(
        "wrong-port",
        "ResolvedRefs",
        "False",
        "PortMismatch",
        || split(client, "wrong-port"),
    )
    .await;

    // all weights zero is not a split
    create::<TrafficSplit>(
        client,
        serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "TrafficSplit",
            "metadata": { "name": "zero", "namespace": NS },
            "spec": { "service": "web-v1", "backends": [ { "service": "web-v2", "weight": 0 } ] }
        }),
    )
    .await;
    wait_for("zero", "Accepted", "False", "AllWeightsZero", || {
        split(client, "zero")
    })
    .await;

    let (ok, out, err) = cluster.kubectl(&["get", "ts", "-n", NS]);
    assert!(ok, "{err}");
    assert!(out.contains("web-canary"), "{out}");
    assert!(
        operator.try_wait().is_none(),
        "operator exited:\n{}",
        operator.log()
    );
}

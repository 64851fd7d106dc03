//! Which pods a policy's target picks, and the workloads they belong to.

use super::{selector, validate::Target};
use k8s_openapi::api::core::v1::{Pod, Service};
use std::collections::{BTreeMap, BTreeSet};
use weft_crds::mesh_policy::WorkloadSelector;

/// How many workload names `status.workloads` lists.
pub const LISTED_WORKLOADS: usize = 10;

/// The pods a target picks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matches {
    pub pods: usize,
    /// `<Kind>/<name>` of each workload, sorted.
    pub workloads: BTreeSet<String>,
}

/// Why a target picks no pods at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// The `targetRef` Service does not exist.
    ServiceNotFound(String),
}

/// The running pods among `pods` (those of the policy's namespace) that `target` picks. `service` looks a
/// Service of that namespace up by name.
pub fn matched_pods<'a, P, S>(target: &Target, pods: P, service: S) -> Result<Matches, Unresolved>
where
    P: IntoIterator<Item = &'a Pod>,
    S: FnOnce(&str) -> Option<&'a Service>,
{
    let empty = BTreeMap::new();
    let picker = match target {
        Target::Selector(sel) => Picker::Selector(sel),
        Target::Service(name) => {
            let svc = service(name).ok_or_else(|| Unresolved::ServiceNotFound(name.clone()))?;
            Picker::ServiceSelector(svc.spec.as_ref().and_then(|s| s.selector.as_ref()))
        }
    };
    let mut matches = Matches::default();
    for pod in pods {
        if !is_running(pod) {
            continue;
        }
        if picker.picks(pod.metadata.labels.as_ref().unwrap_or(&empty)) {
            matches.pods += 1;
            matches.workloads.insert(workload_of(pod));
        }
    }
    Ok(matches)
}

/// How a target picks pods by their labels.
enum Picker<'a> {
    Selector(&'a WorkloadSelector),
    ServiceSelector(Option<&'a BTreeMap<String, String>>),
}

impl Picker<'_> {
    fn picks(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Picker::Selector(sel) => selector::matches(sel, labels),
            // A Service without a selector has its endpoints managed by hand: it picks no pods.
            Picker::ServiceSelector(None) => false,
            Picker::ServiceSelector(Some(wanted)) => {
                !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
            }
        }
    }
}

/// A pod that serves or will serve traffic: not being deleted and not finished.
pub fn is_running(pod: &Pod) -> bool {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
    pod.metadata.deletion_timestamp.is_none() && !finished
}

/// The workload a pod belongs to, as `<Kind>/<name>`: its controller (a ReplicaSet made by a Deployment
/// counts as the Deployment), or the pod itself when nothing controls it.
pub fn workload_of(pod: &Pod) -> String {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let Some(owner) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return format!("Pod/{pod_name}");
    };
    if owner.kind == "ReplicaSet" {
        // A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`.
        let hash = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"));
        if let Some(deployment) = hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}")))
            && !deployment.is_empty()
        {
            return format!("Deployment/{deployment}");
        }
    }
    format!("{}/{}", owner.kind, owner.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::core::v1::{PodStatus, ServiceSpec},
        apimachinery::pkg::apis::meta::v1::{OwnerReference, Time},
    };
    use kube::api::ObjectMeta;

    pub(crate) fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn owned(mut pod: Pod, kind: &str, name: &str) -> Pod {
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        pod
    }

    fn service(selector: &[(&str, &str)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn app_selector(app: &str) -> Target {
        Target::Selector(WorkloadSelector {
            match_labels: [("app".to_string(), app.to_string())].into(),
            match_expressions: vec![],
        })
    }

    #[test]
    fn names_workloads_by_their_controller() {
        let deployment_pod = owned(
            pod("web-7d9f8-abcde", &[("pod-template-hash", "7d9f8")]),
            "ReplicaSet",
            "web-7d9f8",
        );
        assert_eq!(workload_of(&deployment_pod), "Deployment/web");
        let bare_rs_pod = owned(pod("x-1", &[]), "ReplicaSet", "x");
        assert_eq!(workload_of(&bare_rs_pod), "ReplicaSet/x");
        let sts_pod = owned(pod("db-0", &[]), "StatefulSet", "db");
        assert_eq!(workload_of(&sts_pod), "StatefulSet/db");
        assert_eq!(workload_of(&pod("lonely", &[])), "Pod/lonely");
    }

    #[test]
    fn counts_running_pods_the_selector_picks() {
        let mut finished = pod("web-done", &[("app", "web")]);
        finished.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let mut terminating = pod("web-going", &[("app", "web")]);
        terminating.metadata.deletion_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let pods = [
            owned(
                pod("web-1", &[("app", "web"), ("pod-template-hash", "h")]),
                "ReplicaSet",
                "web-h",
            ),
            owned(
                pod("web-2", &[("app", "web"), ("pod-template-hash", "h")]),
                "ReplicaSet",
                "web-h",
            ),
            pod("web-canary", &[("app", "web")]),
            pod("api-1", &[("app", "api")]),
            finished,
            terminating,
        ];
        let matches =
            matched_pods(&app_selector("web"), &pods, |_| None).expect("selector needs no lookup");
        assert_eq!(matches.pods, 3);
        assert_eq!(
            matches.workloads.into_iter().collect::<Vec<_>>(),
            vec!["Deployment/web".to_string(), "Pod/web-canary".to_string()]
        );
    }

    #[test]
    fn service_target_uses_the_service_selector() {
        let pods = [
            pod("web-1", &[("app", "web")]),
            pod("api-1", &[("app", "api")]),
        ];
        let svc = service(&[("app", "web")]);
        let matches = matched_pods(&Target::Service("web".into()), &pods, |name| {
            (name == "web").then_some(&svc)
        })
        .expect("found");
        assert_eq!(matches.pods, 1);
        let missing = matched_pods(&Target::Service("gone".into()), &pods, |_| None);
        assert_eq!(missing, Err(Unresolved::ServiceNotFound("gone".into())));
        let no_selector = service(&[]);
        let matches = matched_pods(&Target::Service("manual".into()), &pods, |_| {
            Some(&no_selector)
        })
        .expect("found");
        assert_eq!(matches.pods, 0);
    }
}

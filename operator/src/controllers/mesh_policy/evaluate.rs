//! The whole judgement on one MeshPolicy, from what the operator's caches hold: is it valid, does its
//! target exist, does an older policy already have that target, and which pods does it pick. No I/O.

use super::{
    matching::{self, LISTED_WORKLOADS, Matches, Unresolved},
    validate::{self, Reason},
};
use crate::controllers::seniority;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use std::cmp::Ordering;
use weft_crds::mesh_policy::{MeshPolicy, MeshPolicyStatus};

/// The verdict on one policy, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub accepted: bool,
    pub reason: Reason,
    pub message: String,
    /// `status.target`; `None` when no target could be read from the spec.
    pub target: Option<String>,
    pub matches: Matches,
}

impl Evaluation {
    /// The status fields this evaluation sets (conditions are added by the caller, which knows the time).
    pub fn status_fields(&self, observed_generation: Option<i64>) -> MeshPolicyStatus {
        MeshPolicyStatus {
            observed_generation,
            conditions: Vec::new(),
            target: self.target.clone(),
            matched_pods: saturating_i32(self.matches.pods),
            matched_workloads: saturating_i32(self.matches.workloads.len()),
            workloads: self
                .matches
                .workloads
                .iter()
                .take(LISTED_WORKLOADS)
                .cloned()
                .collect(),
        }
    }
}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Judges `policy`. `siblings` are the other policies of its namespace (it may be among them; it is
/// skipped), `pods` the pods of its namespace, `service` looks a Service of its namespace up by name.
pub fn evaluate<'a>(
    policy: &MeshPolicy,
    siblings: impl IntoIterator<Item = &'a MeshPolicy>,
    pods: impl IntoIterator<Item = &'a Pod>,
    service: impl FnOnce(&str) -> Option<&'a Service>,
) -> Evaluation {
    let namespace = policy.namespace().unwrap_or_default();
    let compiled = match validate::validate(&namespace, &policy.spec) {
        Ok(compiled) => compiled,
        Err(problems) => {
            // The counts still help when only a later field is wrong, so resolve the target if it was readable.
            let target = readable_target(policy);
            let matches = target
                .as_ref()
                .and_then(|t| matching::matched_pods(t, pods, service).ok())
                .unwrap_or_default();
            let first = problems
                .first()
                .map(|p| p.reason)
                .unwrap_or(Reason::InvalidTarget);
            return Evaluation {
                accepted: false,
                reason: first,
                message: join_messages(problems.iter().map(|p| p.message.as_str())),
                target: target.map(|t| t.describe()),
                matches,
            };
        }
    };
    let target_text = Some(compiled.target.describe());
    let matches = match matching::matched_pods(&compiled.target, pods, service) {
        Ok(matches) => matches,
        Err(Unresolved::ServiceNotFound(name)) => {
            return Evaluation {
                accepted: false,
                reason: Reason::TargetNotFound,
                message: format!("Service {namespace}/{name} does not exist"),
                target: target_text,
                matches: Matches::default(),
            };
        }
    };
    if let Some(winner) = older_policy_with_same_target(policy, &compiled.target, siblings) {
        return Evaluation {
            accepted: false,
            reason: Reason::Conflict,
            message: format!(
                "MeshPolicy {} is older and has the same target ({}); only the oldest policy of a target takes \
                 effect",
                winner.name_any(),
                compiled.target.describe()
            ),
            target: target_text,
            matches,
        };
    }
    let message = match (&compiled.authorization, matches.pods) {
        (Some(a), _)
            if a.identities.is_empty()
                && a.service_accounts.is_empty()
                && !a.all_unauthenticated =>
        {
            "accepted; its authorization lists no client, so every request to these pods is denied"
                .to_string()
        }
        (_, 0) => "accepted; no running pod matches its target yet".to_string(),
        (_, pods) => format!("accepted; applies to {pods} pod(s)"),
    };
    Evaluation {
        accepted: true,
        reason: Reason::Accepted,
        message,
        target: target_text,
        matches,
    }
}

/// The target of a policy whose spec has problems, when the target part itself is fine.
fn readable_target(policy: &MeshPolicy) -> Option<validate::Target> {
    let mut target_only = policy.spec.clone();
    target_only.authorization = None;
    target_only.retries = None;
    target_only.timeouts = None;
    target_only.circuit_breaking = None;
    target_only.balancing = None;
    let namespace = policy.namespace().unwrap_or_default();
    validate::validate(&namespace, &target_only)
        .ok()
        .map(|c| c.target)
}

/// The oldest valid sibling with the same target, when it is older than `policy` (creation time, then name).
fn older_policy_with_same_target<'a>(
    policy: &MeshPolicy,
    target: &validate::Target,
    siblings: impl IntoIterator<Item = &'a MeshPolicy>,
) -> Option<&'a MeshPolicy> {
    let key = target.key();
    let namespace = policy.namespace().unwrap_or_default();
    siblings
        .into_iter()
        .filter(|s| s.name_any() != policy.name_any() && s.namespace() == policy.namespace())
        .filter(|s| {
            validate::validate(&namespace, &s.spec)
                .map(|c| c.target.key() == key)
                .unwrap_or(false)
        })
        .filter(|s| seniority(*s, policy) == Ordering::Less)
        .min_by(|a, b| seniority(*a, *b))
}

/// Messages joined into one condition message, kept under the API's 32 KiB limit.
pub fn join_messages<'a>(messages: impl Iterator<Item = &'a str>) -> String {
    let mut joined = String::new();
    for message in messages {
        if !joined.is_empty() {
            joined.push_str("; ");
        }
        joined.push_str(message);
    }
    truncate(joined, 4096)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::core::v1::ServiceSpec, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
    };
    use kube::api::ObjectMeta;
    use weft_crds::mesh_policy::{
        Authorization, MeshPolicySpec, MtlsSettings, ServiceTargetRef, TargetKind, Timeouts,
        WorkloadSelector,
    };

    fn policy(name: &str, created_secs: i64, spec: MeshPolicySpec) -> MeshPolicy {
        let mut p = MeshPolicy::new(name, spec);
        p.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            creation_timestamp: Timestamp::from_second(created_secs).ok().map(Time),
            ..Default::default()
        };
        p
    }

    fn spec_for_service(name: &str) -> MeshPolicySpec {
        MeshPolicySpec {
            selector: None,
            target_ref: Some(ServiceTargetRef {
                kind: TargetKind::Service,
                name: name.into(),
            }),
            mtls: MtlsSettings::default(),
            authorization: None,
            retries: None,
            timeouts: None,
            circuit_breaking: None,
            balancing: None,
        }
    }

    fn spec_for_app(app: &str) -> MeshPolicySpec {
        MeshPolicySpec {
            selector: Some(WorkloadSelector {
                match_labels: [("app".to_string(), app.to_string())].into(),
                match_expressions: vec![],
            }),
            target_ref: None,
            ..spec_for_service("unused")
        }
    }

    fn pod(name: &str, app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn web_service() -> Service {
        Service {
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn accepted_with_counts() {
        let pods = [
            pod("web-1", "web"),
            pod("web-2", "web"),
            pod("api-1", "api"),
        ];
        let svc = web_service();
        let p = policy("web", 100, spec_for_service("web"));
        let eval = evaluate(&p, [], &pods, |_| Some(&svc));
        assert!(eval.accepted);
        assert_eq!(eval.reason, Reason::Accepted);
        assert_eq!(eval.target.as_deref(), Some("Service/web"));
        assert_eq!(eval.matches.pods, 2);
        let status = eval.status_fields(Some(3));
        assert_eq!(status.matched_pods, 2);
        assert_eq!(status.matched_workloads, 2);
        assert_eq!(status.workloads, vec!["Pod/web-1", "Pod/web-2"]);
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn target_not_found() {
        let p = policy("web", 100, spec_for_service("web"));
        let eval = evaluate(&p, [], [], |_| None);
        assert!(!eval.accepted);
        assert_eq!(eval.reason, Reason::TargetNotFound);
        assert!(eval.message.contains("shop/web"));
    }

    #[test]
    fn the_older_policy_of_a_target_wins() {
        let svc = web_service();
        let old = policy("old", 100, spec_for_service("web"));
        let new = policy("new", 200, spec_for_service("web"));
        let all = [old.clone(), new.clone()];
        let eval_new = evaluate(&new, &all, [], |_| Some(&svc));
        assert_eq!(eval_new.reason, Reason::Conflict);
        assert!(eval_new.message.contains("old"));
        let eval_old = evaluate(&old, &all, [], |_| Some(&svc));
        assert_eq!(eval_old.reason, Reason::Accepted);
        // same second: the name decides
        let twin = policy("a-twin", 200, spec_for_service("web"));
        let eval_new = evaluate(&new, [&twin], [], |_| Some(&svc));
        assert_eq!(eval_new.reason, Reason::Conflict);
    }

    #[test]
    fn an_invalid_older_policy_does_not_block_a_valid_one() {
        let svc = web_service();
        let mut broken_spec = spec_for_service("web");
        broken_spec.timeouts = Some(Timeouts {
            request: Some("0s".into()),
            ..Default::default()
        });
        let old = policy("old", 100, broken_spec);
        let new = policy("new", 200, spec_for_service("web"));
        assert_eq!(
            evaluate(&new, [&old], [], |_| Some(&svc)).reason,
            Reason::Accepted
        );
        let eval_old = evaluate(&old, [&new], [], |_| Some(&svc));
        assert_eq!(eval_old.reason, Reason::InvalidDuration);
    }

    #[test]
    fn different_targets_do_not_conflict() {
        let pods = [pod("web-1", "web"), pod("api-1", "api")];
        let web = policy("web", 100, spec_for_app("web"));
        let api = policy("api", 50, spec_for_app("api"));
        let eval = evaluate(&web, [&api, &web], &pods, |_| None);
        assert_eq!(eval.reason, Reason::Accepted);
        assert_eq!(eval.target.as_deref(), Some("app=web"));
        assert_eq!(eval.matches.pods, 1);
    }

    #[test]
    fn invalid_spec_still_counts_a_readable_target() {
        let pods = [pod("web-1", "web")];
        let mut spec = spec_for_app("web");
        spec.timeouts = Some(Timeouts {
            per_try: Some("2s".into()),
            request: Some("1s".into()),
            idle: None,
        });
        let p = policy("web", 100, spec);
        let eval = evaluate(&p, [], &pods, |_| None);
        assert_eq!(eval.reason, Reason::InvalidTimeouts);
        assert_eq!(eval.matches.pods, 1);
        assert_eq!(eval.target.as_deref(), Some("app=web"));
    }

    #[test]
    fn deny_all_authorization_is_accepted_and_said() {
        let mut spec = spec_for_app("web");
        spec.authorization = Some(Authorization::default());
        let p = policy("web", 100, spec);
        let eval = evaluate(&p, [], [], |_| None);
        assert!(eval.accepted);
        assert!(eval.message.contains("denied"), "{}", eval.message);
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(5000);
        let joined = join_messages([long.as_str()].into_iter());
        assert!(joined.len() <= 4096 + 3);
        assert!(joined.ends_with("..."));
    }
}

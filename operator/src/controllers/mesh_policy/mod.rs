//! The MeshPolicy controller: judges each policy ([`evaluate`]) from in-memory caches of policies, pods
//! and Services, and writes the verdict as the `Accepted` condition, the target and the matched pods and
//! workloads, with an Event when the verdict changes. Its effect on traffic comes with the discovery stream.
//!
//! What triggers a reconcile: a policy changes (the policy and every other policy of its namespace, since
//! a change can start or end a conflict), a pod changes (every policy of its namespace: labels decide
//! matches), a Service changes (the policies whose `targetRef` names it).
//!
//! - [`validate`]: the spec's checks and its compiled form;
//! - [`selector`]: label selectors (syntax, matching, rendering);
//! - [`matching`]: which pods and workloads a target picks;
//! - [`evaluate`]: the whole verdict, conflicts included;

pub mod evaluate;
pub mod matching;
pub mod selector;
pub mod validate;

use crate::{
    context::Context,
    controllers::{outcome, report, triggers},
    status,
};
use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use kube::{
    Api, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        reflector::{self, ObjectRef, Store},
    },
};
use std::{sync::Arc, time::Duration};
use tracing::{Instrument, debug, info, info_span, warn};
use weft_crds::{Condition, ConditionStatus, MeshPolicy, mesh_policy::MeshPolicyStatus};

/// How long a reconcile waits for the pod and Service caches to fill after start before giving up.
const CACHE_WAIT: Duration = Duration::from_secs(30);

/// What every reconcile reads.
struct State {
    ctx: Context,
    policies: Store<MeshPolicy>,
    pods: Store<Pod>,
    services: Store<Service>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("the pod and Service caches were not filled within {0:?}")]
    CachesNotReady(Duration),
    #[error("could not write the status: {0}")]
    WriteStatus(#[source] kube::Error),
}

/// Runs the MeshPolicy controller until the process stops (or the future is dropped on losing the lease).
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let (policies, policy_writer) = reflector::store::<MeshPolicy>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (services, service_writer) = reflector::store::<Service>();

    let policy_triggers = triggers::with_namespace_siblings(
        Api::<MeshPolicy>::all(client.clone()),
        policy_writer,
        policies.clone(),
    );

    let pod_events = triggers::cached(
        Api::<Pod>::all(client.clone()),
        pod_writer,
        keep_pod_identity_only,
    );
    let service_events = triggers::cached(
        Api::<Service>::all(client),
        service_writer,
        |service: &mut Service| {
            triggers::drop_unread_metadata(&mut service.metadata);
            service.status = None;
        },
    );

    let by_namespace = policies.clone();
    let pod_to_policies = move |pod: Pod| {
        let namespace = pod.namespace();
        by_namespace
            .state()
            .iter()
            .filter(|p| p.namespace() == namespace)
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect::<Vec<_>>()
    };
    let by_target = policies.clone();
    let service_to_policies = move |service: Service| {
        let (namespace, name) = (service.namespace(), service.name_any());
        by_target
            .state()
            .iter()
            .filter(|p| p.namespace() == namespace)
            .filter(|p| p.spec.target_ref.as_ref().is_some_and(|t| t.name == name))
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect::<Vec<_>>()
    };

    let state = Arc::new(State {
        ctx,
        policies: policies.clone(),
        pods,
        services,
    });
    info!("MeshPolicy controller starting");
    let outcomes = Controller::for_stream(policy_triggers, policies)
        .watches_stream(pod_events, pod_to_policies)
        .watches_stream(service_events, service_to_policies)
        .run(reconcile, error_policy, state);
    outcome::log_until_stopped("mesh_policy", outcomes).await;
    info!("MeshPolicy controller stopped");
}

/// Pods are cached for their labels, owners, deletion and phase only; the rest would cost memory for
/// nothing in a cluster of many pods.
fn keep_pod_identity_only(pod: &mut Pod) {
    pod.spec = None;
    triggers::drop_unread_metadata(&mut pod.metadata);
    let phase = pod.status.as_mut().and_then(|s| s.phase.take());
    pod.status = phase.map(|phase| PodStatus {
        phase: Some(phase),
        ..Default::default()
    });
}

async fn reconcile(policy: Arc<MeshPolicy>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let span =
        info_span!("reconcile", kind = "MeshPolicy", policy = %format!("{namespace}/{name}"));
    state.ctx.metrics.reconciled("mesh_policy");
    reconcile_one(&policy, &state, &namespace, &name)
        .instrument(span)
        .await
}

async fn reconcile_one(
    policy: &MeshPolicy,
    state: &State,
    namespace: &str,
    name: &str,
) -> Result<Action, Error> {
    tokio::time::timeout(CACHE_WAIT, async {
        // Errors mean the writer is gone (the controller is stopping); there is nothing better to wait for.
        let _ = state.pods.wait_until_ready().await;
        let _ = state.services.wait_until_ready().await;
    })
    .await
    .map_err(|_| Error::CachesNotReady(CACHE_WAIT))?;

    let siblings = state.policies.state();
    let pods = state.pods.state();
    let target_service = policy.spec.target_ref.as_ref().and_then(|t| {
        state
            .services
            .get(&ObjectRef::new(&t.name).within(namespace))
    });
    let evaluation = evaluate::evaluate(
        policy,
        siblings
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| p.namespace().as_deref() == Some(namespace)),
        pods.iter()
            .map(AsRef::as_ref)
            .filter(|p| p.namespace().as_deref() == Some(namespace)),
        |wanted| target_service.as_deref().filter(|s| s.name_any() == wanted),
    );

    let generation = policy.metadata.generation;
    let old = policy.status.clone().unwrap_or_default();
    let mut new = MeshPolicyStatus {
        conditions: old.conditions.clone(),
        ..evaluation.status_fields(generation)
    };
    let event = report::update(
        &mut new.conditions,
        Condition::new(
            "Accepted",
            ConditionStatus::from_bool(evaluation.accepted),
            evaluation.reason.as_str(),
            evaluation.message.clone(),
            generation,
            &status::now_rfc3339(),
        ),
        "Validate",
    );
    if new == old {
        debug!("status unchanged");
        return Ok(Action::await_change());
    }
    let api: Api<MeshPolicy> = Api::namespaced(state.ctx.client.clone(), namespace);
    status::apply(&api, name, &new)
        .await
        .map_err(Error::WriteStatus)?;
    if evaluation.accepted {
        info!(
            reason = evaluation.reason.as_str(),
            pods = evaluation.matches.pods,
            "accepted"
        );
    } else {
        warn!(reason = evaluation.reason.as_str(), message = %evaluation.message, "not accepted");
    }
    report::publish(&state.ctx, policy, event.into_iter().collect()).await;
    Ok(Action::await_change())
}

fn error_policy(policy: Arc<MeshPolicy>, error: &Error, state: Arc<State>) -> Action {
    outcome::retry_after_failure(&state.ctx.metrics, "mesh_policy", policy.as_ref(), error)
}

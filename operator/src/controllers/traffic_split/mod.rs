//! The TrafficSplit controller: judges each split from in-memory caches of splits, Services and ready
//! endpoints, and writes the `Accepted` and `ResolvedRefs` conditions and the effective share of each
//! backend, with an Event when a verdict changes. Its effect on traffic comes with the discovery stream.
//!
//! What triggers a reconcile: a split changes (the split and every other split of its namespace, since a
//! change can start or end a conflict), a Service or its endpoints change (the splits of its namespace that
//! name it as apex or backend).
//!
//! - [`accept`]: the `Accepted` verdict (spec checks, one split per apex);
//! - [`resolve`]: the `ResolvedRefs` verdict and the effective weights;
//! - [`endpoints`]: ready endpoints from EndpointSlices or Endpoints, whichever the API server serves.

pub mod accept;
pub mod endpoints;
pub mod resolve;

use crate::{
    context::Context,
    controllers::{outcome, report, triggers},
    status,
};
use endpoints::EndpointsApi;
use k8s_openapi::api::{
    core::v1::{Endpoints, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        reflector::{self, ObjectRef, Store},
    },
};
use resolve::{PortKey, ServiceFacts};
use std::{sync::Arc, time::Duration};
use tracing::{Instrument, debug, info, info_span};
use weft_crds::{Condition, ConditionStatus, TrafficSplit, traffic_split::TrafficSplitStatus};

/// How long a reconcile waits for the Service and endpoint caches to fill after start before giving up.
const CACHE_WAIT: Duration = Duration::from_secs(30);

/// Ready endpoints, from whichever API the server serves.
enum ReadyIndex {
    Slices(Store<EndpointSlice>),
    Endpoints(Store<Endpoints>),
}

impl ReadyIndex {
    fn ready_endpoints(&self, namespace: &str, service: &str) -> usize {
        match self {
            ReadyIndex::Slices(store) => {
                let slices = store.state();
                endpoints::ready_in_slices(
                    slices
                        .iter()
                        .map(AsRef::as_ref)
                        .filter(|s| s.namespace().as_deref() == Some(namespace))
                        .filter(|s| endpoints::service_of_slice(s).as_deref() == Some(service)),
                )
            }
            ReadyIndex::Endpoints(store) => store
                .get(&ObjectRef::new(service).within(namespace))
                .map(|e| endpoints::ready_in_endpoints(&e))
                .unwrap_or(0),
        }
    }

    async fn wait_until_ready(&self) {
        // An error means the writer is gone (the controller is stopping); there is nothing to wait for.
        let _ = match self {
            ReadyIndex::Slices(store) => store.wait_until_ready().await,
            ReadyIndex::Endpoints(store) => store.wait_until_ready().await,
        };
    }
}

/// What every reconcile reads.
struct State {
    ctx: Context,
    splits: Store<TrafficSplit>,
    services: Store<Service>,
    ready: ReadyIndex,
}

impl State {
    fn service_facts(&self, namespace: &str, name: &str) -> Option<ServiceFacts> {
        let service = self.services.get(&ObjectRef::new(name).within(namespace))?;
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| PortKey {
                port: p.port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            })
            .collect();
        Some(ServiceFacts {
            ports,
            ready_endpoints: self.ready.ready_endpoints(namespace, name),
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("the Service and endpoint caches were not filled within {0:?}")]
    CachesNotReady(Duration),
    #[error("could not write the status: {0}")]
    WriteStatus(#[source] kube::Error),
}

/// The splits of `namespace` that name Service `name` as apex or backend.
fn splits_naming(
    store: &Store<TrafficSplit>,
    namespace: Option<String>,
    name: &str,
) -> Vec<ObjectRef<TrafficSplit>> {
    store
        .state()
        .iter()
        .filter(|s| s.namespace() == namespace)
        .filter(|s| s.spec.service == name || s.spec.backends.iter().any(|b| b.service == name))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs the TrafficSplit controller until the process stops (or the future is dropped on losing the lease).
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let endpoints_api = endpoints::detect(&client).await;
    let (splits, split_writer) = reflector::store::<TrafficSplit>();
    let (services, service_writer) = reflector::store::<Service>();

    let split_triggers = triggers::with_namespace_siblings(
        Api::<TrafficSplit>::all(client.clone()),
        split_writer,
        splits.clone(),
    );

    let service_events = triggers::cached(
        Api::<Service>::all(client.clone()),
        service_writer,
        |service: &mut Service| {
            triggers::drop_unread_metadata(&mut service.metadata);
            service.status = None;
        },
    );
    let by_service = splits.clone();
    let mut controller = Controller::for_stream(split_triggers, splits.clone()).watches_stream(
        service_events,
        move |service: Service| {
            splits_naming(&by_service, service.namespace(), &service.name_any())
        },
    );

    let by_endpoints = splits.clone();
    let ready = match endpoints_api {
        EndpointsApi::EndpointSlices => {
            let (store, writer) = reflector::store::<EndpointSlice>();
            let events = triggers::cached(
                Api::<EndpointSlice>::all(client),
                writer,
                |slice: &mut EndpointSlice| triggers::drop_unread_metadata(&mut slice.metadata),
            );
            controller = controller.watches_stream(events, move |slice: EndpointSlice| {
                match endpoints::service_of_slice(&slice) {
                    Some(service) => splits_naming(&by_endpoints, slice.namespace(), &service),
                    None => Vec::new(),
                }
            });
            ReadyIndex::Slices(store)
        }
        EndpointsApi::Endpoints => {
            let (store, writer) = reflector::store::<Endpoints>();
            let events = triggers::cached(
                Api::<Endpoints>::all(client),
                writer,
                |endpoints: &mut Endpoints| triggers::drop_unread_metadata(&mut endpoints.metadata),
            );
            controller = controller.watches_stream(events, move |endpoints: Endpoints| {
                splits_naming(&by_endpoints, endpoints.namespace(), &endpoints.name_any())
            });
            ReadyIndex::Endpoints(store)
        }
    };

    let state = Arc::new(State {
        ctx,
        splits,
        services,
        ready,
    });
    info!(?endpoints_api, "TrafficSplit controller starting");
    let outcomes = controller.run(reconcile, error_policy, state);
    outcome::log_until_stopped("traffic_split", outcomes).await;
    info!("TrafficSplit controller stopped");
}

async fn reconcile(split: Arc<TrafficSplit>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = split.namespace().unwrap_or_default();
    let name = split.name_any();
    let span =
        info_span!("reconcile", kind = "TrafficSplit", split = %format!("{namespace}/{name}"));
    state.ctx.metrics.reconciled("traffic_split");
    reconcile_one(&split, &state, &namespace, &name)
        .instrument(span)
        .await
}

async fn reconcile_one(
    split: &TrafficSplit,
    state: &State,
    namespace: &str,
    name: &str,
) -> Result<Action, Error> {
    tokio::time::timeout(CACHE_WAIT, async {
        let _ = state.services.wait_until_ready().await;
        state.ready.wait_until_ready().await;
    })
    .await
    .map_err(|_| Error::CachesNotReady(CACHE_WAIT))?;

    let siblings = state.splits.state();
    let acceptance = accept::accept(
        split,
        siblings
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| s.namespace().as_deref() == Some(namespace)),
    );
    let resolution = resolve::resolve(&split.spec, acceptance.accepted, |service| {
        state.service_facts(namespace, service)
    });

    let generation = split.meta().generation;
    let now = status::now_rfc3339();
    let old = split.status.clone().unwrap_or_default();
    let mut new = TrafficSplitStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        backends: resolution.backends.clone(),
        summary: Some(resolution.summary.clone()),
    };
    let accepted_event = report::update(
        &mut new.conditions,
        Condition::new(
            "Accepted",
            ConditionStatus::from_bool(acceptance.accepted),
            acceptance.reason.as_str(),
            acceptance.message.clone(),
            generation,
            &now,
        ),
        "Validate",
    );
    let resolved_event = report::update(
        &mut new.conditions,
        Condition::new(
            "ResolvedRefs",
            ConditionStatus::from_bool(resolution.resolved),
            resolution.reason.as_str(),
            resolution.message.clone(),
            generation,
            &now,
        ),
        "Resolve",
    );
    if new == old {
        debug!("status unchanged");
        return Ok(Action::await_change());
    }
    let api: Api<TrafficSplit> = Api::namespaced(state.ctx.client.clone(), namespace);
    status::apply(&api, name, &new)
        .await
        .map_err(Error::WriteStatus)?;
    info!(
        accepted = acceptance.reason.as_str(),
        resolved = resolution.reason.as_str(),
        backends = %resolution.summary,
        "status written"
    );
    report::publish(
        &state.ctx,
        split,
        accepted_event.into_iter().chain(resolved_event).collect(),
    )
    .await;
    Ok(Action::await_change())
}

fn error_policy(split: Arc<TrafficSplit>, error: &Error, state: Arc<State>) -> Action {
    outcome::retry_after_failure(&state.ctx.metrics, "traffic_split", split.as_ref(), error)
}

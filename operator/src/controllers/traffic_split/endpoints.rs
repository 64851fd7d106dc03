//! Ready endpoints of Services, from `discovery.k8s.io/v1` EndpointSlices where the API server serves
//! them (Kubernetes 1.21+), else from core/v1 Endpoints (Kubernetes 1.20, the test API server). Which one
//! is decided once at start, by asking the API server's discovery.

use k8s_openapi::api::{core::v1::Endpoints, discovery::v1::EndpointSlice};
use kube::{Client, ResourceExt};
use std::{collections::BTreeSet, time::Duration};
use tracing::{info, warn};

/// The label an EndpointSlice carries with the name of its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Where ready endpoints are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointsApi {
    /// `discovery.k8s.io/v1` EndpointSlices.
    EndpointSlices,
    /// core/v1 Endpoints.
    Endpoints,
}

/// Asks the API server whether it serves `discovery.k8s.io/v1` EndpointSlices. Retries transient failures
/// (with a growing pause, up to 30 s) until it gets an answer: without one, readiness cannot be judged.
pub async fn detect(client: &Client) -> EndpointsApi {
    let mut pause = Duration::from_millis(500);
    loop {
        match client.list_api_group_resources("discovery.k8s.io/v1").await {
            Ok(resources) => {
                let served = resources
                    .resources
                    .iter()
                    .any(|r| r.name == "endpointslices");
                let api = if served {
                    EndpointsApi::EndpointSlices
                } else {
                    EndpointsApi::Endpoints
                };
                info!(?api, "ready endpoints are read from {}", describe(api));
                return api;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                info!(
                    api = ?EndpointsApi::Endpoints,
                    "the API server does not serve discovery.k8s.io/v1; ready endpoints are read from {}",
                    describe(EndpointsApi::Endpoints)
                );
                return EndpointsApi::Endpoints;
            }
            Err(error) => {
                warn!(%error, ?pause, "could not ask the API server which endpoints API it serves; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn describe(api: EndpointsApi) -> &'static str {
    match api {
        EndpointsApi::EndpointSlices => "discovery.k8s.io/v1 EndpointSlices",
        EndpointsApi::Endpoints => "core/v1 Endpoints",
    }
}

/// Distinct ready addresses in an Endpoints object (its `notReadyAddresses` do not count).
pub fn ready_in_endpoints(endpoints: &Endpoints) -> usize {
    endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|subset| subset.addresses.iter().flatten())
        .map(|address| address.ip.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

/// Distinct ready addresses across the EndpointSlices of one Service. An endpoint whose `ready` condition
/// is unset counts as ready, as the API documents; a terminating one does not.
pub fn ready_in_slices<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> usize {
    slices
        .into_iter()
        .flat_map(|slice| slice.endpoints.iter())
        .filter(|endpoint| {
            let conditions = endpoint.conditions.as_ref();
            conditions.and_then(|c| c.ready).unwrap_or(true)
                && !conditions.and_then(|c| c.terminating).unwrap_or(false)
        })
        .flat_map(|endpoint| endpoint.addresses.iter().map(String::as_str))
        .collect::<BTreeSet<_>>()
        .len()
}

/// The Service an EndpointSlice belongs to.
pub fn service_of_slice(slice: &EndpointSlice) -> Option<String> {
    slice.labels().get(SERVICE_NAME_LABEL).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::{
        core::v1::{EndpointAddress, EndpointSubset},
        discovery::v1::{Endpoint, EndpointConditions},
    };

    fn address(ip: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        }
    }

    #[test]
    fn endpoints_count_distinct_ready_addresses() {
        let endpoints = Endpoints {
            subsets: Some(vec![
                EndpointSubset {
                    addresses: Some(vec![address("10.0.0.1"), address("10.0.0.2")]),
                    not_ready_addresses: Some(vec![address("10.0.0.3")]),
                    ports: None,
                },
                EndpointSubset {
                    addresses: Some(vec![address("10.0.0.1")]),
                    not_ready_addresses: None,
                    ports: None,
                },
            ]),
            ..Default::default()
        };
        assert_eq!(ready_in_endpoints(&endpoints), 2);
        assert_eq!(ready_in_endpoints(&Endpoints::default()), 0);
    }

    fn endpoint(ip: &str, ready: Option<bool>, terminating: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready,
                serving: None,
                terminating,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn slices_count_ready_and_unknown_but_not_terminating() {
        let a = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![
                endpoint("10.0.0.1", Some(true), None),
                endpoint("10.0.0.2", None, None),
                endpoint("10.0.0.3", Some(false), None),
            ],
            ..Default::default()
        };
        let b = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![
                endpoint("10.0.0.1", Some(true), None),
                endpoint("10.0.0.4", Some(true), Some(true)),
            ],
            ..Default::default()
        };
        assert_eq!(ready_in_slices([&a, &b]), 2);
    }
}

//! `TrafficSplit`: weighted shifting of the traffic addressed to one Service (the apex) across other Services
//! (the backends), in the shape of SMI's `split.smi-spec.io/v1alpha4` but in `weft.dev/v1alpha1`.
//!
//! The schema rejects malformed names, negative weights and an empty backend list; the operator checks the
//! rest (duplicates, the apex among its own backends, all weights zero, a second split of the same apex) for the
//! `Accepted` condition, and the referenced Services and their ready endpoints for `ResolvedRefs`.

use crate::{condition::Condition, mesh_policy::DNS_LABEL_PATTERN};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Splits the traffic sent to the apex Service `service` across `backends` by relative weight.
// Several printer columns share `type_ = "string"`, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "TrafficSplit",
    plural = "trafficsplits",
    singular = "trafficsplit",
    namespaced,
    shortname = "ts",
    category = "weft",
    status = "TrafficSplitStatus",
    doc = "TrafficSplit sends the traffic addressed to one Service (the apex) to other Services (the backends) in proportion to their weights (SMI TrafficSplit).",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status",
        description = "Whether the split is valid and the only one for its apex"
    ),
    printcolumn(
        name = "Resolved",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ResolvedRefs\")].status",
        description = "Whether the apex and every backend exist, share the apex's ports and have ready endpoints"
    ),
    printcolumn(
        name = "Apex",
        type_ = "string",
        json_path = ".spec.service",
        description = "The Service whose traffic is split"
    ),
    printcolumn(
        name = "Backends",
        type_ = "string",
        json_path = ".status.summary",
        description = "Effective share of each backend"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitSpec {
    /// The apex Service, in this namespace: clients address it, and its traffic is split across `backends`.
    /// At most one TrafficSplit per apex takes effect (the oldest); it must not be one of its own backends.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub service: String,

    /// The Services that receive the apex's traffic, each in proportion to its weight. A backend must expose
    /// every port of the apex (by number and protocol) or it receives nothing. Each Service at most once.
    #[schemars(length(min = 1, max = 64))]
    pub backends: Vec<TrafficSplitBackend>,

    /// Reserved for SMI's route matches (HTTPRouteGroup references), which weft does not support yet: a split
    /// with matches is not accepted (reason `MatchesNotSupported`), rather than silently splitting all traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TrafficSplitMatch>,
}

/// One backend of a split.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitBackend {
    /// The backend Service, in the split's namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub service: String,

    /// The backend's relative weight: its share is weight / (sum of the weights of the resolved backends).
    /// 0 sends it nothing.
    #[schemars(range(min = 0, max = 1000000))]
    pub weight: i32,
}

/// A reference to a route group that restricts which requests are split (SMI). Not supported yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitMatch {
    /// The kind of the referenced route group, e.g. `HTTPRouteGroup`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,

    /// The route group's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What the operator observed about a TrafficSplit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub observed_generation: Option<i64>,

    /// `Accepted`: `True` (reason `Accepted`) when the spec is valid and no older split has the same apex; else
    /// `False` with `NoBackends`, `ApexIsBackend`, `DuplicateBackend`, `AllWeightsZero`, `MatchesNotSupported` or
    /// `Conflict`. `ResolvedRefs`: `True` (reason `ResolvedRefs`) when the apex and every backend exist, every
    /// backend exposes the apex's ports and has ready endpoints; else `False` with `ApexNotFound`,
    /// `BackendNotFound`, `PortMismatch` or `NoReadyEndpoints` (the first that applies, in that order).
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// Every backend of the spec, in spec order, with the share it effectively gets. Backends that do not resolve
    /// get nothing and their weight goes to the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStatus>,

    /// The effective shares in one line, e.g. `web-v1 90%, web-v2 10%` (`none` when no backend resolves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub summary: Option<String>,
}

/// How one backend resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// The backend Service.
    pub service: String,

    /// The weight in the spec.
    pub weight: i32,

    /// The weight weft routes by: the spec's weight when the backend resolved, else 0.
    pub effective_weight: i32,

    /// The backend's share of the apex's traffic, rounded to one decimal: `90%`, `33.3%`, `0%`.
    pub percent: String,

    /// Ready endpoint addresses of the backend Service.
    pub ready_endpoints: i32,

    /// Why the backend gets nothing: `BackendNotFound`, `PortMismatch` or `NoReadyEndpoints`; absent when it
    /// resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub reason: Option<String>,
}

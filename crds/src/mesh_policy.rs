//! `MeshPolicy`: how meshed traffic to a set of pods is secured, authorised, retried, timed out,
//! broken and balanced.
//!
//! A policy targets pods either by a label `selector` or through a Service (`targetRef`); exactly one
//! of the two. The schema rejects most nonsense (enums, minimums, duration and status patterns, the
//! one-of rule); the operator checks the rest (label syntax, ranges, contradictions, the referenced
//! Service, conflicts between policies) and reports it in the `Accepted` condition.
//!
//! Defaults follow Linkerd's, so users who know Linkerd get what they expect.

use crate::condition::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::DURATION_PATTERN;

/// A Kubernetes object name that is a DNS-1035 label (Services and most names in a namespace).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1123 subdomain (ServiceAccount and namespace names are checked against this).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// An HTTP status (`503`), a class (`5xx`) or an inclusive range (`500-504`).
pub const HTTP_STATUS_PATTERN: &str =
    r"^([1-5][0-9][0-9]|[1-5]xx|[1-5][0-9][0-9]-[1-5][0-9][0-9])$";

/// A client identity name, optionally with a leading `*.` wildcard, or `*` alone (any authenticated client).
pub const IDENTITY_PATTERN: &str =
    r"^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$";

/// What weft does with meshed traffic to a set of pods. Exactly one of `selector` and `targetRef` says which pods.
// Several printer columns share `type_ = "string"`, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "MeshPolicy",
    plural = "meshpolicies",
    singular = "meshpolicy",
    namespaced,
    shortname = "mp",
    category = "weft",
    status = "MeshPolicyStatus",
    doc = "MeshPolicy sets mTLS, authorization, retries, timeouts, circuit breaking and balancing for the meshed traffic to a set of pods in its namespace.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status",
        description = "Whether the operator accepted the policy (see the Accepted condition's reason)"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mtls.mode",
        description = "mTLS mode"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".status.target",
        description = "The Service or label selector the policy applies to"
    ),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedPods",
        description = "Pods the policy applies to"
    ),
    printcolumn(
        name = "Workloads",
        type_ = "integer",
        json_path = ".status.matchedWorkloads",
        description = "Workloads (Deployments, StatefulSets, ... or bare pods) the policy applies to",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[schemars(extend("oneOf" = [{"required": ["selector"]}, {"required": ["targetRef"]}]))]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicySpec {
    /// The pods in this namespace the policy applies to, by their labels (as a Deployment's selector).
    /// An empty selector (`{}`) selects every pod in the namespace. Exactly one of `selector` and `targetRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "WorkloadSelector")]
    pub selector: Option<WorkloadSelector>,

    /// A Service in this namespace: the policy applies to the pods its selector picks.
    /// Exactly one of `selector` and `targetRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "ServiceTargetRef")]
    pub target_ref: Option<ServiceTargetRef>,

    /// Mutual TLS for traffic to the selected pods.
    #[serde(default)]
    pub mtls: MtlsSettings,

    /// Which clients may call the selected pods. When absent every client the mTLS mode admits may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Authorization")]
    pub authorization: Option<Authorization>,

    /// Retries of failed requests to the selected pods. When absent, only requests that failed before any
    /// byte reached a pod are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RetryPolicy")]
    pub retries: Option<RetryPolicy>,

    /// Timeouts of requests to the selected pods. When absent, requests have no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Timeouts")]
    pub timeouts: Option<Timeouts>,

    /// Ejection of failing pods from load balancing. When absent, pods are not ejected for failing requests
    /// (only for refused or reset connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CircuitBreaking")]
    pub circuit_breaking: Option<CircuitBreaking>,

    /// How clients choose among the selected pods. When absent: PeakEwmaP2C with Linkerd's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Balancing")]
    pub balancing: Option<Balancing>,
}

/// A label selector of pods, with the semantics of `metav1.LabelSelector`: every `matchLabels` entry and
/// every `matchExpressions` requirement must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels a pod must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,

    /// Requirements on a pod's labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement on a label, as in `metav1.LabelSelectorRequirement`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label key (an optional DNS prefix and `/`, then a name of at most 63 characters).
    #[schemars(length(min = 1, max = 317))]
    pub key: String,

    /// `In` (the value is one of `values`), `NotIn` (the label is absent or its value is none of `values`),
    /// `Exists` (the label is present) or `DoesNotExist` (the label is absent).
    pub operator: SelectorOperator,

    /// The values for `In` and `NotIn` (at least one); must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a label selector requirement.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A reference to the Service whose pods a policy applies to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTargetRef {
    /// The kind of the target; only `Service` (core API group) for now.
    #[serde(default)]
    pub kind: TargetKind,

    /// The Service's name, in the policy's namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
}

/// The kinds a policy can target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum TargetKind {
    #[default]
    Service,
}

/// Mutual TLS settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MtlsSettings {
    /// `Strict` (default): only mTLS from meshed clients is accepted. `Permissive`: mTLS from meshed clients
    /// and plaintext from any client are accepted (for migrating unmeshed clients). `Disabled`: the proxy neither
    /// requires nor offers mTLS to these pods.
    #[serde(default)]
    pub mode: MtlsMode,
}

/// How the selected pods' inbound proxies treat TLS.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum MtlsMode {
    #[default]
    Strict,
    Permissive,
    Disabled,
}

/// The clients allowed to call the selected pods. A client is allowed when it matches any entry.
/// An `authorization` with no entries denies every client.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// Client identity names, `<serviceaccount>.<namespace>.serviceaccount.identity.<trust-domain>`, as proxies
    /// present them in their certificates. `*` allows any authenticated client; a leading `*.` matches any
    /// name ending with the rest (e.g. `*.prod.serviceaccount.identity.cluster.local`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253), regex(pattern = IDENTITY_PATTERN)))]
    pub identities: Vec<String>,

    /// ServiceAccounts whose pods may call (their identity in any trust domain of this mesh).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountRef>,

    /// Also allow clients that present no certificate (plaintext). Only meaningful with `mtls.mode: Permissive`;
    /// with `Strict` the policy is not accepted.
    #[serde(default)]
    pub all_unauthenticated: bool,
}

/// A ServiceAccount whose pods are allowed to call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// The ServiceAccount's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,

    /// The ServiceAccount's namespace; the policy's namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    #[schemars(with = "String")]
    pub namespace: Option<String>,
}

/// When and how often failed requests are retried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// How many retries may be added on top of the original requests, so retries cannot multiply load
    /// during an outage.
    #[serde(default)]
    pub budget: RetryBudget,

    /// HTTP response statuses that make a request retryable: a status (`503`), a class (`5xx`) or an
    /// inclusive range (`500-504`). Default `["5xx"]`.
    #[serde(default = "default_retryable_statuses")]
    #[schemars(inner(regex(pattern = HTTP_STATUS_PATTERN)))]
    pub retryable_statuses: Vec<String>,

    /// gRPC status codes that make a request retryable, by name (e.g. `Unavailable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retryable_grpc_codes: Vec<GrpcCode>,

    /// Requests with a larger body are never retried, because the proxy would have to buffer them.
    /// Default 65536 (64 KiB).
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 0, max = 16777216))]
    pub max_body_bytes: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            budget: RetryBudget::default(),
            retryable_statuses: default_retryable_statuses(),
            retryable_grpc_codes: Vec::new(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

fn default_retryable_statuses() -> Vec<String> {
    vec!["5xx".to_string()]
}

fn default_max_body_bytes() -> i64 {
    64 * 1024
}

/// A retry budget as Linkerd's: over a sliding window of `ttl`, retries may add `ratio` of the requests
/// plus `minRetriesPerSecond`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries allowed as a fraction of original requests (0.2 = 20 %). Default 0.2.
    #[serde(default = "default_retry_ratio")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub ratio: f64,

    /// Retries allowed per second regardless of the ratio, so low-traffic services can retry. Default 10.
    #[serde(default = "default_min_retries_per_second")]
    #[schemars(range(min = 0, max = 1000000))]
    pub min_retries_per_second: i32,

    /// The window over which requests and retries are counted. Default `10s`.
    #[serde(default = "default_retry_ttl")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub ttl: String,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: default_retry_ratio(),
            min_retries_per_second: default_min_retries_per_second(),
            ttl: default_retry_ttl(),
        }
    }
}

fn default_retry_ratio() -> f64 {
    0.2
}

fn default_min_retries_per_second() -> i32 {
    10
}

fn default_retry_ttl() -> String {
    "10s".to_string()
}

/// gRPC status codes by their canonical names.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum GrpcCode {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

/// Request timeouts; each is a duration such as `500ms`, `10s` or `1m`, greater than zero. Omit one to
/// disable it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// The whole request, retries included, from the first byte sent until the response's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(with = "String")]
    pub request: Option<String>,

    /// How long a request or response stream may stay without any byte in either direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(with = "String")]
    pub idle: Option<String>,

    /// Each attempt (the original or a retry); must not exceed `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(with = "String")]
    pub per_try: Option<String>,
}

/// Failure accrual: a pod that fails `consecutiveFailures` requests in a row is ejected from balancing for a
/// penalty that starts at `minPenalty` and doubles on each further ejection up to `maxPenalty`; after the
/// penalty one probe request decides whether it is readmitted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaking {
    /// Failures in a row that eject a pod. Default 7.
    #[serde(default = "default_consecutive_failures")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: i32,

    /// The first ejection's length. Default `1s`.
    #[serde(default = "default_min_penalty")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub min_penalty: String,

    /// The longest ejection; must be at least `minPenalty`. Default `1m`.
    #[serde(default = "default_max_penalty")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub max_penalty: String,
}

impl Default for CircuitBreaking {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive_failures(),
            min_penalty: default_min_penalty(),
            max_penalty: default_max_penalty(),
        }
    }
}

fn default_consecutive_failures() -> i32 {
    7
}

fn default_min_penalty() -> String {
    "1s".to_string()
}

fn default_max_penalty() -> String {
    "1m".to_string()
}

/// Load balancing across the selected pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balancing {
    /// `PeakEwmaP2C` (default): each request goes to the less loaded of two random pods, by a peak-sensitive
    /// moving average of latency weighted by pending requests. `RoundRobin`: pods in turn.
    #[serde(default)]
    pub algorithm: BalancingAlgorithm,

    /// The latency assumed for a pod before it has answered a request (PeakEwmaP2C). Default `30ms`.
    #[serde(default = "default_rtt")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub default_rtt: String,

    /// How fast old latency observations fade (PeakEwmaP2C). Default `10s`.
    #[serde(default = "default_decay")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub decay: String,
}

impl Default for Balancing {
    fn default() -> Self {
        Self {
            algorithm: BalancingAlgorithm::default(),
            default_rtt: default_rtt(),
            decay: default_decay(),
        }
    }
}

fn default_rtt() -> String {
    "30ms".to_string()
}

fn default_decay() -> String {
    "10s".to_string()
}

/// The balancing algorithms the proxy implements.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum BalancingAlgorithm {
    #[default]
    PeakEwmaP2C,
    RoundRobin,
}

/// What the operator observed about a MeshPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicyStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub observed_generation: Option<i64>,

    /// `Accepted`: `True` (reason `Accepted`) when the policy is valid, its target exists and no older policy has
    /// the same target; otherwise `False` with the first reason that applies, in this order: `InvalidTarget`,
    /// `InvalidSelector`, `InvalidAuthorization`, `InvalidRetryStatus`, `InvalidRetryBudget`, `InvalidDuration`,
    /// `InvalidTimeouts`, `InvalidCircuitBreaking` (the message lists every problem), then `TargetNotFound`, then
    /// `Conflict`.
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// The target in words: `Service/<name>` or the selector (`app=web,tier in (a,b)`; `<all pods>` when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub target: Option<String>,

    /// Running pods (not terminating or finished) the policy applies to.
    #[serde(default)]
    pub matched_pods: i32,

    /// Workloads those pods belong to (a Deployment, StatefulSet, DaemonSet, Job, ... or the pod itself).
    #[serde(default)]
    pub matched_workloads: i32,

    /// The first workloads (sorted, at most 10) as `<Kind>/<name>`, e.g. `Deployment/web`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
}

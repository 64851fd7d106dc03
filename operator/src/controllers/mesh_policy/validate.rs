//! Checks a MeshPolicy's spec beyond what the schema can say, and compiles it into the values the data
//! plane will use (parsed durations, status ranges, defaults filled in). No I/O: the spec in, a
//! [`CompiledPolicy`] or every problem found out.

use super::selector;
use std::time::Duration;
use weft_crds::duration;
use weft_crds::mesh_policy::{
    Authorization, BalancingAlgorithm, GrpcCode, MeshPolicySpec, MtlsMode, RetryPolicy, TargetKind,
    WorkloadSelector,
};

/// The reasons of the `Accepted` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Accepted,
    /// Neither or both of `selector` and `targetRef`.
    InvalidTarget,
    /// A label key or value the API server would refuse, or an operator with the wrong number of values.
    InvalidSelector,
    /// `allUnauthenticated` with `Strict` mTLS, identities with `Disabled` mTLS, or malformed names.
    InvalidAuthorization,
    /// A retryable status that is not a status, class or ascending range within 100-599.
    InvalidRetryStatus,
    /// A retry budget out of range.
    InvalidRetryBudget,
    /// A duration that does not parse, or is zero where a length is needed.
    InvalidDuration,
    /// `timeouts.perTry` longer than `timeouts.request`.
    InvalidTimeouts,
    /// `consecutiveFailures` below 1 or `minPenalty` above `maxPenalty`.
    InvalidCircuitBreaking,
    /// The `targetRef` Service does not exist.
    TargetNotFound,
    /// An older accepted policy has the same target.
    Conflict,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::InvalidTarget => "InvalidTarget",
            Reason::InvalidSelector => "InvalidSelector",
            Reason::InvalidAuthorization => "InvalidAuthorization",
            Reason::InvalidRetryStatus => "InvalidRetryStatus",
            Reason::InvalidRetryBudget => "InvalidRetryBudget",
            Reason::InvalidDuration => "InvalidDuration",
            Reason::InvalidTimeouts => "InvalidTimeouts",
            Reason::InvalidCircuitBreaking => "InvalidCircuitBreaking",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::Conflict => "Conflict",
        }
    }
}

/// One thing wrong with a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    pub message: String,
}

impl Problem {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The pods a policy is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Selector(WorkloadSelector),
    Service(String),
}

impl Target {
    /// The target in words, as `status.target` shows it.
    pub fn describe(&self) -> String {
        match self {
            Target::Selector(s) => selector::render(s),
            Target::Service(name) => format!("Service/{name}"),
        }
    }

    /// Equal for two policies exactly when they target the same pods by the same means.
    pub fn key(&self) -> String {
        match self {
            Target::Selector(s) => format!("selector:{}", selector::render(s)),
            Target::Service(name) => format!("service:{name}"),
        }
    }
}

/// The policy as the data plane will use it: every default filled in, every value parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub target: Target,
    pub mtls: MtlsMode,
    /// `None`: every client the mTLS mode admits may call.
    pub authorization: Option<CompiledAuthorization>,
    /// `None`: only requests that never reached a pod are retried.
    pub retries: Option<CompiledRetries>,
    pub timeouts: CompiledTimeouts,
    /// `None`: pods are not ejected for failed requests.
    pub circuit_breaking: Option<CompiledCircuitBreaking>,
    pub balancing: CompiledBalancing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledAuthorization {
    pub identities: Vec<String>,
    /// `(namespace, name)`, the namespace filled in from the policy's when absent.
    pub service_accounts: Vec<(String, String)>,
    pub all_unauthenticated: bool,
}

/// An inclusive range of HTTP statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    pub first: u16,
    pub last: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompiledRetries {
    pub budget_ratio: f64,
    pub min_retries_per_second: u32,
    pub budget_ttl: Duration,
    pub statuses: Vec<StatusRange>,
    pub grpc_codes: Vec<GrpcCode>,
    pub max_body_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledTimeouts {
    pub request: Option<Duration>,
    pub idle: Option<Duration>,
    pub per_try: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCircuitBreaking {
    pub consecutive_failures: u32,
    pub min_penalty: Duration,
    pub max_penalty: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledBalancing {
    pub algorithm: BalancingAlgorithm,
    pub default_rtt: Duration,
    pub decay: Duration,
}

/// Checks `spec` of a policy in `namespace`. `Err` holds every problem, in spec order; the first one's
/// reason becomes the condition's reason.
pub fn validate(namespace: &str, spec: &MeshPolicySpec) -> Result<CompiledPolicy, Vec<Problem>> {
    let mut problems = Vec::new();
    let target = target(spec, &mut problems);
    let authorization = spec
        .authorization
        .as_ref()
        .map(|a| authorization(namespace, spec.mtls.mode, a, &mut problems));
    let retries = spec.retries.as_ref().map(|r| retries(r, &mut problems));
    let timeouts = timeouts(spec, &mut problems);
    let circuit_breaking = spec.circuit_breaking.as_ref().map(|cb| {
        let mut failures = 0;
        match u32::try_from(cb.consecutive_failures) {
            Ok(n) if n >= 1 => failures = n,
            _ => problems.push(Problem::new(
                Reason::InvalidCircuitBreaking,
                format!(
                    "circuitBreaking.consecutiveFailures must be at least 1, not {}",
                    cb.consecutive_failures
                ),
            )),
        }
        let min_penalty =
            positive_duration("circuitBreaking.minPenalty", &cb.min_penalty, &mut problems);
        let max_penalty =
            positive_duration("circuitBreaking.maxPenalty", &cb.max_penalty, &mut problems);
        if min_penalty > max_penalty {
            problems.push(Problem::new(
                Reason::InvalidCircuitBreaking,
                format!(
                    "circuitBreaking.minPenalty ({}) must not exceed maxPenalty ({})",
                    cb.min_penalty, cb.max_penalty
                ),
            ));
        }
        CompiledCircuitBreaking {
            consecutive_failures: failures,
            min_penalty,
            max_penalty,
        }
    });
    let balancing_spec = spec.balancing.clone().unwrap_or_default();
    let balancing = CompiledBalancing {
        algorithm: balancing_spec.algorithm,
        default_rtt: positive_duration(
            "balancing.defaultRtt",
            &balancing_spec.default_rtt,
            &mut problems,
        ),
        decay: positive_duration("balancing.decay", &balancing_spec.decay, &mut problems),
    };

    match (target, problems.is_empty()) {
        (Some(target), true) => Ok(CompiledPolicy {
            target,
            mtls: spec.mtls.mode,
            authorization,
            retries,
            timeouts,
            circuit_breaking,
            balancing,
        }),
        _ => Err(problems),
    }
}

/// The target, when exactly one is given and well formed. A selector with problems still yields no
/// target: matching pods with a selector the API server would refuse would mislead.
fn target(spec: &MeshPolicySpec, problems: &mut Vec<Problem>) -> Option<Target> {
    match (&spec.selector, &spec.target_ref) {
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                Reason::InvalidTarget,
                "set exactly one of selector and targetRef, not both",
            ));
            None
        }
        (None, None) => {
            problems.push(Problem::new(
                Reason::InvalidTarget,
                "set exactly one of selector and targetRef",
            ));
            None
        }
        (Some(sel), None) => {
            let found = selector::problems(sel);
            if found.is_empty() {
                Some(Target::Selector(sel.clone()))
            } else {
                problems.extend(
                    found
                        .into_iter()
                        .map(|p| Problem::new(Reason::InvalidSelector, format!("selector: {p}"))),
                );
                None
            }
        }
        (None, Some(target_ref)) => {
            let TargetKind::Service = target_ref.kind;
            if selector::is_dns_label(&target_ref.name) {
                Some(Target::Service(target_ref.name.clone()))
            } else {
                problems.push(Problem::new(
                    Reason::InvalidTarget,
                    format!(
                        "targetRef.name {:?} is not a valid Service name",
                        target_ref.name
                    ),
                ));
                None
            }
        }
    }
}

fn authorization(
    namespace: &str,
    mode: MtlsMode,
    spec: &Authorization,
    problems: &mut Vec<Problem>,
) -> CompiledAuthorization {
    let mut invalid =
        |message: String| problems.push(Problem::new(Reason::InvalidAuthorization, message));
    if spec.all_unauthenticated && mode == MtlsMode::Strict {
        invalid(
            "authorization.allUnauthenticated needs mtls.mode Permissive (or Disabled): Strict refuses every client \
             without a certificate"
                .to_string(),
        );
    }
    let names_identities = !spec.identities.is_empty() || !spec.service_accounts.is_empty();
    if names_identities && mode == MtlsMode::Disabled {
        invalid(
            "authorization.identities and serviceAccounts need mTLS: with mtls.mode Disabled no client identity \
             can be verified"
                .to_string(),
        );
    }
    for identity in &spec.identities {
        if !is_identity_pattern(identity) {
            invalid(format!(
                "authorization.identities: {identity:?} is not an identity name (DNS name, optionally starting \
                 with \"*.\", or \"*\")"
            ));
        }
    }
    let mut service_accounts = Vec::new();
    for account in &spec.service_accounts {
        let account_namespace = account.namespace.as_deref().unwrap_or(namespace);
        if !selector::is_dns_subdomain(&account.name) {
            invalid(format!(
                "authorization.serviceAccounts: {:?} is not a ServiceAccount name",
                account.name
            ));
        }
        if !selector::is_dns_label(account_namespace) {
            invalid(format!(
                "authorization.serviceAccounts: {account_namespace:?} is not a namespace name"
            ));
        }
        service_accounts.push((account_namespace.to_string(), account.name.clone()));
    }
    CompiledAuthorization {
        identities: spec.identities.clone(),
        service_accounts,
        all_unauthenticated: spec.all_unauthenticated,
    }
}

fn is_identity_pattern(identity: &str) -> bool {
    if identity == "*" {
        return true;
    }
    let name = identity.strip_prefix("*.").unwrap_or(identity);
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|part| {
            let bytes = part.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

fn retries(spec: &RetryPolicy, problems: &mut Vec<Problem>) -> CompiledRetries {
    let mut statuses = Vec::new();
    for text in &spec.retryable_statuses {
        match parse_status_range(text) {
            Ok(range) => statuses.push(range),
            Err(why) => problems.push(Problem::new(
                Reason::InvalidRetryStatus,
                format!("retries.retryableStatuses: {text:?} {why}"),
            )),
        }
    }
    let ratio = spec.budget.ratio;
    if !(ratio.is_finite() && (0.0..=1000.0).contains(&ratio)) {
        problems.push(Problem::new(
            Reason::InvalidRetryBudget,
            format!("retries.budget.ratio must be between 0 and 1000, not {ratio}"),
        ));
    }
    let min_retries_per_second =
        u32::try_from(spec.budget.min_retries_per_second).unwrap_or_else(|_| {
            problems.push(Problem::new(
                Reason::InvalidRetryBudget,
                format!(
                    "retries.budget.minRetriesPerSecond must not be negative, not {}",
                    spec.budget.min_retries_per_second
                ),
            ));
            0
        });
    let max_body_bytes = u64::try_from(spec.max_body_bytes).unwrap_or_else(|_| {
        problems.push(Problem::new(
            Reason::InvalidRetryBudget,
            format!(
                "retries.maxBodyBytes must not be negative, not {}",
                spec.max_body_bytes
            ),
        ));
        0
    });
    let budget_ttl = positive_duration("retries.budget.ttl", &spec.budget.ttl, problems);
    let mut grpc_codes = spec.retryable_grpc_codes.clone();
    grpc_codes.sort();
    grpc_codes.dedup();
    CompiledRetries {
        budget_ratio: ratio,
        min_retries_per_second,
        budget_ttl,
        statuses,
        grpc_codes,
        max_body_bytes,
    }
}

/// `503`, `5xx` or `500-504`, within 100-599 and ascending.
pub fn parse_status_range(text: &str) -> Result<StatusRange, &'static str> {
    let status = |s: &str| -> Result<u16, &'static str> {
        match s.parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) && s.len() == 3 => Ok(n),
            _ => Err("is not an HTTP status between 100 and 599"),
        }
    };
    if let Some(class) = text.strip_suffix("xx") {
        return match class.parse::<u16>() {
            Ok(c) if (1..=5).contains(&c) && class.len() == 1 => Ok(StatusRange {
                first: c * 100,
                last: c * 100 + 99,
            }),
            _ => Err("is not a status class between 1xx and 5xx"),
        };
    }
    match text.split_once('-') {
        Some((first, last)) => {
            let (first, last) = (status(first)?, status(last)?);
            if first > last {
                Err("is a range whose first status is above its last")
            } else {
                Ok(StatusRange { first, last })
            }
        }
        None => status(text).map(|s| StatusRange { first: s, last: s }),
    }
}

fn timeouts(spec: &MeshPolicySpec, problems: &mut Vec<Problem>) -> CompiledTimeouts {
    let Some(t) = &spec.timeouts else {
        return CompiledTimeouts::default();
    };
    let mut read = |field: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|text| positive_duration(&format!("timeouts.{field}"), text, problems))
    };
    let compiled = CompiledTimeouts {
        request: read("request", &t.request),
        idle: read("idle", &t.idle),
        per_try: read("perTry", &t.per_try),
    };
    if let (Some(request), Some(per_try)) = (compiled.request, compiled.per_try)
        && per_try > request
    {
        problems.push(Problem::new(
            Reason::InvalidTimeouts,
            format!(
                "timeouts.perTry ({}) must not exceed timeouts.request ({})",
                t.per_try.as_deref().unwrap_or_default(),
                t.request.as_deref().unwrap_or_default()
            ),
        ));
    }
    compiled
}

/// A duration above zero; on failure records the problem and returns zero.
fn positive_duration(field: &str, text: &str, problems: &mut Vec<Problem>) -> Duration {
    match duration::parse(text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(Problem::new(
                Reason::InvalidDuration,
                format!("{field} must be greater than zero (omit it to disable)"),
            ));
            Duration::ZERO
        }
        Err(e) => {
            problems.push(Problem::new(
                Reason::InvalidDuration,
                format!("{field}: {e}"),
            ));
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::mesh_policy::{
        Balancing, CircuitBreaking, LabelSelectorRequirement, MtlsSettings, SelectorOperator,
        ServiceAccountRef, ServiceTargetRef, Timeouts,
    };

    fn by_service(name: &str) -> MeshPolicySpec {
        MeshPolicySpec {
            selector: None,
            target_ref: Some(ServiceTargetRef {
                kind: TargetKind::Service,
                name: name.to_string(),
            }),
            mtls: MtlsSettings::default(),
            authorization: None,
            retries: None,
            timeouts: None,
            circuit_breaking: None,
            balancing: None,
        }
    }

    fn first_reason(spec: &MeshPolicySpec) -> Reason {
        validate("shop", spec).expect_err("the spec should be refused")[0].reason
    }

    #[test]
    fn minimal_policy_compiles_with_linkerd_defaults() {
        let compiled = validate("shop", &by_service("web")).expect("valid");
        assert_eq!(compiled.target, Target::Service("web".into()));
        assert_eq!(compiled.mtls, MtlsMode::Strict);
        assert_eq!(
            compiled.balancing.algorithm,
            BalancingAlgorithm::PeakEwmaP2C
        );
        assert_eq!(compiled.balancing.default_rtt, Duration::from_millis(30));
        assert_eq!(compiled.balancing.decay, Duration::from_secs(10));
        assert!(compiled.retries.is_none() && compiled.circuit_breaking.is_none());
    }

    #[test]
    fn retry_and_breaker_defaults_are_linkerds() {
        let mut spec = by_service("web");
        spec.retries = Some(RetryPolicy::default());
        spec.circuit_breaking = Some(CircuitBreaking::default());
        let compiled = validate("shop", &spec).expect("valid");
        let retries = compiled.retries.expect("retries");
        assert_eq!(retries.budget_ratio, 0.2);
        assert_eq!(retries.min_retries_per_second, 10);
        assert_eq!(retries.budget_ttl, Duration::from_secs(10));
        assert_eq!(retries.max_body_bytes, 65536);
        assert_eq!(
            retries.statuses,
            vec![StatusRange {
                first: 500,
                last: 599
            }]
        );
        let breaker = compiled.circuit_breaking.expect("breaker");
        assert_eq!(breaker.consecutive_failures, 7);
        assert_eq!(breaker.min_penalty, Duration::from_secs(1));
        assert_eq!(breaker.max_penalty, Duration::from_secs(60));
    }

    #[test]
    fn invalid_target_when_neither_or_both() {
        let mut neither = by_service("web");
        neither.target_ref = None;
        assert_eq!(first_reason(&neither), Reason::InvalidTarget);
        let mut both = by_service("web");
        both.selector = Some(WorkloadSelector::default());
        assert_eq!(first_reason(&both), Reason::InvalidTarget);
        assert_eq!(
            first_reason(&by_service("Not_A_Name")),
            Reason::InvalidTarget
        );
    }

    #[test]
    fn invalid_selector() {
        let mut spec = by_service("web");
        spec.target_ref = None;
        spec.selector = Some(WorkloadSelector {
            match_labels: Default::default(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: SelectorOperator::In,
                values: vec![],
            }],
        });
        assert_eq!(first_reason(&spec), Reason::InvalidSelector);
    }

    #[test]
    fn invalid_authorization() {
        let mut strict_plaintext = by_service("web");
        strict_plaintext.authorization = Some(Authorization {
            all_unauthenticated: true,
            ..Default::default()
        });
        assert_eq!(
            first_reason(&strict_plaintext),
            Reason::InvalidAuthorization
        );

        let mut permissive = strict_plaintext.clone();
        permissive.mtls.mode = MtlsMode::Permissive;
        assert!(validate("shop", &permissive).is_ok());

        let mut disabled_identities = by_service("web");
        disabled_identities.mtls.mode = MtlsMode::Disabled;
        disabled_identities.authorization = Some(Authorization {
            identities: vec!["*".into()],
            ..Default::default()
        });
        assert_eq!(
            first_reason(&disabled_identities),
            Reason::InvalidAuthorization
        );

        let mut bad_name = by_service("web");
        bad_name.authorization = Some(Authorization {
            identities: vec!["web.*.serviceaccount".into()],
            ..Default::default()
        });
        assert_eq!(first_reason(&bad_name), Reason::InvalidAuthorization);
    }

    #[test]
    fn service_accounts_default_to_the_policy_namespace() {
        let mut spec = by_service("web");
        spec.authorization = Some(Authorization {
            identities: vec!["*.prod.serviceaccount.identity.cluster.local".into()],
            service_accounts: vec![
                ServiceAccountRef {
                    name: "frontend".into(),
                    namespace: None,
                },
                ServiceAccountRef {
                    name: "probe".into(),
                    namespace: Some("monitoring".into()),
                },
            ],
            all_unauthenticated: false,
        });
        let authz = validate("shop", &spec)
            .expect("valid")
            .authorization
            .expect("authz");
        assert_eq!(
            authz.service_accounts,
            vec![
                ("shop".to_string(), "frontend".to_string()),
                ("monitoring".to_string(), "probe".to_string())
            ]
        );
    }

    #[test]
    fn retry_statuses() {
        assert_eq!(
            parse_status_range("503"),
            Ok(StatusRange {
                first: 503,
                last: 503
            })
        );
        assert_eq!(
            parse_status_range("5xx"),
            Ok(StatusRange {
                first: 500,
                last: 599
            })
        );
        assert_eq!(
            parse_status_range("500-504"),
            Ok(StatusRange {
                first: 500,
                last: 504
            })
        );
        for bad in [
            "504-500", "600", "6xx", "0xx", "99", "5000", "abc", "500-", "-500", "50x",
        ] {
            assert!(parse_status_range(bad).is_err(), "{bad:?} was accepted");
        }
        let mut spec = by_service("web");
        spec.retries = Some(RetryPolicy {
            retryable_statuses: vec!["503".into(), "504-500".into()],
            ..Default::default()
        });
        let problems = validate("shop", &spec).expect_err("refused");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, Reason::InvalidRetryStatus);
        assert!(problems[0].message.contains("504-500"));
    }

    #[test]
    fn invalid_retry_budget() {
        let mut spec = by_service("web");
        let mut retries = RetryPolicy::default();
        retries.budget.ratio = f64::NAN;
        spec.retries = Some(retries);
        assert_eq!(first_reason(&spec), Reason::InvalidRetryBudget);
    }

    #[test]
    fn invalid_durations() {
        let mut spec = by_service("web");
        spec.timeouts = Some(Timeouts {
            request: Some("0s".into()),
            ..Default::default()
        });
        assert_eq!(first_reason(&spec), Reason::InvalidDuration);
        spec.timeouts = Some(Timeouts {
            idle: Some(format!("{}h", "9".repeat(30))),
            ..Default::default()
        });
        assert_eq!(first_reason(&spec), Reason::InvalidDuration);
        let balancing = Balancing {
            decay: "ten seconds".into(),
            ..Default::default()
        };
        let mut spec = by_service("web");
        spec.balancing = Some(balancing);
        assert_eq!(first_reason(&spec), Reason::InvalidDuration);
    }

    #[test]
    fn per_try_must_fit_in_request() {
        let mut spec = by_service("web");
        spec.timeouts = Some(Timeouts {
            request: Some("1s".into()),
            idle: None,
            per_try: Some("2s".into()),
        });
        assert_eq!(first_reason(&spec), Reason::InvalidTimeouts);
        spec.timeouts = Some(Timeouts {
            request: Some("2s".into()),
            idle: Some("1m".into()),
            per_try: Some("500ms".into()),
        });
        let compiled = validate("shop", &spec).expect("valid");
        assert_eq!(compiled.timeouts.per_try, Some(Duration::from_millis(500)));
    }

    #[test]
    fn invalid_circuit_breaking() {
        let mut spec = by_service("web");
        spec.circuit_breaking = Some(CircuitBreaking {
            consecutive_failures: 7,
            min_penalty: "2m".into(),
            max_penalty: "1m".into(),
        });
        assert_eq!(first_reason(&spec), Reason::InvalidCircuitBreaking);
        spec.circuit_breaking = Some(CircuitBreaking {
            consecutive_failures: 0,
            ..Default::default()
        });
        assert_eq!(first_reason(&spec), Reason::InvalidCircuitBreaking);
    }

    #[test]
    fn reports_every_problem_in_spec_order() {
        let mut spec = by_service("web");
        spec.authorization = Some(Authorization {
            all_unauthenticated: true,
            ..Default::default()
        });
        spec.timeouts = Some(Timeouts {
            request: Some("0s".into()),
            ..Default::default()
        });
        let problems = validate("shop", &spec).expect_err("refused");
        let reasons: Vec<_> = problems.iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            vec![Reason::InvalidAuthorization, Reason::InvalidDuration]
        );
    }
}

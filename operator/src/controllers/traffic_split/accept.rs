//! The `Accepted` verdict on a TrafficSplit: is the spec meaningful, and is it the only split of its apex
//! (the oldest wins). No I/O.

use crate::controllers::{mesh_policy::selector::is_dns_label, seniority};
use kube::ResourceExt;
use std::{cmp::Ordering, collections::BTreeSet};
use weft_crds::traffic_split::{TrafficSplit, TrafficSplitSpec};

/// The reasons of the `Accepted` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptReason {
    Accepted,
    /// `backends` is empty.
    NoBackends,
    /// A name that is not a Service name.
    InvalidServiceName,
    /// The apex is among its own backends (splits are not hierarchical).
    ApexIsBackend,
    /// A Service appears twice among the backends.
    DuplicateBackend,
    /// Every weight is 0: the apex would get nowhere.
    AllWeightsZero,
    /// SMI route matches, which weft does not support yet.
    MatchesNotSupported,
    /// An older accepted split has the same apex.
    Conflict,
}

impl AcceptReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptReason::Accepted => "Accepted",
            AcceptReason::NoBackends => "NoBackends",
            AcceptReason::InvalidServiceName => "InvalidServiceName",
            AcceptReason::ApexIsBackend => "ApexIsBackend",
            AcceptReason::DuplicateBackend => "DuplicateBackend",
            AcceptReason::AllWeightsZero => "AllWeightsZero",
            AcceptReason::MatchesNotSupported => "MatchesNotSupported",
            AcceptReason::Conflict => "Conflict",
        }
    }
}

/// The verdict, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    pub accepted: bool,
    pub reason: AcceptReason,
    pub message: String,
}

/// Every problem of a split's spec, in the order of [`AcceptReason`]'s variants; empty when valid.
pub fn spec_problems(spec: &TrafficSplitSpec) -> Vec<(AcceptReason, String)> {
    let mut problems = Vec::new();
    if spec.backends.is_empty() {
        problems.push((
            AcceptReason::NoBackends,
            "the split has no backends".to_string(),
        ));
    }
    for name in std::iter::once(&spec.service).chain(spec.backends.iter().map(|b| &b.service)) {
        if !is_dns_label(name) {
            problems.push((
                AcceptReason::InvalidServiceName,
                format!("{name:?} is not a Service name"),
            ));
        }
    }
    if spec.backends.iter().any(|b| b.service == spec.service) {
        problems.push((
            AcceptReason::ApexIsBackend,
            format!(
                "the apex Service {} is also a backend; splits are not hierarchical: route to a separate Service \
                 that selects the same pods",
                spec.service
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let duplicates: BTreeSet<&str> = spec
        .backends
        .iter()
        .filter(|b| !seen.insert(b.service.as_str()))
        .map(|b| b.service.as_str())
        .collect();
    if !duplicates.is_empty() {
        problems.push((
            AcceptReason::DuplicateBackend,
            format!(
                "backend(s) listed more than once: {}",
                duplicates.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if !spec.backends.is_empty() && spec.backends.iter().all(|b| b.weight <= 0) {
        problems.push((
            AcceptReason::AllWeightsZero,
            "every backend has weight 0, so the apex's traffic would go nowhere".to_string(),
        ));
    }
    if !spec.matches.is_empty() {
        problems.push((
            AcceptReason::MatchesNotSupported,
            "matches (route groups) are not supported yet; remove them to split all of the apex's traffic"
                .to_string(),
        ));
    }
    problems
}

/// Judges `split` against its spec and its `siblings` (the splits of its namespace; it may be among them).
pub fn accept<'a>(
    split: &TrafficSplit,
    siblings: impl IntoIterator<Item = &'a TrafficSplit>,
) -> Acceptance {
    let problems = spec_problems(&split.spec);
    if let Some((reason, _)) = problems.first() {
        return Acceptance {
            accepted: false,
            reason: *reason,
            message: problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        };
    }
    let winner = siblings
        .into_iter()
        .filter(|s| s.name_any() != split.name_any() && s.namespace() == split.namespace())
        .filter(|s| s.spec.service == split.spec.service && spec_problems(&s.spec).is_empty())
        .filter(|s| seniority(*s, split) == Ordering::Less)
        .min_by(|a, b| seniority(*a, *b));
    if let Some(winner) = winner {
        return Acceptance {
            accepted: false,
            reason: AcceptReason::Conflict,
            message: format!(
                "TrafficSplit {} is older and splits the same apex Service {}; only the oldest split of an apex \
                 takes effect",
                winner.name_any(),
                split.spec.service
            ),
        };
    }
    Acceptance {
        accepted: true,
        reason: AcceptReason::Accepted,
        message: format!(
            "splits Service {} across {} backend(s)",
            split.spec.service,
            split.spec.backends.len()
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
    use kube::api::ObjectMeta;
    use weft_crds::traffic_split::{TrafficSplitBackend, TrafficSplitMatch};

    pub(crate) fn spec(apex: &str, backends: &[(&str, i32)]) -> TrafficSplitSpec {
        TrafficSplitSpec {
            service: apex.into(),
            backends: backends
                .iter()
                .map(|(service, weight)| TrafficSplitBackend {
                    service: service.to_string(),
                    weight: *weight,
                })
                .collect(),
            matches: vec![],
        }
    }

    pub(crate) fn split(name: &str, created_secs: i64, spec: TrafficSplitSpec) -> TrafficSplit {
        let mut s = TrafficSplit::new(name, spec);
        s.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            creation_timestamp: Timestamp::from_second(created_secs).ok().map(Time),
            ..Default::default()
        };
        s
    }

    fn reason_of(spec: TrafficSplitSpec) -> AcceptReason {
        accept(&split("s", 1, spec), []).reason
    }

    #[test]
    fn a_valid_split_is_accepted() {
        let verdict = accept(
            &split("s", 1, spec("web", &[("web-v1", 90), ("web-v2", 10)])),
            [],
        );
        assert!(verdict.accepted);
        assert_eq!(verdict.reason, AcceptReason::Accepted);
        // weight 0 for some backends is fine
        assert_eq!(
            reason_of(spec("web", &[("web-v1", 0), ("web-v2", 1)])),
            AcceptReason::Accepted
        );
    }

    #[test]
    fn each_reason() {
        assert_eq!(reason_of(spec("web", &[])), AcceptReason::NoBackends);
        assert_eq!(
            reason_of(spec("web", &[("Web_V1", 1)])),
            AcceptReason::InvalidServiceName
        );
        assert_eq!(
            reason_of(spec("web", &[("web", 1), ("web-v2", 1)])),
            AcceptReason::ApexIsBackend
        );
        assert_eq!(
            reason_of(spec("web", &[("web-v1", 1), ("web-v2", 1), ("web-v1", 2)])),
            AcceptReason::DuplicateBackend
        );
        assert_eq!(
            reason_of(spec("web", &[("web-v1", 0), ("web-v2", 0)])),
            AcceptReason::AllWeightsZero
        );
        let mut with_matches = spec("web", &[("web-v1", 1)]);
        with_matches.matches.push(TrafficSplitMatch {
            kind: "HTTPRouteGroup".into(),
            name: "api".into(),
        });
        assert_eq!(reason_of(with_matches), AcceptReason::MatchesNotSupported);
    }

    #[test]
    fn every_problem_is_in_the_message() {
        let verdict = accept(&split("s", 1, spec("web", &[("web", 0), ("web", 0)])), []);
        assert_eq!(verdict.reason, AcceptReason::ApexIsBackend);
        assert!(
            verdict.message.contains("more than once: web"),
            "{}",
            verdict.message
        );
        assert!(verdict.message.contains("weight 0"), "{}", verdict.message);
    }

    #[test]
    fn the_oldest_split_of_an_apex_wins() {
        let old = split("old", 100, spec("web", &[("web-v1", 1)]));
        let new = split("new", 200, spec("web", &[("web-v2", 1)]));
        let other_apex = split("api", 50, spec("api", &[("api-v1", 1)]));
        let all = [old.clone(), new.clone(), other_apex];
        let verdict = accept(&new, &all);
        assert_eq!(verdict.reason, AcceptReason::Conflict);
        assert!(verdict.message.contains("old"));
        assert!(accept(&old, &all).accepted);
        // an invalid older split does not block
        let broken_old = split("old", 100, spec("web", &[("web-v1", 0)]));
        assert!(accept(&new, [&broken_old]).accepted);
    }
}

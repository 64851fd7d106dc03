//! The `ResolvedRefs` verdict on a TrafficSplit and the weights weft routes by: does the apex exist, does
//! each backend exist, expose the apex's ports and have ready endpoints. A backend that does not resolve
//! gets nothing and its weight goes to the others. No I/O: what the caches know comes in as [`ServiceFacts`].

use std::fmt::Write as _;
use weft_crds::traffic_split::{BackendStatus, TrafficSplitSpec};

/// The reasons of the `ResolvedRefs` condition, and of a backend's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResolveReason {
    ResolvedRefs,
    /// The apex Service does not exist.
    ApexNotFound,
    /// A backend Service does not exist.
    BackendNotFound,
    /// A backend lacks a port of the apex (SMI: it then gets nothing).
    PortMismatch,
    /// A backend has no ready endpoint.
    NoReadyEndpoints,
}

impl ResolveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveReason::ResolvedRefs => "ResolvedRefs",
            ResolveReason::ApexNotFound => "ApexNotFound",
            ResolveReason::BackendNotFound => "BackendNotFound",
            ResolveReason::PortMismatch => "PortMismatch",
            ResolveReason::NoReadyEndpoints => "NoReadyEndpoints",
        }
    }
}

/// A Service port as a split compares them: number and protocol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortKey {
    pub port: i32,
    pub protocol: String,
}

/// What the caches know about one Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    pub ports: Vec<PortKey>,
    /// Distinct ready endpoint addresses.
    pub ready_endpoints: usize,
}

/// The verdict and the per-backend shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub resolved: bool,
    pub reason: ResolveReason,
    pub message: String,
    pub backends: Vec<BackendStatus>,
    /// `status.summary`.
    pub summary: String,
}

/// Resolves `spec`'s references through `lookup` (a Service of the split's namespace by name). Only an
/// `accepted` split routes anything: otherwise every effective weight is 0.
pub fn resolve(
    spec: &TrafficSplitSpec,
    accepted: bool,
    lookup: impl Fn(&str) -> Option<ServiceFacts>,
) -> Resolution {
    let apex = lookup(&spec.service);
    let mut problems: Vec<(ResolveReason, String)> = Vec::new();
    if apex.is_none() {
        problems.push((
            ResolveReason::ApexNotFound,
            format!("apex Service {} does not exist", spec.service),
        ));
    }

    let mut backends = Vec::with_capacity(spec.backends.len());
    for backend in &spec.backends {
        let facts = lookup(&backend.service);
        let problem = match (&facts, &apex) {
            (None, _) => Some((
                ResolveReason::BackendNotFound,
                "Service does not exist".to_string(),
            )),
            (Some(facts), Some(apex)) if !missing_ports(apex, facts).is_empty() => Some((
                ResolveReason::PortMismatch,
                format!(
                    "lacks the apex's port(s) {}",
                    missing_ports(apex, facts)
                        .iter()
                        .map(|p| format!("{}/{}", p.port, p.protocol))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            (Some(facts), _) if facts.ready_endpoints == 0 => Some((
                ResolveReason::NoReadyEndpoints,
                "has no ready endpoints".to_string(),
            )),
            _ => None,
        };
        if let Some((reason, why)) = &problem {
            problems.push((*reason, format!("backend {}: {why}", backend.service)));
        }
        let effective = if accepted && problem.is_none() {
            backend.weight.max(0)
        } else {
            0
        };
        backends.push(BackendStatus {
            service: backend.service.clone(),
            weight: backend.weight,
            effective_weight: effective,
            percent: String::new(),
            ready_endpoints: i32::try_from(facts.map(|f| f.ready_endpoints).unwrap_or(0))
                .unwrap_or(i32::MAX),
            reason: problem.map(|(reason, _)| reason.as_str().to_string()),
        });
    }

    let total: i64 = backends.iter().map(|b| i64::from(b.effective_weight)).sum();
    for backend in &mut backends {
        backend.percent = format!(
            "{}%",
            short_percent(share_permille(backend.effective_weight, total))
        );
    }
    let summary = if !accepted {
        "not accepted".to_string()
    } else if total == 0 {
        "none".to_string()
    } else {
        backends
            .iter()
            .filter(|b| b.effective_weight > 0)
            .map(|b| {
                format!(
                    "{} {}%",
                    b.service,
                    short_percent(share_permille(b.effective_weight, total))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };

    // The condition names the most fundamental problem; the message lists them all.
    let reason = problems
        .iter()
        .map(|(reason, _)| *reason)
        .min()
        .unwrap_or(ResolveReason::ResolvedRefs);
    let message = if problems.is_empty() {
        format!(
            "apex and {} backend(s) resolved with ready endpoints",
            spec.backends.len()
        )
    } else {
        let mut text = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if accepted && total == 0 {
            let _ = write!(text, "; no backend can take traffic");
        }
        text
    };
    Resolution {
        resolved: problems.is_empty(),
        reason,
        message,
        backends,
        summary,
    }
}

/// The apex's ports that `backend` lacks.
fn missing_ports(apex: &ServiceFacts, backend: &ServiceFacts) -> Vec<PortKey> {
    apex.ports
        .iter()
        .filter(|p| !backend.ports.contains(p))
        .cloned()
        .collect()
}

/// `weight / total` in thousandths, rounded half up; 0 when nothing routes.
fn share_permille(weight: i32, total: i64) -> i64 {
    if total <= 0 {
        return 0;
    }
    (i64::from(weight.max(0)) * 1000 * 2 + total) / (total * 2)
}

/// `333` → `33.3`.
fn percent_text(permille: i64) -> String {
    format!("{}.{}", permille / 10, permille % 10)
}

/// `900` → `90`, `333` → `33.3`.
fn short_percent(permille: i64) -> String {
    if permille % 10 == 0 {
        (permille / 10).to_string()
    } else {
        percent_text(permille)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::traffic_split::accept::tests::spec;
    use std::collections::BTreeMap;

    fn port(port: i32) -> PortKey {
        PortKey {
            port,
            protocol: "TCP".into(),
        }
    }

    fn facts(ports: &[i32], ready: usize) -> ServiceFacts {
        ServiceFacts {
            ports: ports.iter().map(|p| port(*p)).collect(),
            ready_endpoints: ready,
        }
    }

    fn cluster(services: &[(&str, ServiceFacts)]) -> impl Fn(&str) -> Option<ServiceFacts> + use<> {
        let map: BTreeMap<String, ServiceFacts> = services
            .iter()
            .map(|(n, f)| (n.to_string(), f.clone()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn all_resolved_shares_by_weight() {
        let lookup = cluster(&[
            ("web", facts(&[80], 0)),
            ("web-v1", facts(&[80, 9090], 3)),
            ("web-v2", facts(&[80], 1)),
        ]);
        let r = resolve(
            &spec("web", &[("web-v1", 90), ("web-v2", 10)]),
            true,
            lookup,
        );
        assert!(r.resolved);
        assert_eq!(r.reason, ResolveReason::ResolvedRefs);
        assert_eq!(r.backends[0].effective_weight, 90);
        assert_eq!(r.backends[0].percent, "90%");
        assert_eq!(r.backends[0].ready_endpoints, 3);
        assert_eq!(r.backends[1].percent, "10%");
        assert_eq!(r.backends[1].reason, None);
        assert_eq!(r.summary, "web-v1 90%, web-v2 10%");
    }

    #[test]
    fn thirds_round_to_one_decimal() {
        let lookup = cluster(&[
            ("web", facts(&[80], 0)),
            ("a", facts(&[80], 1)),
            ("b", facts(&[80], 1)),
            ("c", facts(&[80], 1)),
        ]);
        let r = resolve(&spec("web", &[("a", 1), ("b", 1), ("c", 1)]), true, lookup);
        assert!(r.backends.iter().all(|b| b.percent == "33.3%"));
        assert_eq!(r.summary, "a 33.3%, b 33.3%, c 33.3%");
    }

    #[test]
    fn apex_not_found() {
        let lookup = cluster(&[("web-v1", facts(&[80], 1))]);
        let r = resolve(&spec("web", &[("web-v1", 1)]), true, lookup);
        assert!(!r.resolved);
        assert_eq!(r.reason, ResolveReason::ApexNotFound);
        // without an apex there are no ports to compare; the backend itself is fine
        assert_eq!(r.backends[0].effective_weight, 1);
    }

    #[test]
    fn missing_backend_gets_nothing_and_its_weight_goes_to_the_others() {
        let lookup = cluster(&[("web", facts(&[80], 0)), ("web-v1", facts(&[80], 2))]);
        let r = resolve(
            &spec("web", &[("web-v1", 50), ("web-v2", 50)]),
            true,
            lookup,
        );
        assert_eq!(r.reason, ResolveReason::BackendNotFound);
        assert_eq!(r.backends[1].reason.as_deref(), Some("BackendNotFound"));
        assert_eq!(r.backends[1].effective_weight, 0);
        assert_eq!(r.backends[0].percent, "100%");
        assert_eq!(r.summary, "web-v1 100%");
        assert!(r.message.contains("backend web-v2: Service does not exist"));
    }

    #[test]
    fn port_mismatch() {
        let lookup = cluster(&[
            ("web", facts(&[80, 443], 0)),
            ("web-v1", facts(&[80, 443], 1)),
            ("web-v2", facts(&[80], 1)),
        ]);
        let r = resolve(&spec("web", &[("web-v1", 1), ("web-v2", 1)]), true, lookup);
        assert_eq!(r.reason, ResolveReason::PortMismatch);
        assert_eq!(r.backends[1].reason.as_deref(), Some("PortMismatch"));
        assert!(r.message.contains("443/TCP"), "{}", r.message);
        assert_eq!(r.backends[0].percent, "100%");
    }

    #[test]
    fn protocol_counts_in_a_port() {
        let mut udp = facts(&[], 1);
        udp.ports.push(PortKey {
            port: 53,
            protocol: "UDP".into(),
        });
        let mut tcp = facts(&[53], 0);
        tcp.ready_endpoints = 0;
        let lookup = cluster(&[("dns", tcp), ("dns-v2", udp)]);
        let r = resolve(&spec("dns", &[("dns-v2", 1)]), true, lookup);
        assert_eq!(r.reason, ResolveReason::PortMismatch);
    }

    #[test]
    fn no_ready_endpoints() {
        let lookup = cluster(&[
            ("web", facts(&[80], 0)),
            ("web-v1", facts(&[80], 0)),
            ("web-v2", facts(&[80], 0)),
        ]);
        let r = resolve(&spec("web", &[("web-v1", 1), ("web-v2", 1)]), true, lookup);
        assert_eq!(r.reason, ResolveReason::NoReadyEndpoints);
        assert_eq!(r.summary, "none");
        assert!(
            r.message.ends_with("no backend can take traffic"),
            "{}",
            r.message
        );
        assert!(r.backends.iter().all(|b| b.percent == "0%"));
    }

    #[test]
    fn the_most_fundamental_reason_wins() {
        let lookup = cluster(&[
            ("web", facts(&[80], 0)),
            ("empty", facts(&[80], 0)),
            ("wrong-port", facts(&[81], 1)),
        ]);
        let r = resolve(
            &spec("web", &[("empty", 1), ("wrong-port", 1), ("gone", 1)]),
            true,
            lookup,
        );
        assert_eq!(r.reason, ResolveReason::BackendNotFound);
        for name in ["backend empty:", "backend wrong-port:", "backend gone:"] {
            assert!(
                r.message.contains(name),
                "{name} missing from {}",
                r.message
            );
        }
    }

    #[test]
    fn a_split_that_is_not_accepted_routes_nothing() {
        let lookup = cluster(&[("web", facts(&[80], 0)), ("web-v1", facts(&[80], 1))]);
        let r = resolve(&spec("web", &[("web-v1", 1)]), false, lookup);
        assert!(r.resolved);
        assert_eq!(r.backends[0].effective_weight, 0);
        assert_eq!(r.summary, "not accepted");
    }

    #[test]
    fn shares_round_half_up() {
        assert_eq!(share_permille(1, 3), 333);
        assert_eq!(share_permille(2, 3), 667);
        assert_eq!(share_permille(1, 8), 125);
        assert_eq!(share_permille(5, 0), 0);
        assert_eq!(short_percent(1000), "100");
    }
}

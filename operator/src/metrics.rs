//! The operator's own Prometheus metrics, served on the admin server's `/metrics`.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicI64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `identity`, `mesh_policy`, `traffic_split`.
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabels {
    /// The Identity's name.
    pub identity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The wire reason (`weft_wire::identity::refusal`), e.g. `IdentityMismatch`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrustDomainLabels {
    pub trust_domain: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    issuances: Family<IdentityLabels, Counter>,
    issuer_expiry: Family<IdentityLabels, Gauge<i64, AtomicI64>>,
    leader: Gauge<i64, AtomicI64>,
    certified: Counter,
    certify_refused: Family<RefusalLabels, Counter>,
    service_issuer_expiry: Family<TrustDomainLabels, Gauge<i64, AtomicI64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weft_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let issuances = Family::<IdentityLabels, Counter>::default();
        let issuer_expiry = Family::<IdentityLabels, Gauge<i64, AtomicI64>>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "reconciles",
            "Reconciliations run, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed and were retried, by controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "issuer_issuances",
            "Issuer certificates issued, by Identity",
            issuances.clone(),
        );
        registry.register(
            "issuer_expiration_timestamp_seconds",
            "When the current issuer certificate of each Identity expires (Unix seconds)",
            issuer_expiry.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controllers",
            leader.clone(),
        );
        let certified = Counter::default();
        let certify_refused = Family::<RefusalLabels, Counter>::default();
        let service_issuer_expiry = Family::<TrustDomainLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "identity_certify",
            "Leaf certificates the identity service issued to proxies",
            certified.clone(),
        );
        registry.register(
            "identity_certify_refused",
            "Certify calls the identity service refused, by reason",
            certify_refused.clone(),
        );
        registry.register(
            "identity_service_issuer_expiration_timestamp_seconds",
            "When the issuer the identity service signs with expires, by trust domain (Unix seconds)",
            service_issuer_expiry.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            issuances,
            issuer_expiry,
            leader,
            certified,
            certify_refused,
            service_issuer_expiry,
        }
    }

    pub fn reconciled(&self, controller: &str) {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .inc();
    }

    pub fn reconcile_failed(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .inc();
    }

    pub fn issued(&self, identity: &str) {
        self.issuances
            .get_or_create(&IdentityLabels {
                identity: identity.to_string(),
            })
            .inc();
    }

    pub fn issuer_expires_at(&self, identity: &str, unix_seconds: i64) {
        self.issuer_expiry
            .get_or_create(&IdentityLabels {
                identity: identity.to_string(),
            })
            .set(unix_seconds);
    }

    pub fn forget_identity(&self, identity: &str) {
        let labels = IdentityLabels {
            identity: identity.to_string(),
        };
        self.issuer_expiry.remove(&labels);
        self.issuances.remove(&labels);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The identity service issued a leaf.
    pub fn certified(&self) {
        self.certified.inc();
    }

    /// The identity service refused a certify call for `reason`.
    pub fn certify_refused(&self, reason: &str) {
        self.certify_refused
            .get_or_create(&RefusalLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Shows `reason` at zero before the first refusal, so rates work from the start.
    pub fn declare_certify_refusal(&self, reason: &str) {
        let _ = self.certify_refused.get_or_create(&RefusalLabels {
            reason: reason.to_string(),
        });
    }

    /// The identity service signs for `trust_domain` with an issuer that expires at `unix_seconds`.
    pub fn service_issuer_expires_at(&self, trust_domain: &str, unix_seconds: i64) {
        self.service_issuer_expiry
            .get_or_create(&TrustDomainLabels {
                trust_domain: trust_domain.to_string(),
            })
            .set(unix_seconds);
    }

    /// The identity service no longer has an issuer for `trust_domain`.
    pub fn forget_service_issuer(&self, trust_domain: &str) {
        self.service_issuer_expiry.remove(&TrustDomainLabels {
            trust_domain: trust_domain.to_string(),
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let metrics = Metrics::new();
        metrics.reconciled("identity");
        metrics.issued("mesh");
        metrics.issuer_expires_at("mesh", 1_800_000_000);
        metrics.set_leader(true);
        let text = metrics.render();
        assert!(
            text.contains("weft_operator_reconciles_total{controller=\"identity\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weft_operator_issuer_issuances_total{identity=\"mesh\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "weft_operator_issuer_expiration_timestamp_seconds{identity=\"mesh\"} 1800000000"
        ));
        assert!(text.contains("weft_operator_leader 1"));
    }

    #[test]
    fn renders_identity_service_counters() {
        let metrics = Metrics::new();
        metrics.declare_certify_refusal("RateLimited");
        metrics.certify_refused("IdentityMismatch");
        metrics.certified();
        metrics.service_issuer_expires_at("cluster.local", 1_800_000_000);
        let text = metrics.render();
        assert!(
            text.contains("weft_operator_identity_certify_total 1"),
            "{text}"
        );
        assert!(text.contains(
            "weft_operator_identity_certify_refused_total{reason=\"IdentityMismatch\"} 1"
        ));
        assert!(
            text.contains("weft_operator_identity_certify_refused_total{reason=\"RateLimited\"} 0")
        );
        assert!(text.contains("weft_operator_identity_service_issuer_expiration_timestamp_seconds{trust_domain=\"cluster.local\"} 1800000000"));
        metrics.forget_service_issuer("cluster.local");
        assert!(!metrics.render().contains("trust_domain=\"cluster.local\""));
    }
}

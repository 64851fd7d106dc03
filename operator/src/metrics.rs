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

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    issuances: Family<IdentityLabels, Counter>,
    issuer_expiry: Family<IdentityLabels, Gauge<i64, AtomicI64>>,
    leader: Gauge<i64, AtomicI64>,
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
        Self {
            registry,
            reconciles,
            reconcile_errors,
            issuances,
            issuer_expiry,
            leader,
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
}

//! `status.conditions` in the shape of `metav1.Condition`, shared by every weft resource.
//!
//! We mirror the upstream type instead of embedding k8s-openapi's because that one has
//! no JSON schema for the CRD generator.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One aspect of a resource's state, as `kubectl describe` and `kubectl wait --for=condition=...` read it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes, in CamelCase (e.g. `Ready`, `Issuing`, `Accepted`, `ResolvedRefs`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the aspect holds: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A machine-readable CamelCase reason for the last transition (e.g. `Issued`, `AnchorExpired`).
    pub reason: String,
    /// A human-readable explanation of the last transition (may be empty).
    // No `#[serde(default)]`: its schema `default: ''` is read as null by apiserver 1.20, which then
    // rejects the whole CRD. The operator always writes the field.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The three values Kubernetes allows for a condition's status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

impl Condition {
    /// A condition stamped with `now` (RFC 3339) as its transition time.
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: &str,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: now.to_string(),
            observed_generation,
        }
    }
}

/// Puts `new` into `conditions`, replacing the condition of the same type. The previous
/// `lastTransitionTime` is kept when the status did not change, as upstream's
/// `meta.SetStatusCondition` does, so `kubectl` shows how long a state has held.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = std::mem::take(&mut existing.last_transition_time);
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, reason: &str, at: &str) -> Condition {
        Condition::new("Ready", status, reason, "", Some(1), at)
    }

    #[test]
    fn keeps_transition_time_when_status_holds() {
        let mut conditions = vec![cond(ConditionStatus::True, "Issued", "t1")];
        set_condition(
            &mut conditions,
            cond(ConditionStatus::True, "Renewed", "t2"),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "Renewed");
        assert_eq!(conditions[0].last_transition_time, "t1");
    }

    #[test]
    fn moves_transition_time_when_status_changes() {
        let mut conditions = vec![cond(ConditionStatus::True, "Issued", "t1")];
        set_condition(
            &mut conditions,
            cond(ConditionStatus::False, "AnchorExpired", "t2"),
        );
        assert_eq!(conditions[0].last_transition_time, "t2");
        assert_eq!(conditions[0].status, ConditionStatus::False);
    }

    #[test]
    fn adds_new_types() {
        let mut conditions = vec![cond(ConditionStatus::True, "Issued", "t1")];
        let mut issuing = cond(ConditionStatus::False, "Idle", "t2");
        issuing.type_ = "Issuing".into();
        set_condition(&mut conditions, issuing);
        assert_eq!(conditions.len(), 2);
        assert!(find(&conditions, "Issuing").is_some());
    }
}

//! Turning a verdict into a status condition and, when it changes, an Event: a Warning when a resource
//! goes wrong (or goes wrong differently), a Normal one when it recovers. Used by the MeshPolicy and the
//! TrafficSplit controllers alike.

use crate::context::Context;
use kube::{
    Resource,
    runtime::events::{Event, EventType},
};
use tracing::warn;
use weft_crds::{Condition, ConditionStatus, condition::set_condition};

/// The Event a condition change deserves, if any.
pub fn transition_event(old: Option<&Condition>, new: &Condition, action: &str) -> Option<Event> {
    let changed = old.is_none_or(|o| {
        o.status != new.status || o.reason != new.reason || o.message != new.message
    });
    if !changed {
        return None;
    }
    match new.status {
        ConditionStatus::False | ConditionStatus::Unknown => Some(Event {
            type_: EventType::Warning,
            reason: new.reason.clone(),
            note: Some(truncate_note(&new.message)),
            action: action.to_string(),
            secondary: None,
        }),
        // Only a recovery is news; a resource that was fine from the start needs no Event.
        ConditionStatus::True if old.is_some_and(|o| o.status != ConditionStatus::True) => {
            Some(Event {
                type_: EventType::Normal,
                reason: new.reason.clone(),
                note: Some(truncate_note(&new.message)),
                action: action.to_string(),
                secondary: None,
            })
        }
        ConditionStatus::True => None,
    }
}

/// Events notes are limited to 1 KiB.
fn truncate_note(message: &str) -> String {
    if message.len() <= 1024 {
        return message.to_string();
    }
    let mut cut = 1020;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &message[..cut])
}

/// Sets `new` in `conditions` (keeping the transition time when the status holds) and returns the Event
/// the change deserves.
pub fn update(conditions: &mut Vec<Condition>, new: Condition, action: &str) -> Option<Event> {
    let event = transition_event(
        weft_crds::condition::find(conditions, &new.type_),
        &new,
        action,
    );
    set_condition(conditions, new);
    event
}

/// Publishes `events` on `resource`. A failure is logged, never fatal: the status already says it all.
pub async fn publish<K>(ctx: &Context, resource: &K, events: Vec<Event>)
where
    K: Resource<DynamicType = ()>,
{
    let reference = resource.object_ref(&());
    for event in events {
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            warn!(%error, reason = %event.reason, "could not publish an Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, reason: &str, message: &str) -> Condition {
        Condition::new("Accepted", status, reason, message, Some(1), "t")
    }

    #[test]
    fn warns_on_every_new_problem() {
        let bad = cond(ConditionStatus::False, "Conflict", "older policy a");
        let event = transition_event(None, &bad, "Validate").expect("first failure warns");
        assert!(matches!(event.type_, EventType::Warning));
        assert_eq!(event.reason, "Conflict");
        let ok = cond(ConditionStatus::True, "Accepted", "");
        assert!(transition_event(Some(&ok), &bad, "Validate").is_some());
        let other = cond(ConditionStatus::False, "InvalidDuration", "x");
        assert!(transition_event(Some(&bad), &other, "Validate").is_some());
    }

    #[test]
    fn quiet_when_nothing_changed_or_fine_from_the_start() {
        let bad = cond(ConditionStatus::False, "Conflict", "older policy a");
        assert!(transition_event(Some(&bad), &bad.clone(), "Validate").is_none());
        let ok = cond(ConditionStatus::True, "Accepted", "");
        assert!(transition_event(None, &ok, "Validate").is_none());
    }

    #[test]
    fn recovery_is_a_normal_event() {
        let bad = cond(ConditionStatus::False, "Conflict", "older policy a");
        let ok = cond(ConditionStatus::True, "Accepted", "fine");
        let event = transition_event(Some(&bad), &ok, "Validate").expect("recovery");
        assert!(matches!(event.type_, EventType::Normal));
    }

    #[test]
    fn update_keeps_the_transition_time_and_reports() {
        let mut conditions = vec![Condition::new(
            "Accepted",
            ConditionStatus::True,
            "Accepted",
            "",
            Some(1),
            "t1",
        )];
        let event = update(
            &mut conditions,
            Condition::new(
                "Accepted",
                ConditionStatus::True,
                "Accepted",
                "",
                Some(2),
                "t2",
            ),
            "Validate",
        );
        assert!(event.is_none());
        assert_eq!(conditions[0].last_transition_time, "t1");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn long_notes_are_cut() {
        assert!(truncate_note(&"ü".repeat(2000)).len() <= 1024);
    }
}

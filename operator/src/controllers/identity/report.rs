//! What one reconcile tells the user: the Identity's status (built from the previous one, so unchanged
//! facts keep their transition times and an unchanged status is not rewritten) and the Events to publish.

use super::{anchors::Anchor, events::Publisher, pki::CertInfo};
use crate::{context::Context, status};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};
use weft_crds::{
    Condition, ConditionStatus, Identity,
    condition::{find, set_condition},
    identity::{AnchorStatus, IdentityStatus},
};

pub const READY: &str = "Ready";
pub const ISSUING: &str = "Issuing";

/// An Event waiting to be published after the status is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The status being built and the Events collected during one reconcile.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: IdentityStatus,
    previous: IdentityStatus,
    generation: Option<i64>,
    now: String,
    pub events: Vec<PendingEvent>,
}

impl Report {
    pub fn new(identity: &Identity, now: Timestamp) -> Self {
        let previous = identity.status.clone().unwrap_or_default();
        let mut status = previous.clone();
        status.observed_generation = identity.metadata.generation;
        Self {
            status,
            previous,
            generation: identity.metadata.generation,
            now: rfc3339(now),
            events: Vec::new(),
        }
    }

    /// The status before this reconcile.
    pub fn previous(&self) -> &IdentityStatus {
        &self.previous
    }

    fn condition(&mut self, type_: &str, status: ConditionStatus, reason: &str, message: String) {
        let condition = Condition::new(type_, status, reason, message, self.generation, &self.now);
        set_condition(&mut self.status.conditions, condition);
    }

    /// `Ready=True`, with a Normal Event when it was `False` before.
    pub fn ready(&mut self, reason: &str, message: String) {
        let recovered = find(&self.previous.conditions, READY)
            .is_some_and(|c| c.status == ConditionStatus::False);
        if recovered {
            self.normal("Recovered", message.clone());
        }
        self.condition(READY, ConditionStatus::True, reason, message);
    }

    /// `Ready=False` with a Warning Event the first time this reason and message are reported, and
    /// `lastFailureTime` stamped then.
    pub fn not_ready(&mut self, reason: &str, message: String) {
        let repeated = find(&self.previous.conditions, READY).is_some_and(|c| {
            c.status == ConditionStatus::False && c.reason == reason && c.message == message
        });
        if !repeated {
            self.status.last_failure_time = Some(self.now.clone());
            self.warn(reason, message.clone());
        }
        self.condition(READY, ConditionStatus::False, reason, message);
    }

    /// `Issuing=True`: an issuance is under way.
    pub fn issuing(&mut self, reason: &str, message: String) {
        self.condition(ISSUING, ConditionStatus::True, reason, message);
    }

    /// `Issuing=False`.
    pub fn not_issuing(&mut self, reason: &str, message: String) {
        self.condition(ISSUING, ConditionStatus::False, reason, message);
    }

    /// Records a failed issuance attempt.
    pub fn issuance_failed(&mut self, message: String) {
        self.status.last_failure_time = Some(self.now.clone());
        self.not_issuing("Failed", message.clone());
        self.warn("IssuanceFailed", message);
    }

    /// The issuer now in place.
    pub fn issuer(
        &mut self,
        cert: &CertInfo,
        revision: Option<i64>,
        renewal_time: Option<Timestamp>,
    ) {
        self.status.not_before = Some(rfc3339(cert.not_before));
        self.status.not_after = Some(rfc3339(cert.not_after));
        self.status.renewal_time = renewal_time.map(rfc3339);
        self.status.revision = revision;
    }

    /// No usable issuer in place.
    pub fn no_issuer(&mut self) {
        self.status.not_before = None;
        self.status.not_after = None;
        self.status.renewal_time = None;
    }

    pub fn anchors(&mut self, anchors: &[Anchor]) {
        self.status.anchors = anchors
            .iter()
            .map(|a| AnchorStatus {
                fingerprint: a.cert.fingerprint.clone(),
                subject: a.cert.subject.clone(),
                not_after: rfc3339(a.cert.not_after),
                signing: a.signing,
                source: a.source.to_string(),
            })
            .collect();
    }

    /// What still serves while something is wrong, for `Ready=False` messages.
    pub fn still_serving(&self) -> String {
        match (&self.status.not_after, &self.status.revision) {
            (Some(not_after), Some(revision)) => {
                format!(
                    "the current issuer (revision {revision}, valid until {not_after}) keeps serving until this is fixed"
                )
            }
            (Some(not_after), None) => {
                format!(
                    "the current issuer (valid until {not_after}) keeps serving until this is fixed"
                )
            }
            _ => "no issuer is in place".to_string(),
        }
    }

    /// Warns when the issuer in status is past its renewal time (or expired) while something keeps the
    /// operator from renewing it: the mesh is heading for an outage.
    pub fn warn_if_overdue(&mut self, now: Timestamp) {
        let parse = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        let Some(not_after) = parse(&self.status.not_after) else {
            return;
        };
        let renewal = parse(&self.status.renewal_time);
        if now > not_after {
            self.warn(
                "IssuerExpired",
                format!(
                    "the issuer expired at {}; proxies cannot renew their certificates",
                    rfc3339(not_after)
                ),
            );
        } else if renewal.is_some_and(|renewal| now >= renewal) {
            self.warn(
                "IssuerExpiringSoon",
                format!(
                    "the issuer expires at {} and cannot be renewed until the problem is fixed",
                    rfc3339(not_after)
                ),
            );
        }
    }

    pub fn normal(&mut self, reason: &str, note: String) {
        self.events.push(PendingEvent {
            warning: false,
            reason: reason.to_string(),
            note,
        });
    }

    pub fn warn(&mut self, reason: &str, note: String) {
        self.events.push(PendingEvent {
            warning: true,
            reason: reason.to_string(),
            note,
        });
    }

    /// Writes the status (server-side apply; a no-op on the server when nothing changed).
    pub async fn write_status(
        &self,
        ctx: &Context,
        identity: &Identity,
    ) -> Result<(), kube::Error> {
        let api = Api::<Identity>::all(ctx.client.clone());
        status::apply(&api, &identity.name_any(), &self.status)
            .await
            .map(|_| ())
    }

    /// Publishes the collected Events and forgets them. A failed Event is logged, never fatal.
    pub async fn publish_events(&mut self, events: &Publisher, identity: &Identity) {
        for pending in self.events.drain(..) {
            if pending.warning {
                tracing::warn!(reason = %pending.reason, "{}", pending.note);
            } else {
                tracing::info!(reason = %pending.reason, "{}", pending.note);
            }
            let note = truncate(&pending.note, 1000);
            events
                .publish(identity, pending.warning, &pending.reason, &note)
                .await;
        }
    }
}

/// RFC 3339 with second precision, as Kubernetes writes timestamps.
pub fn rfc3339(t: Timestamp) -> String {
    t.round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(t)
        .to_string()
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_crds::identity::IdentitySpec;

    fn identity(status: Option<IdentityStatus>) -> Identity {
        let mut identity = Identity::new(
            "mesh",
            IdentitySpec {
                trust_domain: "cluster.local".into(),
                trust_anchor: Default::default(),
                additional_trust_anchors: vec![],
                issuer: Default::default(),
                leaf: Default::default(),
            },
        );
        identity.metadata.generation = Some(2);
        identity.status = status;
        identity
    }

    #[test]
    fn a_new_failure_warns_once() {
        let now = Timestamp::from_second(1_800_000_000).expect("in range");
        let mut first = Report::new(&identity(None), now);
        first.not_ready("AnchorNotFound", "weft-system/a does not exist".into());
        assert_eq!(first.events.len(), 1);
        assert!(first.events[0].warning);
        assert_eq!(
            first.status.last_failure_time.as_deref(),
            Some("2027-01-15T08:00:00Z")
        );
        assert_eq!(first.status.observed_generation, Some(2));

        let later = Timestamp::from_second(1_800_000_060).expect("in range");
        let mut second = Report::new(&identity(Some(first.status.clone())), later);
        second.not_ready("AnchorNotFound", "weft-system/a does not exist".into());
        assert!(
            second.events.is_empty(),
            "the same failure is not announced again"
        );
        assert_eq!(
            second.status, first.status,
            "an unchanged failure leaves the status as it was"
        );
    }

    #[test]
    fn recovery_moves_the_transition_time() {
        let now = Timestamp::from_second(1_800_000_000).expect("in range");
        let mut failing = Report::new(&identity(None), now);
        failing.not_ready("AnchorExpired", "expired".into());
        let later = Timestamp::from_second(1_800_000_100).expect("in range");
        let mut fixed = Report::new(&identity(Some(failing.status)), later);
        fixed.ready("Issued", "ok".into());
        assert_eq!(fixed.events.len(), 1);
        assert_eq!(fixed.events[0].reason, "Recovered");
        let ready = find(&fixed.status.conditions, READY).expect("Ready");
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.last_transition_time, "2027-01-15T08:01:40Z");
    }

    #[test]
    fn an_issuer_that_cannot_be_renewed_is_announced() {
        let status = IdentityStatus {
            not_after: Some("2027-01-15T08:00:30Z".into()),
            renewal_time: Some("2027-01-15T08:00:15Z".into()),
            ..IdentityStatus::default()
        };
        let at = |s| Timestamp::from_second(s).expect("in range");
        let mut report = Report::new(&identity(Some(status.clone())), at(1_800_000_000));
        report.warn_if_overdue(at(1_800_000_000));
        assert!(
            report.events.is_empty(),
            "before the renewal time all is well"
        );
        report.warn_if_overdue(at(1_800_000_020));
        assert_eq!(
            report.events.pop().map(|e| e.reason).as_deref(),
            Some("IssuerExpiringSoon")
        );
        report.warn_if_overdue(at(1_800_000_031));
        assert_eq!(
            report.events.pop().map(|e| e.reason).as_deref(),
            Some("IssuerExpired")
        );
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let text = "é".repeat(600);
        let cut = truncate(&text, 1000);
        assert!(cut.len() <= 1003);
        assert!(cut.ends_with('…'));
    }
}

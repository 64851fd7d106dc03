//! One reconcile of an Identity: check the spec, read the anchors, publish the trust bundle, then bring
//! the issuer in line (managed) or check it (external), and report it all in status and Events.

use super::{
    Error, Shared, anchors, bundle, external, managed,
    managed::{RETRY_PROBLEM, until},
    report::{Report, rfc3339},
    settings::{IssuerMode, Settings},
};
use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt, runtime::controller::Action};
use std::{sync::Arc, time::Duration};
use tracing::Instrument;
use weft_crds::Identity;

/// Every Identity is looked at again at least this often, whatever the watches say: a missed watch event
/// must not leave an issuer unrenewed (Linkerd's 2026 outage, linkerd2#15109, was a missed file event).
pub const RESYNC: Duration = Duration::from_secs(600);

/// The kube-runtime reconciler.
pub async fn reconcile(identity: Arc<Identity>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let span = tracing::info_span!("reconcile", identity = %identity.name_any());
    reconcile_inner(&identity, &ctx).instrument(span).await
}

async fn reconcile_inner(identity: &Identity, ctx: &Shared) -> Result<Action, Error> {
    ctx.metrics.reconciled("identity");
    if identity.metadata.deletion_timestamp.is_some() {
        // Its Secrets and ConfigMap go with it (owner references).
        ctx.metrics.forget_identity(&identity.name_any());
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let mut report = Report::new(identity, now);
    let next = match Settings::from_spec(&identity.name_any(), &identity.spec, &ctx.namespace) {
        Err(error) => {
            let message = format!("{error}; {}", report.still_serving());
            report.not_ready(error.reason(), message);
            report.not_issuing("InvalidSpec", "no issuance until the spec is fixed".into());
            report.warn_if_overdue(now);
            RETRY_PROBLEM
        }
        Ok(settings) => with_settings(ctx, identity, &settings, now, &mut report).await?,
    };
    // Events first: whoever sees the new status finds the Events that explain it.
    report.publish_events(&ctx.events, identity).await;
    report.write_status(ctx, identity).await?;
    let next = next.min(RESYNC);
    tracing::debug!(requeue_in = ?next, "reconciled");
    Ok(Action::requeue(next))
}

async fn with_settings(
    ctx: &Shared,
    identity: &Identity,
    settings: &Settings,
    now: Timestamp,
    report: &mut Report,
) -> Result<Duration, Error> {
    report.status.mode = Some(settings.issuer.name().to_string());
    report.status.issuer_secret = Some(settings.issuer.secret().to_string());

    let anchors = anchors::load(ctx, identity, settings, now).await?;
    if let Some(note) = &anchors.generated {
        report.normal("TrustAnchorGenerated", note.clone());
    }
    for gone in &anchors.expired {
        report.warn(
            "AnchorExpired",
            format!(
                "additional trust anchor {} ({}) from {} expired at {} and is left out of the trust bundle",
                gone.cert.subject,
                gone.cert.fingerprint,
                gone.source,
                rfc3339(gone.cert.not_after)
            ),
        );
    }

    let mut next = RESYNC;
    // The bundle goes first: proxies learn a new anchor before any issuer signed by it appears.
    if let Some(bundle) = anchors.bundle() {
        bundle::publish(ctx, identity, &settings.bundle, &bundle).await?;
        report.status.trust_bundle = Some(settings.bundle.to_string());
        report.anchors(&bundle);
        for anchor in anchors::expiring_soon(&bundle, now) {
            report.warn(
                "AnchorExpiringSoon",
                format!(
                    "trust anchor {} ({}) from {} expires at {}: rotate it (add the new one to additionalTrustAnchors first)",
                    anchor.cert.subject,
                    anchor.cert.fingerprint,
                    anchor.source,
                    rfc3339(anchor.cert.not_after)
                ),
            );
        }
        // Wake when the first anchor expires, to drop it from the bundle and say so.
        if let Some(first) = bundle.iter().map(|a| a.cert.not_after).min() {
            next = next.min(until(now, first) + Duration::from_secs(1));
        }
    }

    let issuer_next = match &settings.issuer {
        IssuerMode::Managed(object) => {
            managed::reconcile(ctx, identity, settings, &anchors, object, now, report).await?
        }
        IssuerMode::External(object) => {
            external::reconcile(ctx, identity, &anchors, object, now, report).await?
        }
    };
    Ok(next.min(issuer_next))
}

/// The kube-runtime error policy: count, log, retry soon.
pub fn error_policy(identity: Arc<Identity>, error: &Error, ctx: Arc<Shared>) -> Action {
    crate::controllers::outcome::retry_after_failure(
        &ctx.metrics,
        "identity",
        identity.as_ref(),
        error,
    )
}

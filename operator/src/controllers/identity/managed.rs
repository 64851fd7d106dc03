//! Managed mode: the operator issues the issuer, keeps it in a `kubernetes.io/tls` Secret, and renews it.
//!
//! Order of writes in an issuance: status `Issuing=True`, then the whole Secret in one request (create, or
//! replace at the resourceVersion that was checked), then status `Ready=True` with the new revision. A crash
//! between the writes leaves either the old or the new Secret, each consistent; the revision lives on the
//! Secret too, so the next reconcile reports the truth.

use super::Shared;
use super::{
    anchors::{Anchors, Signing},
    bundle,
    objects::{self, written_for},
    pki,
    renewal::{self, ReissueReason, Verdict},
    report::Report,
    settings::{ObjectName, Settings},
};
use crate::context::FIELD_MANAGER;
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{Api, ResourceExt, api::PostParams};
use std::time::Duration;
use weft_crds::Identity;

/// How soon a problem that needs a human is looked at again (watches usually trigger sooner).
pub const RETRY_PROBLEM: Duration = Duration::from_secs(60);

/// Brings the issuer of `identity` in line; returns when to look again.
pub async fn reconcile(
    ctx: &Shared,
    identity: &Identity,
    settings: &Settings,
    anchors: &Anchors,
    object: &ObjectName,
    now: Timestamp,
    report: &mut Report,
) -> Result<Duration, super::Error> {
    let name = identity.name_any();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &object.namespace);
    let existing = api.get_opt(&object.name).await?;
    if let Some(secret) = &existing
        && !written_for(&secret.metadata, &name)
    {
        report.no_issuer();
        report.not_ready(
            "IssuerSecretConflict",
            format!(
                "{object} exists but was not written by weft for this Identity (no label {}={name}); \
                 delete it or choose another spec.issuer.secretName",
                objects::LABEL_IDENTITY
            ),
        );
        return Ok(RETRY_PROBLEM);
    }

    let contents = existing.as_ref().map(objects::secret_contents);
    let current = contents.as_ref().map(renewal::inspect);
    let recorded_revision = contents.as_ref().and_then(|c| c.revision);
    // The revision survives a lost status write (it is on the Secret) and a deleted Secret (it is in status).
    let revision = recorded_revision
        .max(report.previous().revision)
        .unwrap_or(0);

    match &current {
        Some(Ok(view)) => {
            let renewal = renewal::renewal_time(
                view.cert().not_before,
                view.cert().not_after,
                settings.renew_before,
            );
            report.issuer(
                view.cert(),
                recorded_revision.or(report.previous().revision),
                Some(renewal),
            );
            ctx.metrics
                .issuer_expires_at(&name, view.cert().not_after.as_second());
        }
        _ => report.no_issuer(),
    }

    let anchor = match &anchors.signing {
        Ok(Signing::WithKey(anchor)) => anchor,
        Ok(Signing::CertOnly(_)) => {
            // Settings never ask for a key-less anchor in managed mode; say so rather than panic.
            let message = format!(
                "the trust anchor has no key to sign with; {}",
                report.still_serving()
            );
            report.not_ready("AnchorInvalid", message);
            return Ok(RETRY_PROBLEM);
        }
        Err(problem) => {
            let message = format!("{problem}; {}", report.still_serving());
            report.not_ready(&problem.reason(), message);
            report.not_issuing(
                "AnchorUnusable",
                "no issuance while the trust anchor is unusable".into(),
            );
            report.warn_if_overdue(now);
            return Ok(RETRY_PROBLEM);
        }
    };

    let spec_hash = settings.issuer_spec_hash();
    let verdict = renewal::decide(
        current.as_ref(),
        contents.as_ref().and_then(|c| c.spec_hash.as_deref()),
        &anchor.cert,
        &spec_hash,
        settings.renew_before,
        now,
    );
    let reason = match verdict {
        Verdict::Keep { renewal_time } => {
            match anchors.problem() {
                Some(problem) => {
                    let message = format!("{problem}; {}", report.still_serving());
                    report.not_ready(&problem.reason(), message);
                }
                None => report.ready("Issued", issued_message(report)),
            }
            report.not_issuing(
                "Idle",
                format!("next renewal at {}", super::report::rfc3339(renewal_time)),
            );
            return Ok(until(now, renewal_time));
        }
        Verdict::Reissue(reason) => reason,
    };

    // While a trusted anchor is broken the bundle cannot be updated: sign only with an anchor the
    // published bundle already has, or proxies would reject the new issuer.
    if let Some(problem) = anchors.problem()
        && !bundle::published_contains(ctx, &settings.bundle, &anchor.cert.fingerprint).await?
    {
        let message = format!(
            "{problem}; not issuing under anchor {} until the trust bundle can include it; {}",
            anchor.cert.fingerprint,
            report.still_serving()
        );
        report.not_ready(&problem.reason(), message);
        report.warn_if_overdue(now);
        return Ok(RETRY_PROBLEM);
    }

    issue(
        ctx, identity, settings, anchor, object, &api, existing, revision, &spec_hash, reason, now,
        report,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    ctx: &Shared,
    identity: &Identity,
    settings: &Settings,
    anchor: &pki::SigningAnchor,
    object: &ObjectName,
    api: &Api<Secret>,
    existing: Option<Secret>,
    revision: i64,
    spec_hash: &str,
    reason: ReissueReason,
    now: Timestamp,
    report: &mut Report,
) -> Result<Duration, super::Error> {
    let name = identity.name_any();
    let next_revision = revision + 1;
    tracing::info!(secret = %object, revision = next_revision, reason = reason.reason(), "issuing: {}", reason.message());
    report.issuing(reason.reason(), reason.message());
    report.normal(
        "Issuing",
        format!("issuing revision {next_revision}: {}", reason.message()),
    );
    // Events first: whoever sees the new status finds the Events that explain it.
    report.publish_events(&ctx.events, identity).await;
    report.write_status(ctx, identity).await?;

    let (not_before, not_after, capped) = renewal::validity_window(
        now,
        settings.duration,
        settings.clock_skew_allowance,
        anchor.cert.not_after,
    );
    let issued = match pki::issue_issuer(
        anchor,
        &settings.trust_domain,
        settings.key_algorithm,
        now,
        not_before,
        not_after,
    ) {
        Ok(issued) => issued,
        Err(error) => {
            report.issuance_failed(format!("cannot issue: {error}; {}", report.still_serving()));
            return Err(error.into());
        }
    };
    let mut secret = objects::issuer_secret(
        identity,
        object,
        &anchor.cert,
        &issued,
        next_revision,
        spec_hash,
    );
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let written = match existing {
        None => api.create(&params, &secret).await,
        Some(old) => {
            // Replace exactly the Secret that was checked; if it changed since, the write fails and the
            // next reconcile looks again.
            secret.metadata.resource_version = old.metadata.resource_version;
            api.replace(&object.name, &params, &secret).await
        }
    };
    if let Err(error) = written {
        report.issuance_failed(format!(
            "cannot write {object}: {error}; {}",
            report.still_serving()
        ));
        return Err(error.into());
    }

    ctx.metrics.issued(&name);
    ctx.metrics
        .issuer_expires_at(&name, issued.cert.not_after.as_second());
    let renewal_time = renewal::renewal_time(
        issued.cert.not_before,
        issued.cert.not_after,
        settings.renew_before,
    );
    report.issuer(&issued.cert, Some(next_revision), Some(renewal_time));
    let message = issued_message(report);
    report.ready("Issued", message.clone());
    report.not_issuing("Issued", format!("issued revision {next_revision}"));
    report.normal("Issued", message);
    if capped {
        report.warn(
            "IssuerCappedByAnchor",
            format!(
                "the issuer expires with the trust anchor at {}, earlier than spec.issuer.duration asks: rotate the anchor",
                super::report::rfc3339(anchor.cert.not_after)
            ),
        );
    }
    tracing::info!(secret = %object, revision = next_revision, not_after = %issued.cert.not_after, renewal = %renewal_time, "issued");
    Ok(until(now, renewal_time))
}

fn issued_message(report: &Report) -> String {
    let status = &report.status;
    format!(
        "issuer revision {} valid until {}, renews at {}",
        status.revision.unwrap_or_default(),
        status.not_after.as_deref().unwrap_or("?"),
        status.renewal_time.as_deref().unwrap_or("?"),
    )
}

/// The wait from `now` until `then`, at least a moment (the clock may already be past it).
pub fn until(now: Timestamp, then: Timestamp) -> Duration {
    const MIN: Duration = Duration::from_millis(200);
    let wait = then.duration_since(now);
    Duration::try_from(wait).unwrap_or(Duration::ZERO).max(MIN)
}

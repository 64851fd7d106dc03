//! Reading what the Identity controller wrote: the Identity's status, its issuer Secret and its
//! trust bundle, with the certificate checks of [`crate::pki`].

use crate::{cluster::OPERATOR_NAMESPACE, pki};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::{Api, Client, api::ListParams};
use weft_crds::{Identity, condition};

/// Seconds since the epoch of an RFC 3339 timestamp.
pub fn unix(rfc3339: &str) -> Result<i64, String> {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("bad timestamp {rfc3339:?}: {e}"))
}

pub async fn get(client: &Client, name: &str) -> Result<Identity, String> {
    Api::<Identity>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| format!("get identity {name}: {e}"))
}

/// `(status, reason)` of the condition `type_`, if present.
pub fn condition(identity: &Identity, type_: &str) -> Option<(String, String)> {
    let status = identity.status.as_ref()?;
    let c = condition::find(&status.conditions, type_)?;
    Some((format!("{:?}", c.status), c.reason.clone()))
}

pub fn is_ready(identity: &Identity) -> bool {
    condition(identity, "Ready").is_some_and(|(s, _)| s == "True")
}

pub fn revision(identity: &Identity) -> i64 {
    identity
        .status
        .as_ref()
        .and_then(|s| s.revision)
        .unwrap_or(0)
}

/// Splits `namespace/name`.
fn ns_name(reference: &str) -> Result<(&str, &str), String> {
    reference
        .split_once('/')
        .ok_or_else(|| format!("not namespace/name: {reference}"))
}

pub async fn secret(client: &Client, namespace: &str, name: &str) -> Result<Secret, String> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| format!("get secret {namespace}/{name}: {e}"))
}

pub fn secret_text(secret: &Secret, key: &str) -> Result<String, String> {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("secret lacks {key}"))?;
    String::from_utf8(data.0.clone()).map_err(|_| format!("{key} is not UTF-8"))
}

/// The PEM trust bundle the Identity publishes (`ca-bundle.crt` of `status.trustBundle`).
pub async fn trust_bundle(client: &Client, identity: &Identity) -> Result<String, String> {
    let reference = identity
        .status
        .as_ref()
        .and_then(|s| s.trust_bundle.clone())
        .ok_or("status.trustBundle is unset")?;
    let (namespace, name) = ns_name(&reference)?;
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| format!("get configmap {reference}: {e}"))?;
    config_map
        .data
        .and_then(|d| d.get("ca-bundle.crt").cloned())
        .ok_or_else(|| format!("{reference} lacks ca-bundle.crt"))
}

/// What one consistent observation of an Identity and its issuer Secret shows.
#[derive(Debug, Clone)]
pub struct IssuerObservation {
    pub revision: i64,
    pub cert: pki::CertSummary,
}

/// The issuer Secret checked independently: tls.crt is a CA signed by an anchor of the published bundle,
/// tls.key matches it, and status.notAfter / renewalTime describe that certificate (renewalTime =
/// notAfter - renew_before). `Err` also when the Secret and the status are momentarily of different
/// revisions (the Secret is written before the status), so callers poll.
pub async fn observe_issuer(
    client: &Client,
    name: &str,
    renew_before_secs: i64,
) -> Result<IssuerObservation, String> {
    let identity = get(client, name).await?;
    let status = identity.status.as_ref().ok_or("no status yet")?;
    let reference = status
        .issuer_secret
        .clone()
        .ok_or("status.issuerSecret is unset")?;
    let (namespace, secret_name) = ns_name(&reference)?;
    let secret = secret(client, namespace, secret_name).await?;
    let secret_revision = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("weft.dev/revision"))
        .and_then(|r| r.parse::<i64>().ok());
    let revision = status.revision.ok_or("status.revision is unset")?;
    if secret_revision != Some(revision) {
        return Err(format!(
            "secret revision {secret_revision:?} != status revision {revision} (between writes)"
        ));
    }
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(format!("issuer secret type is {:?}", secret.type_));
    }
    let bundle = trust_bundle(client, &identity).await?;
    let cert = pki::check_issuer(
        &secret_text(&secret, "tls.crt")?,
        &secret_text(&secret, "tls.key")?,
        &bundle,
    )?;
    // ca.crt must be an anchor that signs the issuer too (cert-manager's layout)
    pki::check_issuer(
        &secret_text(&secret, "tls.crt")?,
        &secret_text(&secret, "tls.key")?,
        &secret_text(&secret, "ca.crt")?,
    )
    .map_err(|e| format!("ca.crt: {e}"))?;
    let not_after = unix(status.not_after.as_deref().ok_or("status.notAfter unset")?)?;
    let renewal = unix(
        status
            .renewal_time
            .as_deref()
            .ok_or("status.renewalTime unset")?,
    )?;
    let not_before = unix(
        status
            .not_before
            .as_deref()
            .ok_or("status.notBefore unset")?,
    )?;
    if not_after != cert.not_after || not_before != cert.not_before {
        return Err(format!(
            "status validity {not_before}..{not_after} != certificate {}..{}",
            cert.not_before, cert.not_after
        ));
    }
    if renewal != cert.not_after - renew_before_secs {
        return Err(format!(
            "renewalTime {renewal} != notAfter {} - renewBefore {renew_before_secs}",
            cert.not_after
        ));
    }
    Ok(IssuerObservation { revision, cert })
}

/// Every events.k8s.io/v1 Event about the Identity `name`, in any namespace.
pub async fn events(client: &Client, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::all(client.clone());
    api.list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|e| {
                    e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some("Identity") && r.name.as_deref() == Some(name)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The operator's namespace, where managed Secrets live.
pub fn operator_namespace() -> &'static str {
    OPERATOR_NAMESPACE
}

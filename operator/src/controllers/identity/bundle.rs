//! The trust bundle: a ConfigMap (`ca-bundle.crt`) with every anchor still valid, which proxies and the
//! identity service verify peers against. Written by server-side apply, so an unchanged bundle is a no-op.

use super::{
    anchors::{self, Anchor},
    objects::{self, BUNDLE_KEY},
    pki,
    settings::ObjectName,
};
use crate::context::{Context, FIELD_MANAGER};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use weft_crds::Identity;

/// Publishes `bundle` into `object`.
pub async fn publish(
    ctx: &Context,
    identity: &Identity,
    object: &ObjectName,
    bundle: &[Anchor],
) -> Result<(), kube::Error> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &object.namespace);
    let config_map = objects::bundle_config_map(identity, object, &anchors::bundle_pem(bundle));
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&object.name, &params, &Patch::Apply(&config_map))
        .await?;
    Ok(())
}

/// Whether the bundle published in `object` already trusts the anchor with `fingerprint` (used to decide
/// whether an issuer may be signed by it while the bundle cannot be updated).
pub async fn published_contains(
    ctx: &Context,
    object: &ObjectName,
    fingerprint: &str,
) -> Result<bool, kube::Error> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &object.namespace);
    let Some(config_map) = api.get_opt(&object.name).await? else {
        return Ok(false);
    };
    let pem = config_map
        .data
        .as_ref()
        .and_then(|d| d.get(BUNDLE_KEY))
        .cloned()
        .unwrap_or_default();
    Ok(pki::parse_certificates(pem.as_bytes())
        .map(|certs| certs.iter().any(|c| c.fingerprint == fingerprint))
        .unwrap_or(false))
}

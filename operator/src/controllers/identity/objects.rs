//! The Kubernetes objects the Identity controller writes (issuer Secret, generated anchor Secret, trust
//! bundle ConfigMap): their names, labels, annotations and content, built as whole objects so each write
//! replaces the object in one request.

use super::{
    pki::{CertInfo, Issued},
    renewal::SecretContents,
    settings::ObjectName,
};
use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use weft_crds::Identity;

/// Label on every object written for an Identity: its name. Also how the watch maps objects back.
pub const LABEL_IDENTITY: &str = "weft.dev/identity";
/// `app.kubernetes.io/managed-by: weft-operator`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// What the object is for: `issuer`, `trust-anchor`, `trust-bundle`.
pub const LABEL_COMPONENT: &str = "weft.dev/component";
/// The issuance count the issuer Secret was written at.
pub const ANNOTATION_REVISION: &str = "weft.dev/revision";
/// The hash of the spec fields the issuer was made from ([`super::settings::Settings::issuer_spec_hash`]).
pub const ANNOTATION_SPEC_HASH: &str = "weft.dev/spec-hash";

/// cert-manager's keys of a `kubernetes.io/tls` Secret.
pub const CA_CRT: &str = "ca.crt";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// The anchor key of a trust-anchor Secret.
pub const CA_KEY: &str = "ca.key";
/// The key of the trust bundle ConfigMap (Linkerd's name).
pub const BUNDLE_KEY: &str = "ca-bundle.crt";

fn meta(identity: &Identity, object: &ObjectName, component: &str) -> ObjectMeta {
    let labels = BTreeMap::from([
        (LABEL_IDENTITY.to_string(), identity.name_any()),
        (
            LABEL_MANAGED_BY.to_string(),
            crate::context::FIELD_MANAGER.to_string(),
        ),
        (LABEL_COMPONENT.to_string(), component.to_string()),
    ]);
    ObjectMeta {
        name: Some(object.name.clone()),
        namespace: Some(object.namespace.clone()),
        labels: Some(labels),
        // Deleted with the Identity (a namespaced dependent of a cluster-scoped owner is allowed).
        owner_references: identity.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// Whether `object` was written by the operator for `identity` (so it may be replaced).
pub fn written_for(object: &ObjectMeta, identity: &str) -> bool {
    object
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_IDENTITY))
        .is_some_and(|owner| owner == identity)
}

/// The issuer Secret for a new issuance: `ca.crt` = the signing anchor, `tls.crt` = the issuer,
/// `tls.key` = its key; revision and spec hash as annotations.
pub fn issuer_secret(
    identity: &Identity,
    object: &ObjectName,
    anchor: &CertInfo,
    issued: &Issued,
    revision: i64,
    spec_hash: &str,
) -> Secret {
    let mut metadata = meta(identity, object, "issuer");
    metadata.annotations = Some(BTreeMap::from([
        (ANNOTATION_REVISION.to_string(), revision.to_string()),
        (ANNOTATION_SPEC_HASH.to_string(), spec_hash.to_string()),
    ]));
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            (CA_CRT.to_string(), ByteString(anchor.pem().into_bytes())),
            (
                TLS_CRT.to_string(),
                ByteString(issued.cert_pem.clone().into_bytes()),
            ),
            (
                TLS_KEY.to_string(),
                ByteString(issued.key_pem.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// A generated trust anchor: `ca.crt` and `ca.key`, the shape a user's anchor Secret has too.
pub fn anchor_secret(identity: &Identity, object: &ObjectName, anchor: &Issued) -> Secret {
    Secret {
        metadata: meta(identity, object, "trust-anchor"),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([
            (
                CA_CRT.to_string(),
                ByteString(anchor.cert_pem.clone().into_bytes()),
            ),
            (
                CA_KEY.to_string(),
                ByteString(anchor.key_pem.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The trust bundle ConfigMap, applied by server-side apply.
pub fn bundle_config_map(identity: &Identity, object: &ObjectName, bundle_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(identity, object, "trust-bundle"),
        data: Some(BTreeMap::from([(
            BUNDLE_KEY.to_string(),
            bundle_pem.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

/// The value of `key` in a Secret.
pub fn secret_value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.as_slice())
}

/// An issuer Secret's certificate, key and annotations, unvalidated.
pub fn secret_contents(secret: &Secret) -> SecretContents {
    let annotation = |key: &str| {
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    SecretContents {
        tls_crt: secret_value(secret, TLS_CRT).map(<[u8]>::to_vec),
        tls_key: secret_value(secret, TLS_KEY).map(<[u8]>::to_vec),
        spec_hash: annotation(ANNOTATION_SPEC_HASH),
        revision: annotation(ANNOTATION_REVISION).and_then(|r| r.parse().ok()),
    }
}

/// `namespace/name` of an object for status and messages.
pub fn display_name<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

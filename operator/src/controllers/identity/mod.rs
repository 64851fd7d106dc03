//! The Identity controller: trust anchors, the trust bundle, and the issuer certificate with its rotation.
//!
//! - [`settings`]: the spec, checked (what the schema cannot say) and resolved;
//! - [`pki`]: certificates and keys: parse, check, generate (x509-parser, rcgen);
//! - [`renewal`]: when to renew, and whether the issuer in the Secret can stay;
//! - [`anchors`]: the signing and trusted anchors, read and checked; the generated anchor;
//! - [`bundle`]: the trust-bundle ConfigMap;
//! - [`managed`] / [`external`]: issuing and rotating the issuer / checking someone else's;
//! - [`objects`]: the Secrets and ConfigMap written, with their labels and annotations;
//! - [`report`]: status conditions and Events;
//! - [`reconcile`]: one pass over an Identity, tying the above together.

pub mod anchors;
pub mod bundle;
pub mod events;
pub mod external;
pub mod managed;
pub mod objects;
pub mod pki;
pub mod reconcile;
pub mod renewal;
pub mod report;
pub mod settings;

use crate::context::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use settings::{Settings, TrustedAnchorSource};
use std::sync::Arc;
use weft_crds::Identity;

/// What every reconcile of an Identity gets: the operator's [`Context`] and the Event publisher.
pub struct Shared {
    pub ctx: Context,
    pub events: events::Publisher,
}

impl std::ops::Deref for Shared {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// Why a reconcile failed (to be retried); problems with the user's input are reported in status instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificate: {0}")]
    Pki(#[from] pki::PkiError),
}

/// Runs the Identity controller until the process stops. Besides Identities it watches the Secrets and
/// ConfigMaps of the operator's namespace (metadata only: no key material is cached), so deleting or
/// editing an issuer, anchor or bundle triggers a reconcile at once.
pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let namespace = ctx.namespace.clone();
    let events = events::Publisher::new(client.clone(), ctx.instance.clone());
    let shared = Shared { ctx, events };
    let controller = Controller::new(
        Api::<Identity>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();

    let secrets = watcher::watcher(
        Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let config_maps = watcher::watcher(
        Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), &namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let (secret_store, secret_ns) = (store.clone(), namespace.clone());
    let (config_map_store, config_map_ns) = (store, namespace);

    let outcomes = controller
        .watches_stream(secrets, move |secret| {
            referring_identities(&secret_store, &secret_ns, &secret, Kind::Secret)
        })
        .watches_stream(config_maps, move |config_map| {
            referring_identities(
                &config_map_store,
                &config_map_ns,
                &config_map,
                Kind::ConfigMap,
            )
        })
        .run(
            reconcile::reconcile,
            reconcile::error_policy,
            Arc::new(shared),
        );
    crate::controllers::outcome::log_until_stopped("identity", outcomes).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    ConfigMap,
}

/// The Identities an object of the operator's namespace matters to: written for them (label), or named by
/// their spec (anchor, trusted anchor, external issuer, bundle).
fn referring_identities<K: Resource>(
    store: &Store<Identity>,
    namespace: &str,
    object: &K,
    kind: Kind,
) -> Vec<ObjectRef<Identity>> {
    let meta = object.meta();
    let (Some(name), object_ns) = (
        meta.name.as_deref(),
        meta.namespace.as_deref().unwrap_or(namespace),
    ) else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|identity| {
            if objects::written_for(meta, &identity.name_any()) {
                return true;
            }
            let Ok(settings) = Settings::from_spec(&identity.name_any(), &identity.spec, namespace) else {
                return false;
            };
            let is = |o: &settings::ObjectName| o.namespace == object_ns && o.name == name;
            match kind {
                Kind::Secret => {
                    is(settings.anchor.secret())
                        || is(settings.issuer.secret())
                        || settings.trusted.iter().any(|t| matches!(t, TrustedAnchorSource::Secret { object, .. } if is(object)))
                }
                Kind::ConfigMap => {
                    is(&settings.bundle)
                        || settings
                            .trusted
                            .iter()
                            .any(|t| matches!(t, TrustedAnchorSource::ConfigMap { object, .. } if is(object)))
                }
            }
        })
        .map(|identity| ObjectRef::from(identity.as_ref()))
        .collect()
}

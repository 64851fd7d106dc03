//! Events about Identities, published as core/v1 Events in the `default` namespace.
//!
//! Why not kube-runtime's `Recorder` (events.k8s.io/v1): an Identity is cluster-scoped, and kube-apiserver
//! 1.20 accepts a new-style Event about a cluster-scoped object only in `kube-system`; Recorder writes them
//! to `default` and gets 422. A core/v1 Event about a cluster-scoped object belongs in `default` on every
//! version, `kubectl describe identity` finds it there, and events.k8s.io/v1 readers see it too
//! (`regarding`, `reportingInstance`). A repeated Event bumps `count` instead of making a new object.

use crate::context::FIELD_MANAGER;
use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use parking_lot::Mutex;
use std::collections::HashMap;
use weft_crds::Identity;

/// Where Events about cluster-scoped objects live.
const EVENT_NAMESPACE: &str = "default";
/// An Event not repeated for this long is forgotten (a repeat then makes a new one).
const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    warning: bool,
    reason: String,
    note: String,
}

struct Seen {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events about Identities, counting repeats.
pub struct Publisher {
    api: Api<Event>,
    instance: String,
    seen: Mutex<HashMap<Key, Seen>>,
}

impl Publisher {
    /// `instance` is this replica (the Lease holder), recorded as `reportingInstance`.
    pub fn new(client: Client, instance: String) -> Self {
        Self {
            api: Api::namespaced(client, EVENT_NAMESPACE),
            instance,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes one Event about `identity`. Failures are logged: an Event is never worth a failed reconcile.
    pub async fn publish(&self, identity: &Identity, warning: bool, reason: &str, note: &str) {
        let now = Timestamp::now();
        let key = Key {
            uid: identity.uid().unwrap_or_default(),
            warning,
            reason: reason.to_string(),
            note: note.to_string(),
        };
        let repeat = {
            let mut seen = self.seen.lock();
            seen.retain(|_, s| now.duration_since(s.last).unsigned_abs() < FORGET_AFTER);
            seen.get(&key).map(|s| (s.name.clone(), s.count + 1))
        };
        let result = match repeat {
            Some((name, count)) => self.bump(&name, count, now).await.map(|()| (name, count)),
            None => self
                .create(identity, warning, reason, note, now)
                .await
                .map(|name| (name, 1)),
        };
        match result {
            Ok((name, count)) => {
                self.seen.lock().insert(
                    key,
                    Seen {
                        name,
                        count,
                        last: now,
                    },
                );
            }
            Err(error) => {
                // Forget it: the next publish creates a fresh Event rather than patching a missing one.
                self.seen.lock().remove(&key);
                tracing::warn!(%reason, %error, "cannot publish an Event");
            }
        }
    }

    async fn bump(&self, name: &str, count: i32, now: Timestamp) -> Result<(), kube::Error> {
        let patch = serde_json::json!({ "count": count, "lastTimestamp": Time(now) });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        self.api
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    async fn create(
        &self,
        identity: &Identity,
        warning: bool,
        reason: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<String, kube::Error> {
        let name = format!("{}.{:x}", identity.name_any(), now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(EVENT_NAMESPACE.to_string()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(Identity::api_version(&()).to_string()),
                kind: Some(Identity::kind(&()).to_string()),
                name: Some(identity.name_any()),
                uid: identity.uid(),
                resource_version: identity.resource_version(),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_string()),
            message: Some(note.to_string()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
            source: Some(EventSource {
                component: Some(FIELD_MANAGER.to_string()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            action: Some("Reconcile".to_string()),
            reporting_component: Some(FIELD_MANAGER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        self.api.create(&params, &event).await.map(|_| name)
    }
}

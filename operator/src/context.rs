//! What every controller shares.

use crate::metrics::Metrics;
use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};
use std::sync::Arc;

/// The field manager of every write the operator makes (status by server-side apply, Secrets, ConfigMaps),
/// so `kubectl get -o yaml --show-managed-fields` tells weft's fields from a user's.
pub const FIELD_MANAGER: &str = "weft-operator";

/// Shared state handed to every reconcile call.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    /// The namespace the operator runs in (`weft-system` when installed from `config/`); Secrets and
    /// ConfigMaps that belong to cluster-scoped resources (the Identity's issuer, anchors, bundle) live here
    /// unless a resource names another namespace.
    pub namespace: String,
    /// Publishes Events (events.k8s.io/v1) on the resources being reconciled.
    pub recorder: Recorder,
    /// This replica's name (the Lease holder), reported as the Events' `reportingInstance`.
    pub instance: String,
    /// The operator's metrics (`/metrics` on the admin server); controllers count reconciles and errors here.
    pub metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(client: Client, namespace: String, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| FIELD_MANAGER.to_string());
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(instance.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            namespace,
            recorder,
            instance,
            metrics: Arc::new(Metrics::new()),
        }
    }
}

//! What the controllers do with the outcome of a reconcile: log it, count failures, and when to
//! try again.

use futures::{Stream, StreamExt};
use kube::{
    Resource, ResourceExt,
    runtime::{
        controller::{self, Action},
        reflector::ObjectRef,
    },
};
use std::{fmt::Display, time::Duration};
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// When to retry after a failed reconcile (the API server refused a write, caches not ready).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// `namespace/name`, or `name` for a cluster-scoped object: how logs name an object.
pub fn object_key<K: Resource>(object: &K) -> String {
    match object.namespace() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

/// The error policy of every controller: count the failure, log why, retry soon.
pub fn retry_after_failure<K: Resource>(
    metrics: &Metrics,
    controller: &'static str,
    object: &K,
    error: &impl Display,
) -> Action {
    metrics.reconcile_failed(controller);
    warn!(
        controller,
        object = %object_key(object),
        %error,
        retry_in = ?RETRY_AFTER,
        "reconcile failed; retrying"
    );
    Action::requeue(RETRY_AFTER)
}

/// Drives a controller's outcome stream until it ends. Reconcile failures were logged by
/// [`retry_after_failure`] already and a trigger for a deleted object is expected; anything else
/// the controller reports (a broken watch, a queue error) is a warning.
pub async fn log_until_stopped<K, E, Q>(
    controller: &'static str,
    outcomes: impl Stream<Item = Result<(ObjectRef<K>, Action), controller::Error<E, Q>>>,
) where
    K: Resource,
    K::DynamicType: std::fmt::Debug,
    E: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    outcomes
        .for_each(|outcome| async move {
            match outcome {
                Ok((object, _)) => debug!(controller, object = %object, "reconciled"),
                Err(controller::Error::ReconcilerFailed(error, object)) => {
                    debug!(controller, object = %object, %error, "reconcile did not complete")
                }
                // A trigger for an object deleted meanwhile: expected, nothing to do.
                Err(controller::Error::ObjectNotFound(object)) => {
                    debug!(controller, object = %object, "object gone before its reconcile")
                }
                Err(error) => warn!(controller, %error, "controller"),
            }
        })
        .await;
}

//! Watch streams shared by the namespaced controllers.

use futures::{Stream, StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use serde::de::DeserializeOwned;
use std::{fmt::Debug, hash::Hash};

/// Watches every `K` of the cluster into `writer`'s cache, after `slim` removed what no reconcile
/// reads (in a cluster of many pods, that is most of the cache's memory), and yields each changed
/// object, for `Controller::watches_stream`.
pub fn cached<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    slim: impl FnMut(&mut K) + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .touched_objects()
}

/// Metadata no reconcile reads: server-side apply bookkeeping and annotations (often large:
/// `kubectl.kubernetes.io/last-applied-configuration`).
pub fn drop_unread_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
}

/// Watches every `K`, feeds `writer`'s cache, and turns each change into a trigger for that object AND
/// for every other `K` of its namespace, read from the cache the event was just applied to. Policies and
/// splits compete per namespace (the older one wins a target), so a loser must be re-judged when its
/// winner changes or goes.
pub fn with_namespace_siblings<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    siblings: Store<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .flat_map(move |event| {
            let triggers = match event {
                Ok(changed) => {
                    let mut triggers: Vec<_> = siblings
                        .state()
                        .iter()
                        .filter(|o| {
                            o.namespace() == changed.namespace()
                                && o.name_any() != changed.name_any()
                        })
                        .map(|o| Ok(K::clone(o)))
                        .collect();
                    triggers.push(Ok(changed));
                    triggers
                }
                Err(error) => vec![Err(error)],
            };
            stream::iter(triggers)
        })
}

//! Keeps the service's issuers current: watches Identities and the Secrets and ConfigMaps they name,
//! and re-reads them on every change AND on a timer (a missed watch event must not leave the service on
//! an old issuer: linkerd2#15109), at the latest when an issuer or a serving certificate is due.
//! The watches carry metadata only; key material is read with a GET when needed and kept in memory only
//! for the issuer in use.

use super::{
    issuers::{self, Domain, IssuerSet},
    serving_cert::{Change, ServingCerts},
};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use futures::{Stream, StreamExt};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, reflector, watcher},
};
use parking_lot::Mutex;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};
use tokio::{sync::Notify, task::AbortHandle};
use weft_crds::Identity;

/// The objects whose change means a reload: the issuer Secrets and bundle ConfigMaps of every Identity.
type Watched = Arc<Mutex<BTreeSet<(String, String)>>>;

pub struct Tracker {
    pub client: Client,
    /// The operator's namespace (where managed issuers and bundles live).
    pub namespace: String,
    pub resync: Duration,
    pub issuers: Arc<ArcSwap<IssuerSet>>,
    pub serving: Arc<ServingCerts>,
    pub metrics: Arc<Metrics>,
}

impl Tracker {
    /// Runs until the process stops.
    pub async fn run(self) {
        let wake = Arc::new(Notify::new());
        let watched: Watched = Arc::default();

        let (identities, writer) = reflector::store::<Identity>();
        let identity_events = watcher::watcher(
            Api::<Identity>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer);
        tokio::spawn(wake_on_each("Identities", identity_events, wake.clone()));
        tokio::spawn(self.watch_namespace::<Secret>(&self.namespace, &watched, &wake));
        tokio::spawn(self.watch_namespace::<ConfigMap>(&self.namespace, &watched, &wake));
        // Namespaces other than the operator's that hold an external issuer Secret.
        let mut elsewhere: HashMap<String, AbortHandle> = HashMap::new();

        let mut known_duplicates = BTreeSet::new();
        loop {
            let (next, namespaces) = self
                .reload(&identities, &watched, &mut known_duplicates)
                .await;
            elsewhere.retain(|namespace, task| {
                let keep = namespaces.contains(namespace);
                if !keep {
                    task.abort();
                }
                keep
            });
            for namespace in namespaces {
                if namespace != self.namespace && !elsewhere.contains_key(&namespace) {
                    let task =
                        tokio::spawn(self.watch_namespace::<Secret>(&namespace, &watched, &wake));
                    elsewhere.insert(namespace, task.abort_handle());
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(next) => {
                    tracing::debug!("identity service: timed re-read of the issuers");
                }
            }
        }
    }

    /// A metadata watch of `K` in `namespace` that wakes the reload loop when a watched object changes.
    fn watch_namespace<K>(
        &self,
        namespace: &str,
        watched: &Watched,
        wake: &Arc<Notify>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let api = Api::<PartialObjectMeta<K>>::namespaced(self.client.clone(), namespace);
        let (watched, wake, namespace) = (watched.clone(), wake.clone(), namespace.to_string());
        async move {
            let events = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .touched_objects();
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(object) => {
                        let key = (
                            object.namespace().unwrap_or_else(|| namespace.clone()),
                            object.name_any(),
                        );
                        if watched.lock().contains(&key) {
                            wake.notify_one();
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%namespace, kind = K::kind(&()).as_ref(), %error, "identity service: watch failed; the timed re-read still applies");
                    }
                }
            }
        }
    }

    /// Reads every Identity's issuer and swaps the new set in; returns how long until the next timed
    /// re-read and the namespaces holding issuer Secrets.
    async fn reload(
        &self,
        identities: &reflector::Store<Identity>,
        watched: &Watched,
        known_duplicates: &mut BTreeSet<String>,
    ) -> (Duration, BTreeSet<String>) {
        let previous = self.issuers.load_full();
        let mut identities = identities.state();
        identities.sort_by_key(|identity| identity.name_any());
        let mut next = IssuerSet::default();
        let mut objects = BTreeSet::new();
        let mut duplicates = BTreeSet::new();
        for identity in identities {
            if identity.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = identity.name_any();
            let trust_domain = identity.spec.trust_domain.clone();
            if let Some(first) = next.domains.get(&trust_domain) {
                duplicates.insert(format!(
                    "{trust_domain} (Identities {} and {name})",
                    first.identity
                ));
                continue;
            }
            let issuer = match self.read(&identity, &mut objects).await {
                Ok(issuer) => issuer.map(Arc::new),
                Err(api_error) => {
                    // The API server did not answer: keep what was there rather than stop signing.
                    tracing::warn!(identity = %name, error = %api_error, "identity service: cannot read the issuer; keeping the one in use");
                    match previous.domains.get(&trust_domain) {
                        Some(kept) if kept.identity == name => kept.issuer.clone(),
                        _ => Err(api_error),
                    }
                }
            };
            next.domains.insert(
                trust_domain,
                Domain {
                    identity: name,
                    issuer,
                },
            );
        }
        if duplicates != *known_duplicates {
            for duplicate in &duplicates {
                tracing::warn!(%duplicate, "identity service: several Identities define one trust domain; the first by name is used");
            }
            *known_duplicates = duplicates;
        }
        self.report(&previous.domains, &next.domains);

        let now = Timestamp::now();
        let next = Arc::new(next);
        self.issuers.store(next.clone());
        for change in self.serving.refresh(&next, now) {
            match change {
                Change::Made {
                    trust_domain,
                    not_after,
                } => {
                    tracing::info!(%trust_domain, %not_after, "identity service: new serving certificate")
                }
                Change::Failed {
                    trust_domain,
                    error,
                } => {
                    tracing::warn!(%trust_domain, %error, "identity service: cannot make a serving certificate")
                }
                Change::Dropped { trust_domain } => {
                    tracing::warn!(%trust_domain, "identity service: no serving certificate any more")
                }
            }
        }

        let namespaces = objects
            .iter()
            .map(|(namespace, _)| namespace.clone())
            .collect();
        *watched.lock() = objects;
        (self.next_wake(&next, now), namespaces)
    }

    /// The issuer of `identity`: `Ok(Err(why))` when what was read is unusable, `Err` when the API server
    /// could not be asked.
    async fn read(
        &self,
        identity: &Identity,
        objects: &mut BTreeSet<(String, String)>,
    ) -> Result<Result<issuers::CurrentIssuer, String>, String> {
        let (secret_name, bundle_name) = match issuers::sources(identity, &self.namespace) {
            Ok(sources) => sources,
            Err(invalid) => return Ok(Err(invalid)),
        };
        for object in [&secret_name, &bundle_name] {
            objects.insert((object.namespace.clone(), object.name.clone()));
        }
        let secret = Api::<Secret>::namespaced(self.client.clone(), &secret_name.namespace)
            .get_opt(&secret_name.name)
            .await
            .map_err(|e| format!("read Secret {secret_name}: {e}"))?;
        let bundle = Api::<ConfigMap>::namespaced(self.client.clone(), &bundle_name.namespace)
            .get_opt(&bundle_name.name)
            .await
            .map_err(|e| format!("read ConfigMap {bundle_name}: {e}"))?;
        Ok(issuers::load(
            identity,
            &self.namespace,
            secret.as_ref(),
            bundle.as_ref(),
            Timestamp::now(),
        ))
    }

    /// Logs what changed and keeps the expiry gauge in line.
    fn report(&self, before: &BTreeMap<String, Domain>, after: &BTreeMap<String, Domain>) {
        for (trust_domain, domain) in after {
            let old = before.get(trust_domain).map(|d| &d.issuer);
            match (&domain.issuer, old) {
                (Ok(issuer), Some(Ok(old))) if old.cert.fingerprint == issuer.cert.fingerprint => {}
                (Ok(issuer), _) => {
                    tracing::info!(
                        %trust_domain,
                        identity = %domain.identity,
                        issuer = %issuer.cert.subject,
                        fingerprint = %issuer.cert.fingerprint,
                        not_after = %issuer.cert.not_after,
                        source = %issuer.source,
                        "identity service: signing with this issuer"
                    );
                    self.metrics
                        .service_issuer_expires_at(trust_domain, issuer.cert.not_after.as_second());
                }
                (Err(why), Some(Err(old_why))) if why == old_why => {}
                (Err(why), _) => {
                    tracing::warn!(%trust_domain, identity = %domain.identity, reason = %why, "identity service: no usable issuer; refusing with NoIssuer");
                    self.metrics.forget_service_issuer(trust_domain);
                }
            }
        }
        for trust_domain in before.keys().filter(|d| !after.contains_key(*d)) {
            tracing::info!(%trust_domain, "identity service: trust domain gone");
            self.metrics.forget_service_issuer(trust_domain);
        }
    }

    /// The resync period, or sooner: a second after the first issuer expires (to stop advertising it)
    /// and when the first serving certificate is due.
    fn next_wake(&self, issuers: &IssuerSet, now: Timestamp) -> Duration {
        let until = |then: Timestamp| {
            Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
        };
        let expiries = issuers
            .domains
            .values()
            .filter_map(|d| d.issuer.as_ref().ok())
            .map(|issuer| until(issuer.cert.not_after) + Duration::from_secs(1));
        let renewal = self.serving.next_renewal(issuers).map(until);
        expiries
            .chain(renewal)
            .fold(self.resync, Duration::min)
            .max(Duration::from_millis(100))
    }
}

/// Wakes the reload loop on every event of a watch stream (the stream is driven for its side effect:
/// the reflector's store).
async fn wake_on_each<S, T>(what: &'static str, events: S, wake: Arc<Notify>)
where
    S: Stream<Item = Result<T, watcher::Error>>,
{
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => wake.notify_one(),
            Err(error) => {
                tracing::warn!(%error, "identity service: watch of {what} failed; retrying")
            }
        }
    }
}

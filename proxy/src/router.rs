//! Applies configurations to the live routing state: authority → service → endpoints.
//!
//! Readers (every request) load the current [`RouteTable`] and a service's endpoint list through
//! `ArcSwap`, without locks. A configuration update builds new tables beside the old ones, reusing
//! the `Service` and `Endpoint` objects whose identity did not change, so balancer state and
//! connections survive and in-flight requests (which hold their own `Arc`s) finish undisturbed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tracing::info;

use crate::config::{EndpointConfig, ProxyConfig, ServiceConfig, normalize_authority};
use crate::endpoint::{ClientSettings, Endpoint, EndpointRegistry};
use crate::load::{now_ms, p2c};
use crate::metrics::{Labels, Metrics};
use crate::tls::peer::PeerIdentity;

pub struct Service {
    pub name: String,
    pub authority: String,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("name", &self.name).finish()
    }
}

impl Service {
    /// Picks the endpoint for one request (P2C over peak-EWMA load), skipping ejected endpoints
    /// while any is available. `None` when the service has no endpoints.
    pub fn pick(&self, settings: &ClientSettings, now: Instant) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints.load();
        let now = now_ms(now);
        let chosen = p2c(
            endpoints.len(),
            |i| endpoints[i].is_available(now),
            |i| endpoints[i].load.load(&settings.ewma, now),
        )
        .or_else(|| {
            // Everything is ejected: probe the endpoint whose ejection ends first.
            (0..endpoints.len()).min_by_key(|&i| endpoints[i].ejected_until_ms())
        })?;
        Some(endpoints[chosen].clone())
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }
}

#[derive(Default)]
pub struct RouteTable {
    /// foldhash instead of SipHash: one lookup per request; the keys come from configuration,
    /// and foldhash's per-process random seed still keeps hostile authorities from colliding.
    by_authority: HashMap<String, Arc<Service>, foldhash::fast::RandomState>,
}

pub struct Router {
    table: ArcSwap<RouteTable>,
    /// Only touched by configuration updates.
    services: parking_lot::Mutex<HashMap<String, Arc<Service>>>,
    metrics: Arc<Metrics>,
    settings: Arc<ClientSettings>,
    endpoints: Arc<EndpointRegistry>,
    /// Endpoints outside services stay for the process's life (their series too): there are as
    /// many as distinct original destinations and inbound ports, not one per connection.
    standalone: parking_lot::Mutex<HashMap<StandaloneKey, Arc<Endpoint>>>,
}

/// Direction, address and extra labels of an endpoint outside services.
type StandaloneKey = (String, SocketAddr, Vec<(String, String)>);

impl Router {
    pub fn new(metrics: Arc<Metrics>, settings: Arc<ClientSettings>) -> Self {
        Self {
            table: ArcSwap::from_pointee(RouteTable::default()),
            services: Default::default(),
            endpoints: Arc::new(EndpointRegistry::new(metrics.clone())),
            standalone: Default::default(),
            metrics,
            settings,
        }
    }

    /// How many endpoints are alive (configured, or still finishing requests).
    pub fn live_endpoints(&self) -> usize {
        self.endpoints.live()
    }

    pub fn settings(&self) -> &Arc<ClientSettings> {
        &self.settings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The service a request authority (`:authority` / `Host`) or an original destination
    /// (`ip:port`) names. Exact text first (no allocation); then lower-cased with port 80 added.
    pub fn route(&self, authority: &str) -> Option<Arc<Service>> {
        let table = self.table.load();
        if let Some(service) = table.by_authority.get(authority) {
            return Some(service.clone());
        }
        let normalized = normalize_authority(authority)?;
        table.by_authority.get(&normalized).cloned()
    }

    pub fn route_addr(&self, addr: SocketAddr) -> Option<Arc<Service>> {
        self.route(&addr.to_string())
    }

    /// Makes `config` the live configuration. The caller has validated it.
    pub fn apply(&self, config: &ProxyConfig) {
        let mut services = self.services.lock();
        let mut next_services = HashMap::with_capacity(config.services.len());
        let mut table = RouteTable::default();
        let now = now_ms(Instant::now());
        for svc_config in &config.services {
            let service = match services.get(&svc_config.name) {
                Some(existing) if existing.authority == svc_config.primary_authority() => {
                    existing.clone()
                }
                _ => Arc::new(Service {
                    name: svc_config.name.clone(),
                    authority: svc_config.primary_authority().to_string(),
                    endpoints: ArcSwap::from_pointee(Vec::new()),
                }),
            };
            // Unchanged endpoints (and removed ones still finishing requests) come back as they are.
            let endpoints: Vec<Arc<Endpoint>> = svc_config
                .endpoints
                .iter()
                .map(|ep| self.endpoint(svc_config, ep, now))
                .collect();
            service.endpoints.store(Arc::new(endpoints));
            // `validate` accepted the authorities, so `route_keys` cannot fail here.
            for key in svc_config.route_keys().unwrap_or_default() {
                table.by_authority.insert(key, service.clone());
            }
            for authority in &svc_config.authorities {
                table
                    .by_authority
                    .entry(authority.clone())
                    .or_insert_with(|| service.clone());
            }
            next_services.insert(svc_config.name.clone(), service);
        }
        let removed = services
            .keys()
            .filter(|name| !next_services.contains_key(*name))
            .count();
        *services = next_services;
        self.table.store(Arc::new(table));
        info!(
            services = services.len(),
            endpoints = config
                .services
                .iter()
                .map(|s| s.endpoints.len())
                .sum::<usize>(),
            removed_services = removed,
            "configuration applied"
        );
    }

    fn endpoint(
        &self,
        service: &ServiceConfig,
        config: &EndpointConfig,
        now: u64,
    ) -> Arc<Endpoint> {
        let addr = config.addr;
        let labels = config.labels.clone();
        // Identities matter only when the proxy speaks mTLS; in plaintext mode they are ignored
        // (and do not split endpoints).
        let identity = config
            .identity
            .clone()
            .filter(|_| self.settings.tls.is_some());
        let key = (service.name.clone(), addr, labels.clone(), identity.clone());
        self.endpoints.get_or_create(key, |release| {
            let mut metric_labels: Labels = vec![
                ("direction".into(), "outbound".into()),
                ("authority".into(), service.primary_authority().into()),
                ("dst_service".into(), service.name.clone()),
                ("target_addr".into(), addr.to_string()),
            ];
            for (key, value) in &labels {
                metric_labels.push((format!("dst_{}", sanitize_label(key)), value.clone()));
            }
            if let Some(identity) = &identity {
                metric_labels.push(("tls".into(), "true".into()));
                metric_labels.push(("server_id".into(), identity.clone()));
            }
            let http = self.metrics.http(metric_labels.clone());
            metric_labels.push(("peer".into(), "dst".into()));
            let tcp = self.metrics.tcp(&metric_labels);
            Endpoint::new(
                addr,
                labels,
                // `validate` refused identities that are not DNS names.
                identity.as_deref().and_then(PeerIdentity::new),
                self.settings.clone(),
                http,
                tcp,
                now,
                Some(release),
            )
        })
    }

    /// An endpoint outside any service (the inbound application, or an unknown original
    /// destination), shared by every connection going there. Called per connection, not per
    /// request.
    pub fn standalone_endpoint(&self, addr: SocketAddr, direction: &str) -> Arc<Endpoint> {
        self.standalone_endpoint_with(addr, direction, &[])
    }

    /// [`Self::standalone_endpoint`] with extra metric labels, e.g. the inbound application as
    /// reached by one client identity (`tls`, `client_id`). Each label set is its own endpoint,
    /// with its own connections to the application.
    pub fn standalone_endpoint_with(
        &self,
        addr: SocketAddr,
        direction: &str,
        extra_labels: &[(&str, &str)],
    ) -> Arc<Endpoint> {
        let key: StandaloneKey = (
            direction.to_string(),
            addr,
            extra_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut standalone = self.standalone.lock();
        if let Some(endpoint) = standalone.get(&key) {
            return endpoint.clone();
        }
        let endpoint = {
            let mut labels: Labels = vec![
                ("direction".into(), direction.into()),
                ("authority".into(), String::new()),
                ("target_addr".into(), addr.to_string()),
            ];
            labels.extend(key.2.iter().cloned());
            let http = self.metrics.http(labels.clone());
            labels.push(("peer".into(), "dst".into()));
            let tcp = self.metrics.tcp(&labels);
            Arc::new(Endpoint::new(
                addr,
                Default::default(),
                None,
                self.settings.clone(),
                http,
                tcp,
                now_ms(Instant::now()),
                None,
            ))
        };
        standalone.insert(key, endpoint.clone());
        endpoint
    }
}

/// Prometheus label names allow `[a-zA-Z0-9_]`.
fn sanitize_label(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoints: &[&str]) -> ProxyConfig {
        let eps: Vec<String> = endpoints
            .iter()
            .map(|a| format!(r#"{{"addr":"{a}"}}"#))
            .collect();
        ProxyConfig::from_json(
            format!(
                r#"{{"services":[{{"name":"web","authorities":["web.ns:8080","web"],"endpoints":[{}]}}]}}"#,
                eps.join(",")
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn routes_by_normalised_authority_and_keeps_endpoints_across_updates() {
        let router = Router::new(Arc::new(Metrics::new()), Default::default());
        router.apply(&config(&["127.0.0.1:1", "127.0.0.1:2"]));
        let svc = router.route("web.ns:8080").unwrap();
        assert!(router.route("WEB.ns:8080").is_some());
        assert!(router.route("web:80").is_some());
        assert!(router.route("web").is_some());
        assert!(router.route("other").is_none());
        let kept = svc.endpoints()[1].clone();
        router.apply(&config(&["127.0.0.1:2", "127.0.0.1:3"]));
        let svc = router.route("web").unwrap();
        let now = svc.endpoints();
        assert_eq!(now.len(), 2);
        assert!(
            Arc::ptr_eq(&now[0], &kept),
            "unchanged endpoint keeps its state"
        );
        assert!(svc.pick(router.settings(), Instant::now()).is_some());
        drop((svc, now, kept));
        assert_eq!(router.live_endpoints(), 2, "the removed endpoint is gone");
    }

    #[tokio::test]
    async fn removed_endpoints_leave_metrics_once_their_last_request_ends() {
        let router = Router::new(Arc::new(Metrics::new()), Default::default());
        router.apply(&config(&["127.0.0.1:1", "127.0.0.1:2"]));
        let in_flight = router.route("web").unwrap().endpoints()[0].clone();
        in_flight.http.request();
        let series = r#"target_addr="127.0.0.1:1""#;
        router.apply(&config(&["127.0.0.1:2"]));
        assert!(
            router.metrics().render().contains(series),
            "still serving a request"
        );
        // Configured again while still alive: the same endpoint comes back.
        router.apply(&config(&["127.0.0.1:1", "127.0.0.1:2"]));
        assert!(Arc::ptr_eq(
            &router.route("web").unwrap().endpoints()[0],
            &in_flight
        ));
        router.apply(&config(&["127.0.0.1:2"]));
        drop(in_flight);
        assert!(!router.metrics().render().contains(series));
        assert!(
            router
                .metrics()
                .render()
                .contains(r#"target_addr="127.0.0.1:2""#)
        );
    }
}

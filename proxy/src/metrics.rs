//! Golden metrics in Prometheus text, with linkerd2-proxy's names and labels so its dashboards work.
//!
//! Hot-path rule: a request never looks a series up by label set. Handles are resolved once per
//! (service, endpoint) into [`HttpMetrics`] / [`TcpMetrics`]; the few series that depend on the
//! response (status code, gRPC status) are cached per endpoint in a small copy-on-write list that
//! is read without locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

/// linkerd2-proxy's `response_latency_ms` buckets.
pub const LATENCY_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

/// All metric families, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    request_total: Family<Labels, Counter>,
    response_total: Family<Labels, Counter>,
    response_latency_ms: Family<Labels, LatencyHistogram>,
    tcp_open_total: Family<Labels, Counter>,
    tcp_close_total: Family<Labels, Counter>,
    tcp_open_connections: Family<Labels, Gauge>,
    tcp_read_bytes_total: Family<Labels, Counter>,
    tcp_write_bytes_total: Family<Labels, Counter>,
    /// Only when the proxy has an identity: plaintext mode renders exactly what it always did.
    mtls: Option<MtlsMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of a proxy with an identity: the golden metrics plus identity and mTLS ones.
    pub fn with_mtls() -> Self {
        let mut metrics = Self::new();
        metrics.mtls = Some(MtlsMetrics::register(&mut metrics.registry));
        metrics
    }

    /// Identity and mTLS metrics; `None` in plaintext mode.
    pub fn mtls(&self) -> Option<&MtlsMetrics> {
        self.mtls.as_ref()
    }

    pub fn new() -> Self {
        let mut registry = Registry::default();
        let request_total = Family::default();
        let response_total = Family::default();
        let response_latency_ms = Family::default();
        let tcp_open_total = Family::default();
        let tcp_close_total = Family::default();
        let tcp_open_connections = Family::default();
        let tcp_read_bytes_total = Family::default();
        let tcp_write_bytes_total = Family::default();
        // Counter names get their `_total` suffix from the encoder.
        registry.register("request", "Requests sent", request_total.clone());
        registry.register(
            "response",
            "Responses received, by classification",
            response_total.clone(),
        );
        registry.register(
            "response_latency_ms",
            "Time from request headers to response headers, in milliseconds",
            response_latency_ms.clone(),
        );
        registry.register("tcp_open", "TCP connections opened", tcp_open_total.clone());
        registry.register(
            "tcp_close",
            "TCP connections closed",
            tcp_close_total.clone(),
        );
        registry.register(
            "tcp_open_connections",
            "TCP connections currently open",
            tcp_open_connections.clone(),
        );
        registry.register(
            "tcp_read_bytes",
            "Bytes read from TCP connections",
            tcp_read_bytes_total.clone(),
        );
        registry.register(
            "tcp_write_bytes",
            "Bytes written to TCP connections",
            tcp_write_bytes_total.clone(),
        );
        Self {
            registry,
            request_total,
            response_total,
            response_latency_ms,
            tcp_open_total,
            tcp_close_total,
            tcp_open_connections,
            tcp_read_bytes_total,
            tcp_write_bytes_total,
            mtls: None,
        }
    }

    /// Renders every series in the Prometheus / OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Resolves the HTTP series of one route target (a (service, endpoint) pair, or the inbound app).
    pub fn http(self: &Arc<Self>, labels: Labels) -> HttpMetrics {
        HttpMetrics {
            request_total: self.request_total.get_or_create(&labels).clone(),
            metrics: self.clone(),
            labels,
            by_status: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Resolves the TCP series of one label set (a listener, or connections to one endpoint).
    pub fn tcp(&self, labels: &Labels) -> TcpMetrics {
        TcpMetrics {
            labels: Arc::new(labels.clone()),
            open_total: self.tcp_open_total.get_or_create(labels).clone(),
            close_total: self.tcp_close_total.get_or_create(labels).clone(),
            open: self.tcp_open_connections.get_or_create(labels).clone(),
            read_bytes: self.tcp_read_bytes_total.get_or_create(labels).clone(),
            write_bytes: self.tcp_write_bytes_total.get_or_create(labels).clone(),
        }
    }
}

// === HTTP ===

/// How a finished response is classified (linkerd's `classification` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response ended; `grpc_status` is the final `grpc-status` of a gRPC response
    /// (`None` for a gRPC response that carried none; ignored for plain HTTP).
    Complete { grpc_status: Option<u32> },
    /// The response stream failed or was abandoned before its end.
    Error,
}

pub struct HttpMetrics {
    metrics: Arc<Metrics>,
    labels: Labels,
    request_total: Counter,
    by_status: ArcSwap<Vec<Arc<StatusMetrics>>>,
}

/// The series of one HTTP status code on one target.
pub struct StatusMetrics {
    status: u16,
    latency: LatencyHistogram,
    plain: OnceLock<Counter>,
    plain_error: OnceLock<Counter>,
    grpc: [OnceLock<Counter>; 18],
    grpc_missing: OnceLock<Counter>,
}

/// gRPC codes above 16 are not defined; they share one series labelled `grpc_status_code="other"`.
const GRPC_OTHER: usize = 17;

impl HttpMetrics {
    pub fn request(&self) {
        self.request_total.inc();
    }

    /// The series of `status`, created on first use.
    pub fn status(&self, status: u16) -> Arc<StatusMetrics> {
        if let Some(found) = self.by_status.load().iter().find(|s| s.status == status) {
            return found.clone();
        }
        self.status_slow(status)
    }

    #[cold]
    fn status_slow(&self, status: u16) -> Arc<StatusMetrics> {
        let mut labels = self.labels.clone();
        labels.push(("status_code".into(), status.to_string()));
        let created = Arc::new(StatusMetrics {
            status,
            latency: self
                .metrics
                .response_latency_ms
                .get_or_create(&labels)
                .clone(),
            plain: OnceLock::new(),
            plain_error: OnceLock::new(),
            grpc: Default::default(),
            grpc_missing: OnceLock::new(),
        });
        let mut result = created.clone();
        self.by_status.rcu(|current| {
            if let Some(found) = current.iter().find(|s| s.status == status) {
                result = found.clone();
                return current.clone();
            }
            let mut next = Vec::with_capacity(current.len() + 1);
            next.extend(current.iter().cloned());
            next.push(created.clone());
            Arc::new(next)
        });
        result
    }

    /// Records a finished response.
    pub fn response(&self, series: &StatusMetrics, grpc: bool, outcome: Outcome) {
        let slot = match (grpc, outcome) {
            (false, Outcome::Error) => &series.plain_error,
            (false, Outcome::Complete { .. }) => &series.plain,
            (
                true,
                Outcome::Complete {
                    grpc_status: Some(code),
                },
            ) => &series.grpc[(code as usize).min(GRPC_OTHER)],
            (true, _) => &series.grpc_missing,
        };
        slot.get_or_init(|| self.response_counter(series.status, grpc, outcome))
            .inc();
    }

    #[cold]
    fn response_counter(&self, status: u16, grpc: bool, outcome: Outcome) -> Counter {
        let labels = self.response_labels(status, grpc, outcome);
        self.metrics.response_total.get_or_create(&labels).clone()
    }

    fn response_labels(&self, status: u16, grpc: bool, outcome: Outcome) -> Labels {
        let (success, grpc_label) = match (grpc, outcome) {
            (false, Outcome::Complete { .. }) => (status < 500, String::new()),
            (false, Outcome::Error) => (false, String::new()),
            (
                true,
                Outcome::Complete {
                    grpc_status: Some(code),
                },
            ) if code <= 16 => (code == 0, code.to_string()),
            (
                true,
                Outcome::Complete {
                    grpc_status: Some(_),
                },
            ) => (false, "other".into()),
            (true, _) => (false, String::new()),
        };
        let mut labels = self.labels.clone();
        labels.push((
            "classification".into(),
            if success { "success" } else { "failure" }.into(),
        ));
        labels.push(("status_code".into(), status.to_string()));
        labels.push(("grpc_status_code".into(), grpc_label));
        labels
    }

    /// Drops every series of this target from `/metrics` (the endpoint left the configuration).
    pub fn remove_series(&self) {
        let metrics = &self.metrics;
        metrics.request_total.remove(&self.labels);
        for series in self.by_status.load().iter() {
            let status = series.status;
            let mut latency = self.labels.clone();
            latency.push(("status_code".into(), status.to_string()));
            metrics.response_latency_ms.remove(&latency);
            let mut created = Vec::new();
            if series.plain.get().is_some() {
                created.push((false, Outcome::Complete { grpc_status: None }));
            }
            if series.plain_error.get().is_some() {
                created.push((false, Outcome::Error));
            }
            if series.grpc_missing.get().is_some() {
                created.push((true, Outcome::Error));
            }
            for (code, slot) in series.grpc.iter().enumerate() {
                if slot.get().is_some() {
                    created.push((
                        true,
                        Outcome::Complete {
                            grpc_status: Some(code as u32),
                        },
                    ));
                }
            }
            for (grpc, outcome) in created {
                metrics
                    .response_total
                    .remove(&self.response_labels(status, grpc, outcome));
            }
        }
    }
}

impl StatusMetrics {
    pub fn observe_latency(&self, elapsed: std::time::Duration) {
        self.latency.observe_ms(elapsed.as_secs_f64() * 1e3);
    }
}

// === TCP ===

#[derive(Clone)]
pub struct TcpMetrics {
    labels: Arc<Labels>,
    open_total: Counter,
    close_total: Counter,
    open: Gauge,
    read_bytes: Counter,
    write_bytes: Counter,
}

impl TcpMetrics {
    pub fn opened(&self) {
        self.open_total.inc();
        self.open.inc();
    }

    pub fn closed(&self) {
        self.close_total.inc();
        self.open.dec();
    }

    pub fn read(&self, bytes: usize) {
        self.read_bytes.inc_by(bytes as u64);
    }

    pub fn wrote(&self, bytes: usize) {
        self.write_bytes.inc_by(bytes as u64);
    }

    /// Drops these series from `/metrics` (their owner is gone).
    pub fn remove_series(&self, metrics: &Metrics) {
        metrics.tcp_open_total.remove(&self.labels);
        metrics.tcp_close_total.remove(&self.labels);
        metrics.tcp_open_connections.remove(&self.labels);
        metrics.tcp_read_bytes_total.remove(&self.labels);
        metrics.tcp_write_bytes_total.remove(&self.labels);
    }
}

// === identity and mTLS ===

/// The proxy's certificate (Linkerd's names) and its TLS handshakes. Handshake series are looked up
/// per connection, never per request.
#[derive(Clone)]
pub struct MtlsMetrics {
    /// `identity_cert_expiration_timestamp_seconds`: `notAfter` of the current certificate.
    pub cert_expiration: Gauge,
    /// `identity_cert_refresh_count`: certificates obtained (the first one included). A gauge that
    /// only grows: Linkerd's name has no `_total`, which OpenMetrics requires of counters.
    pub cert_refresh_count: Gauge,
    /// `identity_trust_anchors`: anchors in the trust bundle in use.
    pub trust_anchors: Gauge,
    refresh_failures: Family<Labels, Counter>,
    handshakes: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
}

impl MtlsMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            cert_expiration: Gauge::default(),
            cert_refresh_count: Gauge::default(),
            trust_anchors: Gauge::default(),
            refresh_failures: Family::default(),
            handshakes: Family::default(),
            refused: Family::default(),
        };
        registry.register(
            "identity_cert_expiration_timestamp_seconds",
            "Expiry of the proxy's current certificate, in seconds since the Unix epoch",
            metrics.cert_expiration.clone(),
        );
        registry.register(
            "identity_cert_refresh_count",
            "Certificates the proxy obtained from the identity service, the first one included",
            metrics.cert_refresh_count.clone(),
        );
        registry.register(
            "identity_cert_refresh_failures",
            "Failed certify attempts, by reason",
            metrics.refresh_failures.clone(),
        );
        registry.register(
            "identity_trust_anchors",
            "Trust anchors in the trust bundle in use",
            metrics.trust_anchors.clone(),
        );
        registry.register(
            "tls_handshake",
            "Completed mTLS handshakes, by direction, verified peer identity and TLS version",
            metrics.handshakes.clone(),
        );
        registry.register(
            "tls_refused",
            "Connections refused for want of valid mTLS, by direction and reason",
            metrics.refused.clone(),
        );
        metrics
    }

    pub fn refresh_failed(&self, reason: &str) {
        self.refresh_failures
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub fn handshake(&self, direction: &str, peer_id: &str, tls_version: &str) {
        self.handshakes
            .get_or_create(&vec![
                ("direction".to_string(), direction.to_string()),
                ("peer_id".to_string(), peer_id.to_string()),
                ("tls_version".to_string(), tls_version.to_string()),
            ])
            .inc();
    }

    pub fn refused(&self, direction: &str, reason: &str) {
        self.refused
            .get_or_create(&vec![
                ("direction".to_string(), direction.to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
            .inc();
    }
}

// === impl LatencyHistogram ===

/// A fixed-bucket histogram updated with atomics only (prometheus-client's takes a mutex per
/// observation).
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram(Arc<HistogramCells>);

#[derive(Debug, Default)]
pub struct HistogramCells {
    /// Non-cumulative counts; the last cell is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    count: AtomicU64,
    /// Sum in microseconds, so it can be an integer atomic.
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe_ms(&self, ms: f64) {
        let index = LATENCY_BUCKETS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.0.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_us
            .fetch_add((ms * 1e3) as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder accumulates the per-bucket counts itself.
        let mut buckets = [(0.0, 0u64); LATENCY_BUCKETS_MS.len() + 1];
        let mut count = 0;
        for (i, cell) in self.0.buckets.iter().enumerate() {
            let n = cell.load(Ordering::Relaxed);
            count += n;
            let bound = LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets[i] = (bound, n);
        }
        let sum = self.0.sum_us.load(Ordering::Relaxed) as f64 / 1e3;
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_linkerd_names_and_labels() {
        let metrics = Arc::new(Metrics::new());
        let labels = vec![
            ("direction".to_string(), "outbound".to_string()),
            ("authority".to_string(), "web:80".to_string()),
        ];
        let http = metrics.http(labels.clone());
        http.request();
        let ok = http.status(200);
        ok.observe_latency(std::time::Duration::from_micros(1500));
        http.response(
            &ok,
            true,
            Outcome::Complete {
                grpc_status: Some(0),
            },
        );
        http.response(
            &ok,
            true,
            Outcome::Complete {
                grpc_status: Some(14),
            },
        );
        let tcp = metrics.tcp(&labels);
        tcp.opened();
        tcp.read(10);
        let text = metrics.render();
        for needle in [
            r#"request_total{direction="outbound",authority="web:80"} 1"#,
            r#"response_total{direction="outbound",authority="web:80",classification="success",status_code="200",grpc_status_code="0"} 1"#,
            r#"response_total{direction="outbound",authority="web:80",classification="failure",status_code="200",grpc_status_code="14"} 1"#,
            r#"response_latency_ms_bucket{le="1.0",direction="outbound",authority="web:80",status_code="200"} 0"#,
            r#"response_latency_ms_bucket{le="2.0",direction="outbound",authority="web:80",status_code="200"} 1"#,
            r#"response_latency_ms_bucket{le="50000.0",direction="outbound",authority="web:80",status_code="200"} 1"#,
            r#"response_latency_ms_bucket{le="+Inf",direction="outbound",authority="web:80",status_code="200"} 1"#,
            r#"tcp_open_total{direction="outbound",authority="web:80"} 1"#,
            r#"tcp_open_connections{direction="outbound",authority="web:80"} 1"#,
            r#"tcp_read_bytes_total{direction="outbound",authority="web:80"} 10"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn status_series_are_cached() {
        let metrics = Arc::new(Metrics::new());
        let http = metrics.http(vec![]);
        let a = http.status(503);
        let b = http.status(503);
        assert!(Arc::ptr_eq(&a, &b));
    }
}

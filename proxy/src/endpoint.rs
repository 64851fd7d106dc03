//! One backend address: its load estimate, its ejection state, its metrics, and its connections
//! (one multiplexed HTTP/2 connection, and a pool of idle HTTP/1.1 keep-alive connections).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::io::{EndpointIo, MeteredIo};
use crate::load::{EwmaConfig, PeakEwma};
use crate::metrics::{HttpMetrics, Metrics, TcpMetrics};
use crate::tls::Alpn;
use crate::tls::connect::{ClientTls, TlsConnectError};
use crate::tls::peer::PeerIdentity;

/// Connection and balancing settings shared by every endpoint.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub ewma: EwmaConfig,
    pub connect_timeout: Duration,
    pub max_idle_http1_per_endpoint: usize,
    pub min_ejection: Duration,
    pub max_ejection: Duration,
    /// mTLS towards endpoints that must prove an identity; `None` in plaintext mode (identities in
    /// the configuration are then ignored).
    pub tls: Option<Arc<ClientTls>>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            ewma: EwmaConfig::default(),
            connect_timeout: Duration::from_secs(1),
            max_idle_http1_per_endpoint: 256,
            min_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(60),
            tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connect to {0}: timed out")]
    Timeout(SocketAddr),
    #[error("HTTP/1.1 handshake with {addr}: {source}")]
    Http1Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("HTTP/2 handshake with {addr}: {source}")]
    Http2Handshake {
        addr: SocketAddr,
        #[source]
        source: h2::Error,
    },
    #[error("HTTP/2 connection to {addr}: {source}")]
    Http2 {
        addr: SocketAddr,
        #[source]
        source: h2::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsConnectError),
}

impl ConnectError {
    /// Whether the failure is the endpoint's (eject it): not when this proxy has no certificate
    /// or trust bundle yet.
    pub fn blames_endpoint(&self) -> bool {
        match self {
            ConnectError::Tls(tls) => tls.blames_endpoint(),
            _ => true,
        }
    }
}

pub type Http2Sender = h2::client::SendRequest<Bytes>;
type SharedConnect = Shared<BoxFuture<'static, Result<Http2Sender, Arc<ConnectError>>>>;

pub struct Endpoint {
    pub addr: SocketAddr,
    pub labels: BTreeMap<String, String>,
    /// The identity the endpoint must prove over mTLS (`None`: plaintext).
    pub peer_identity: Option<PeerIdentity>,
    pub load: PeakEwma,
    pub http: HttpMetrics,
    settings: Arc<ClientSettings>,
    tcp: TcpMetrics,
    health: Health,
    h2: ArcSwapOption<Http2Sender>,
    h2_connecting: parking_lot::Mutex<Option<SharedConnect>>,
    h1_idle: ArrayQueue<http1::SendRequest<Incoming>>,
    release: Option<Release>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Endpoint {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: SocketAddr,
        labels: BTreeMap<String, String>,
        peer_identity: Option<PeerIdentity>,
        settings: Arc<ClientSettings>,
        http: HttpMetrics,
        tcp: TcpMetrics,
        now_ms: u64,
        release: Option<Release>,
    ) -> Self {
        Self {
            release,
            addr,
            labels,
            peer_identity,
            load: PeakEwma::new(&settings.ewma, now_ms),
            http,
            tcp,
            health: Health::default(),
            h2: ArcSwapOption::empty(),
            h2_connecting: parking_lot::Mutex::new(None),
            h1_idle: ArrayQueue::new(settings.max_idle_http1_per_endpoint.max(1)),
            settings,
        }
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// False while the endpoint is ejected after connection failures.
    pub fn is_available(&self, now_ms: u64) -> bool {
        now_ms >= self.health.ejected_until_ms.load(Ordering::Relaxed)
    }

    pub fn ejected_until_ms(&self) -> u64 {
        self.health.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// A connection attempt failed: eject the endpoint when the failure is its own.
    pub fn record_connect_failure(&self, now_ms: u64, error: &ConnectError) {
        if error.blames_endpoint() {
            self.record_failure(now_ms, error);
        }
    }

    /// The endpoint refused or reset a connection: eject it, longer after each consecutive failure.
    pub fn record_failure(&self, now_ms: u64, why: &dyn std::fmt::Display) {
        let failures = self.health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let backoff = self
            .settings
            .min_ejection
            .saturating_mul(1 << (failures - 1).min(16))
            .min(self.settings.max_ejection);
        self.health
            .ejected_until_ms
            .store(now_ms + backoff.as_millis() as u64, Ordering::Relaxed);
        info!(endpoint = %self.addr, failures, backoff_ms = backoff.as_millis() as u64, "ejecting endpoint: {why}");
    }

    /// A response arrived: the endpoint works, forget past failures.
    pub fn record_success(&self) {
        // Read first: the common case writes nothing, keeping the cache line shared.
        if self.health.failures.load(Ordering::Relaxed) != 0 {
            self.health.failures.store(0, Ordering::Relaxed);
        }
    }

    // === HTTP/2 ===

    /// A handle on the endpoint's multiplexed HTTP/2 connection, ready to open a stream;
    /// connects first if needed. Concurrent callers share one connection attempt. An error means
    /// no byte of a request was sent.
    pub async fn http2(self: &Arc<Self>) -> Result<Http2Sender, Arc<ConnectError>> {
        let cached = self.h2.load().as_deref().cloned();
        let sender = match cached {
            Some(sender) => sender,
            None => self.connect_http2().await?,
        };
        match sender.ready().await {
            Ok(ready) => Ok(ready),
            Err(source) => {
                // The connection broke; the next caller reconnects.
                self.h2.store(None);
                Err(Arc::new(ConnectError::Http2 {
                    addr: self.addr,
                    source,
                }))
            }
        }
    }

    async fn connect_http2(self: &Arc<Self>) -> Result<Http2Sender, Arc<ConnectError>> {
        let connecting = {
            let mut slot = self.h2_connecting.lock();
            match &*slot {
                Some(attempt) => attempt.clone(),
                None => {
                    let attempt = connect_http2(Arc::downgrade(self), self.addr)
                        .boxed()
                        .shared();
                    *slot = Some(attempt.clone());
                    attempt
                }
            }
        };
        connecting.await
    }

    // === HTTP/1.1 ===

    /// An idle keep-alive connection, or a new one.
    pub async fn http1(self: &Arc<Self>) -> Result<http1::SendRequest<Incoming>, ConnectError> {
        while let Some(mut sender) = self.h1_idle.pop() {
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let io = self.connect_tcp().await?;
        match self.tls_for_endpoint() {
            Some((tls, peer)) => {
                let io = tls.connect(io, self.addr, peer, Alpn::Http1).await?;
                http1_handshake(io, self.addr).await
            }
            None => http1_handshake(io, self.addr).await,
        }
    }

    /// The mTLS client and the identity to expect, when this endpoint is reached over mTLS.
    fn tls_for_endpoint(&self) -> Option<(&ClientTls, &PeerIdentity)> {
        Some((self.settings.tls.as_deref()?, self.peer_identity.as_ref()?))
    }

    /// Returns a connection whose exchange finished to the idle pool.
    pub fn release_http1(&self, sender: http1::SendRequest<Incoming>) {
        if !sender.is_closed() {
            // A full pool drops (and so closes) the connection.
            let _ = self.h1_idle.push(sender);
        }
    }

    async fn connect_tcp(&self) -> Result<MeteredIo, ConnectError> {
        connect_tcp(self.addr, self.settings.connect_timeout, &self.tcp).await
    }

    /// Opens a connection for opaque forwarding (mTLS when the endpoint must prove an identity),
    /// counted in this endpoint's TCP metrics.
    pub async fn connect_opaque(&self) -> Result<EndpointIo, ConnectError> {
        let io = self.connect_tcp().await?;
        match self.tls_for_endpoint() {
            Some((tls, peer)) => {
                let io = tls.connect(io, self.addr, peer, Alpn::Opaque).await?;
                Ok(EndpointIo::Tls(Box::new(io)))
            }
            None => Ok(EndpointIo::Plain(io)),
        }
    }
}

async fn http1_handshake<IO>(
    io: IO,
    addr: SocketAddr,
) -> Result<http1::SendRequest<Incoming>, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|source| ConnectError::Http1Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            debug!(endpoint = %addr, %error, "HTTP/1.1 connection closed");
        }
    });
    Ok(sender)
}

async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
    tcp: &TcpMetrics,
) -> Result<MeteredIo, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr))?
        .map_err(|source| ConnectError::Tcp { addr, source })?;
    crate::io::tune(&stream);
    Ok(MeteredIo::new(stream, bytes::Bytes::new(), tcp.clone()))
}

async fn connect_http2(
    endpoint: Weak<Endpoint>,
    addr: SocketAddr,
) -> Result<Http2Sender, Arc<ConnectError>> {
    let result = async {
        let ep = endpoint.upgrade().ok_or(ConnectError::Timeout(addr))?;
        let io = ep.connect_tcp().await?;
        let tls = ep.settings.tls.clone().zip(ep.peer_identity.clone());
        drop(ep);
        match tls {
            Some((tls, peer)) => {
                let io = tls.connect(io, addr, &peer, Alpn::H2).await?;
                http2_handshake(io, addr, &endpoint).await
            }
            None => http2_handshake(io, addr, &endpoint).await,
        }
    }
    .await;
    let Some(ep) = endpoint.upgrade() else {
        return result.map_err(Arc::new);
    };
    *ep.h2_connecting.lock() = None;
    match result {
        Ok(sender) => {
            ep.h2.store(Some(Arc::new(sender.clone())));
            Ok(sender)
        }
        Err(error) => {
            ep.record_connect_failure(crate::load::now_ms(tokio::time::Instant::now()), &error);
            Err(Arc::new(error))
        }
    }
}

/// The HTTP/2 handshake over an open connection (plain or mTLS); spawns the connection's task.
async fn http2_handshake<IO>(
    io: IO,
    addr: SocketAddr,
    endpoint: &Weak<Endpoint>,
) -> Result<Http2Sender, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = h2::client::Builder::new()
        .initial_window_size(crate::h2_forward::STREAM_WINDOW)
        .initial_connection_window_size(crate::h2_forward::CONNECTION_WINDOW)
        .max_concurrent_reset_streams(1024)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|source| ConnectError::Http2Handshake { addr, source })?;
    // The connection task holds only a weak reference: removing the endpoint from the
    // configuration drops the last sender, which lets the connection finish its streams and close.
    let watcher = endpoint.clone();
    tokio::spawn(async move {
        let result = conn.await;
        let Some(ep) = watcher.upgrade() else { return };
        ep.h2.store(None);
        if let Err(error) = result {
            ep.record_failure(crate::load::now_ms(tokio::time::Instant::now()), &error);
        } else {
            debug!(endpoint = %ep.addr, "HTTP/2 connection closed");
        }
    });
    Ok(sender)
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release.run(self);
        }
    }
}

// === impl EndpointRegistry ===

/// What makes two endpoints the same: owner (service name, or a direction for endpoints outside
/// services), address, labels and expected identity — exactly what their metric labels are built
/// from (an endpoint whose identity changes needs new connections anyway).
pub type EndpointKey = (String, SocketAddr, BTreeMap<String, String>, Option<String>);

/// The live endpoints by identity. An endpoint configured again while a previous incarnation is
/// still alive (serving in-flight requests) gets that one back, with its connections and load
/// estimate; an endpoint's metric series leave `/metrics` when its last holder drops it.
pub struct EndpointRegistry {
    live: parking_lot::Mutex<HashMap<EndpointKey, Weak<Endpoint>>>,
    metrics: Arc<Metrics>,
}

impl EndpointRegistry {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            live: Default::default(),
            metrics,
        }
    }

    pub fn get_or_create(
        self: &Arc<Self>,
        key: EndpointKey,
        create: impl FnOnce(Release) -> Endpoint,
    ) -> Arc<Endpoint> {
        let mut live = self.live.lock();
        if let Some(endpoint) = live.get(&key).and_then(Weak::upgrade) {
            return endpoint;
        }
        let release = Release {
            registry: self.clone(),
            key: key.clone(),
        };
        let endpoint = Arc::new(create(release));
        live.insert(key, Arc::downgrade(&endpoint));
        endpoint
    }

    pub fn live(&self) -> usize {
        self.live.lock().len()
    }
}

/// Held by an endpoint; run when it is dropped.
pub struct Release {
    registry: Arc<EndpointRegistry>,
    key: EndpointKey,
}

impl Release {
    fn run(self, endpoint: &Endpoint) {
        // Under the lock, so a concurrent re-creation either finds this one gone and its series
        // removed, or is seen here and keeps the series.
        let mut live = self.registry.live.lock();
        if live.get(&self.key).and_then(Weak::upgrade).is_some() {
            return;
        }
        live.remove(&self.key);
        endpoint.http.remove_series();
        endpoint.tcp.remove_series(&self.registry.metrics);
    }
}

#[derive(Default)]
struct Health {
    failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

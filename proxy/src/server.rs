//! Accepts client connections (outbound from the local application, inbound from peers), detects
//! their protocol, and serves them as HTTP or forwards them as opaque TCP.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span, warn};

use crate::detect::{Protocol, detect};
use crate::endpoint::Endpoint;
use crate::forward::{self, ConnCtx};
use crate::h2_forward;
use crate::io::MeteredIo;
use crate::lifecycle::{Lifecycle, Phase, reached};
use crate::metrics::TcpMetrics;
use crate::router::Router;
use crate::tcp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub detect_timeout: Duration,
    /// HTTP/1.1 clients must send their headers within this time.
    pub header_read_timeout: Duration,
    pub max_concurrent_streams: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            detect_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1000,
        }
    }
}

/// One listener's shared state.
pub struct Listener {
    pub direction: Direction,
    pub router: Arc<Router>,
    pub lifecycle: Arc<Lifecycle>,
    pub settings: ServerSettings,
    pub tcp: TcpMetrics,
    /// Inbound: where the application listens (else: 127.0.0.1:<original destination port>).
    pub inbound_app: Option<Arc<Endpoint>>,
}

impl Listener {
    pub fn new(
        direction: Direction,
        router: Arc<Router>,
        lifecycle: Arc<Lifecycle>,
        settings: ServerSettings,
        inbound_app: Option<SocketAddr>,
    ) -> Self {
        let labels = vec![
            ("direction".to_string(), direction.as_str().to_string()),
            ("peer".to_string(), "src".to_string()),
        ];
        let tcp = router.metrics().tcp(&labels);
        let inbound_app = inbound_app.map(|addr| router.standalone_endpoint(addr, "inbound"));
        Self {
            direction,
            router,
            lifecycle,
            settings,
            tcp,
            inbound_app,
        }
    }

    /// Accepts until the lifecycle reaches `Stopping`.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        let mut phase = self.lifecycle.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let this = self.clone();
                        let span = debug_span!("conn", direction = self.direction.as_str(), %peer);
                        self.lifecycle.connections.spawn(this.serve(stream).instrument(span));
                    }
                    Err(error) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        warn!(direction = self.direction.as_str(), %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = reached(&mut phase, Phase::Stopping) => break,
            }
        }
    }

    async fn serve(self: Arc<Self>, mut stream: TcpStream) {
        crate::io::tune(&stream);
        let orig_dst = original_dst(&stream);
        let (protocol, prefix) = match detect(&mut stream, self.settings.detect_timeout).await {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(error) => {
                debug!(%error, "connection failed during protocol detection");
                return;
            }
        };
        let io = MeteredIo::new(stream, prefix.freeze(), self.tcp.clone());
        let fixed_target = match self.direction {
            Direction::Outbound => None,
            Direction::Inbound => match self.inbound_target(orig_dst) {
                Some(target) => Some(target),
                None => {
                    debug!(
                        "closing inbound connection: no --inbound-app and no original destination"
                    );
                    return;
                }
            },
        };
        match protocol {
            Protocol::Http1 | Protocol::Http2 => {}
            Protocol::Opaque => {
                let target = fixed_target.or_else(|| {
                    let dst = orig_dst?;
                    let routed = self.router.route_addr(dst).and_then(|svc| {
                        svc.pick(self.router.settings(), tokio::time::Instant::now())
                    });
                    Some(routed.unwrap_or_else(|| self.router.standalone_endpoint(dst, "outbound")))
                });
                match target {
                    Some(target) => tcp::forward(io, &target).await,
                    None => debug!(
                        "closing connection: not HTTP, and no original destination to forward to"
                    ),
                }
                return;
            }
        };
        let ctx = Arc::new(ConnCtx::new(self.router.clone(), orig_dst, fixed_target));
        let phase = self.lifecycle.subscribe();
        if protocol == Protocol::Http2 {
            h2_forward::serve_connection(io, ctx, &self.settings, phase).await
        } else {
            serve_http1(io, ctx, &self.settings, phase).await
        }
    }

    fn inbound_target(&self, orig_dst: Option<SocketAddr>) -> Option<Arc<Endpoint>> {
        if let Some(app) = &self.inbound_app {
            return Some(app.clone());
        }
        let port = orig_dst?.port();
        Some(
            self.router
                .standalone_endpoint(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "inbound"),
        )
    }
}

async fn serve_http1(
    io: MeteredIo,
    ctx: Arc<ConnCtx>,
    settings: &ServerSettings,
    mut phase: watch::Receiver<Phase>,
) {
    let service = service_fn(move |req| forward::serve(ctx.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = reached(&mut phase, Phase::Stopping) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        debug!(%error, "client connection closed with an error");
    }
}

/// The address a redirected (iptables REDIRECT) connection was originally sent to; `None` when the
/// connection was not redirected.
fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let sock = socket2::SockRef::from(stream);
    let original = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    let original = original.ok()?.as_socket()?;
    (original != local).then_some(original)
}

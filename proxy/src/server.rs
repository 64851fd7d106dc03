//! Accepts client connections (outbound from the local application, inbound from peers), detects
//! their protocol, and serves them as HTTP or forwards them as opaque TCP.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span, warn};

use crate::detect::{Protocol, detect, detect_after};
use crate::endpoint::Endpoint;
use crate::forward::{self, ConnCtx};
use crate::h2_forward;
use crate::io::{MeteredIo, Rewind};
use crate::lifecycle::{Lifecycle, Phase, reached};
use crate::metrics::TcpMetrics;
use crate::ports::{DEFAULT_OPAQUE_PORTS, PortSet};
use crate::router::Router;
use crate::tcp;
use crate::tls::Alpn;
use crate::tls::accept::{FirstBytes, ServerTls, read_first_bytes};
use crate::tls::refusal::TlsRefusal;

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
    /// Connections for these ports are forwarded as opaque TCP without waiting for a first byte.
    pub opaque_ports: PortSet,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            detect_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1000,
            opaque_ports: PortSet::parse(DEFAULT_OPAQUE_PORTS).unwrap_or_default(),
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
    /// Inbound, when the proxy has an identity: mTLS termination and the plaintext policy.
    pub tls: Option<Arc<ServerTls>>,
}

/// What the inbound mTLS screen decided about a connection.
enum Screened {
    /// Served over mTLS, or refused: nothing left to do.
    Done,
    /// Not mTLS, on a permissive port: served as plaintext, these bytes already read.
    Plaintext(TcpStream, BytesMut),
    /// Not a byte within the detection timeout, on a permissive port: forwarded as opaque.
    Silent(TcpStream),
}

impl Listener {
    pub fn new(
        direction: Direction,
        router: Arc<Router>,
        lifecycle: Arc<Lifecycle>,
        settings: ServerSettings,
        inbound_app: Option<SocketAddr>,
        tls: Option<Arc<ServerTls>>,
    ) -> Self {
        let labels = vec![
            ("direction".to_string(), direction.as_str().to_string()),
            ("peer".to_string(), "src".to_string()),
        ];
        let tcp = router.metrics().tcp(&labels);
        let inbound_app = inbound_app.map(|addr| {
            router.standalone_endpoint_with(addr, "inbound", plaintext_labels(tls.is_some()))
        });
        Self {
            direction,
            router,
            lifecycle,
            settings,
            tcp,
            inbound_app,
            tls,
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
                        self.lifecycle.connections.spawn(this.serve(stream, peer).instrument(span));
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

    async fn serve(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        crate::io::tune(&stream);
        let orig_dst = original_dst(&stream);
        let detected = match self.tls.clone() {
            _ if self.is_opaque(orig_dst, &stream) => Ok(Some((Protocol::Opaque, BytesMut::new()))),
            None => detect(&mut stream, self.settings.detect_timeout).await,
            Some(tls) => match self.screen(stream, peer, orig_dst, &tls).await {
                Screened::Done => return,
                Screened::Plaintext(plain, read) => {
                    stream = plain;
                    detect_after(&mut stream, read, self.settings.detect_timeout).await
                }
                Screened::Silent(silent) => {
                    stream = silent;
                    Ok(Some((Protocol::Opaque, BytesMut::new())))
                }
            },
        };
        let (protocol, prefix) = match detected {
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
            Direction::Inbound => {
                let labels = plaintext_labels(self.tls.is_some());
                match self.inbound_target(orig_dst, labels) {
                    Some(target) => Some(target),
                    None => {
                        debug!(
                            "closing inbound connection: no --inbound-app and no original destination"
                        );
                        return;
                    }
                }
            }
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

    /// Inbound with an identity: terminates mTLS, refuses what is not mTLS on a strict port, and
    /// lets the rest through on a permissive port (TLS meant for someone else, e.g. the
    /// application's own, passes through as bytes).
    async fn screen(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        orig_dst: Option<SocketAddr>,
        tls: &ServerTls,
    ) -> Screened {
        let port = self.inbound_port(orig_dst, &stream);
        let permissive = tls.is_permissive(port);
        let first = match read_first_bytes(&mut stream, self.settings.detect_timeout).await {
            Ok(Some(first)) => first,
            Ok(None) => return Screened::Done,
            Err(error) => {
                debug!(%error, "connection failed before its first bytes");
                return Screened::Done;
            }
        };
        match first {
            FirstBytes::Tls { bytes, sni } => {
                if permissive && sni.as_deref() != Some(tls.own_identity()) {
                    return Screened::Plaintext(stream, bytes);
                }
                // Strict ports terminate every TLS connection with this proxy's certificate: a mesh
                // client that expected another identity then says so precisely.
                let io = MeteredIo::new(stream, bytes.freeze(), self.tcp.clone());
                self.serve_mtls(io, peer, orig_dst, tls).await;
                Screened::Done
            }
            FirstBytes::Plain(bytes) if permissive => Screened::Plaintext(stream, bytes),
            FirstBytes::Silent if permissive => Screened::Silent(stream),
            FirstBytes::Plain(_) => {
                tls.refuse(
                    peer,
                    TlsRefusal::Plaintext,
                    &format!("plaintext on port {port}, which requires mTLS"),
                );
                Screened::Done
            }
            FirstBytes::Silent => {
                tls.refuse(
                    peer,
                    TlsRefusal::Plaintext,
                    &format!("no TLS ClientHello on port {port}, which requires mTLS"),
                );
                Screened::Done
            }
        }
    }

    /// Terminates mTLS and serves what the connection carries (told by ALPN, else detected) to the
    /// application, under metric labels naming the client's identity.
    async fn serve_mtls(
        &self,
        io: MeteredIo,
        peer: SocketAddr,
        orig_dst: Option<SocketAddr>,
        tls: &ServerTls,
    ) {
        let Some((mut stream, client)) = tls.accept(io, peer).await else {
            return;
        };
        let labels = [("tls", "true"), ("client_id", client.name.as_str())];
        let Some(target) = self.inbound_target(orig_dst, &labels) else {
            debug!("closing inbound connection: no --inbound-app and no original destination");
            return;
        };
        let protocol = match client.alpn {
            Some(Alpn::H2) => Protocol::Http2,
            Some(Alpn::Http1) => Protocol::Http1,
            Some(Alpn::Opaque) => Protocol::Opaque,
            None => match detect(&mut stream, self.settings.detect_timeout).await {
                Ok(Some((protocol, prefix))) => {
                    let io = Rewind::new(prefix.freeze(), stream);
                    return self
                        .serve_protocol(io, protocol, orig_dst, target, &client.name)
                        .await;
                }
                Ok(None) => return,
                Err(error) => {
                    debug!(%error, "mTLS connection failed during protocol detection");
                    return;
                }
            },
        };
        self.serve_protocol(stream, protocol, orig_dst, target, &client.name)
            .await
    }

    async fn serve_protocol<IO>(
        &self,
        io: IO,
        protocol: Protocol,
        orig_dst: Option<SocketAddr>,
        target: Arc<Endpoint>,
        client: &str,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let phase = self.lifecycle.subscribe();
        let ctx = || {
            Arc::new(
                ConnCtx::new(self.router.clone(), orig_dst, Some(target.clone()))
                    .with_client_identity(client),
            )
        };
        match protocol {
            Protocol::Opaque => tcp::forward(io, &target).await,
            Protocol::Http2 => h2_forward::serve_connection(io, ctx(), &self.settings, phase).await,
            Protocol::Http1 => serve_http1(io, ctx(), &self.settings, phase).await,
        }
    }

    /// Whether a connection is forwarded without detection because of the port it is for:
    /// outbound, the original destination's (a connection to the outbound port itself has no
    /// port to judge by); inbound in plaintext mode, the port it is for. Inbound with an identity
    /// always screens first: a meshed client opens with its TLS ClientHello, so nothing stalls.
    fn is_opaque(&self, orig_dst: Option<SocketAddr>, stream: &TcpStream) -> bool {
        let opaque = &self.settings.opaque_ports;
        match self.direction {
            Direction::Outbound => orig_dst.is_some_and(|dst| opaque.contains(dst.port())),
            Direction::Inbound => {
                self.tls.is_none() && opaque.contains(self.inbound_port(orig_dst, stream))
            }
        }
    }

    /// Which port a connection is for, as the permissive setting names ports: the original
    /// destination's (redirected traffic), else the application's, else the listener's.
    fn inbound_port(&self, orig_dst: Option<SocketAddr>, stream: &TcpStream) -> u16 {
        orig_dst
            .map(|dst| dst.port())
            .or_else(|| self.inbound_app.as_ref().map(|app| app.addr.port()))
            .or_else(|| stream.local_addr().ok().map(|local| local.port()))
            .unwrap_or(0)
    }

    fn inbound_target(
        &self,
        orig_dst: Option<SocketAddr>,
        labels: &[(&str, &str)],
    ) -> Option<Arc<Endpoint>> {
        if let Some(app) = &self.inbound_app {
            if labels == plaintext_labels(self.tls.is_some()) {
                return Some(app.clone());
            }
            return Some(
                self.router
                    .standalone_endpoint_with(app.addr, "inbound", labels),
            );
        }
        let port = orig_dst?.port();
        Some(self.router.standalone_endpoint_with(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            "inbound",
            labels,
        ))
    }
}

/// Extra labels of inbound series for plaintext traffic: none in plaintext mode (as always), and
/// Linkerd's `tls="no_identity"` when the proxy has an identity (a permissive port).
fn plaintext_labels(has_identity: bool) -> &'static [(&'static str, &'static str)] {
    if has_identity {
        &[("tls", "no_identity")]
    } else {
        &[]
    }
}

async fn serve_http1<IO>(
    io: IO,
    ctx: Arc<ConnCtx>,
    settings: &ServerSettings,
    mut phase: watch::Receiver<Phase>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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

//! Inbound mTLS: tells a TLS ClientHello from plaintext by the first bytes, terminates mTLS
//! (TLS 1.3, a client certificate chaining to the bundle required) and reports the client's
//! identity; refuses plaintext on strict ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rustls::ServerConfig;
use rustls::server::{Acceptor, NoServerSessionStorage};
use rustls::version::TLS13;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use crate::identity::credentials::Credentials;
use crate::metrics::MtlsMetrics;
use crate::ports::PortSet;
use crate::tls::Alpn;
use crate::tls::peer::{dns_identity, version_label};
use crate::tls::refusal::{TlsRefusal, describe_io};
use crate::tls::resolve::CurrentCertificate;
use crate::tls::verify::CurrentBundle;

/// TLS record type of a handshake message: a ClientHello starts with it.
const HANDSHAKE_RECORD: u8 = 0x16;
/// A ClientHello larger than this is not one we wait for (rustls refuses larger ones too).
const MAX_CLIENT_HELLO: usize = 32 * 1024;

/// What a client sent first.
#[derive(Debug)]
pub enum FirstBytes {
    /// A TLS ClientHello (complete, or as much as came before it stopped making sense), with its
    /// SNI when it carried one.
    Tls {
        bytes: BytesMut,
        sni: Option<String>,
    },
    /// Anything else, as read so far.
    Plain(BytesMut),
    /// Nothing within the timeout (a server-speaks-first protocol, or an idle client).
    Silent,
}

/// Reads until it is clear whether the client speaks TLS. `Ok(None)`: closed without a byte.
pub async fn read_first_bytes<R: AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> std::io::Result<Option<FirstBytes>> {
    let deadline = Instant::now() + timeout;
    let mut buf = BytesMut::with_capacity(2048);
    match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
        Err(_) => return Ok(Some(FirstBytes::Silent)),
        Ok(Err(error)) => return Err(error),
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(_)) => {}
    }
    if buf[0] != HANDSHAKE_RECORD {
        return Ok(Some(FirstBytes::Plain(buf)));
    }
    let mut acceptor = Acceptor::default();
    let mut fed = 0;
    loop {
        while fed < buf.len() {
            let mut rest = &buf[fed..];
            match acceptor.read_tls(&mut rest) {
                Ok(0) | Err(_) => break,
                Ok(n) => fed += n,
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_string);
                return Ok(Some(FirstBytes::Tls { bytes: buf, sni }));
            }
            Ok(None) if buf.len() < MAX_CLIENT_HELLO => {}
            // Not a ClientHello rustls can read: the real handshake will refuse it.
            _ => {
                return Ok(Some(FirstBytes::Tls {
                    bytes: buf,
                    sni: None,
                }));
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Ok(Some(FirstBytes::Tls {
                    bytes: buf,
                    sni: None,
                }));
            }
        }
    }
}

/// The client of an accepted mTLS connection.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// The identity its certificate names (the `client_id` metric label; authorization later).
    pub name: String,
    /// What the connection carries, when the client said so through ALPN.
    pub alpn: Option<Alpn>,
}

pub struct ServerTls {
    acceptor: TlsAcceptor,
    credentials: Arc<Credentials>,
    metrics: MtlsMetrics,
    permissive: PortSet,
    handshake_timeout: Duration,
    log_limit: LogLimit,
}

impl ServerTls {
    pub fn new(
        credentials: Arc<Credentials>,
        metrics: MtlsMetrics,
        permissive: PortSet,
        handshake_timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(credentials.provider().clone())
            .with_protocol_versions(&[&TLS13])?
            .with_client_cert_verifier(Arc::new(CurrentBundle(credentials.clone())))
            .with_cert_resolver(Arc::new(CurrentCertificate(credentials.clone())));
        config.alpn_protocols = [Alpn::H2, Alpn::Http1, Alpn::Opaque]
            .iter()
            .map(|alpn| alpn.protocol().to_vec())
            .collect();
        // No resumption: every connection proves its certificate against the bundle of the moment.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            credentials,
            metrics,
            permissive,
            handshake_timeout,
            log_limit: LogLimit::default(),
        })
    }

    pub fn own_identity(&self) -> &str {
        self.credentials.name()
    }

    pub fn is_permissive(&self, port: u16) -> bool {
        self.permissive.contains(port)
    }

    /// Terminates mTLS on `io` (whose replayed prefix holds the ClientHello). Refusals are counted
    /// and logged here.
    pub async fn accept<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
    ) -> Option<(TlsStream<IO>, ClientIdentity)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream =
            match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    self.refuse(peer, TlsRefusal::from_io(&error), &describe_io(&error));
                    return None;
                }
                Err(_) => {
                    self.refuse(
                        peer,
                        TlsRefusal::HandshakeTimeout,
                        "no complete handshake in time",
                    );
                    return None;
                }
            };
        let (_, session) = stream.get_ref();
        let Some(name) = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(dns_identity)
        else {
            self.refuse(
                peer,
                TlsRefusal::BadCertificate,
                "the client certificate names no DNS identity",
            );
            return None;
        };
        let version = version_label(session.protocol_version());
        let alpn = session.alpn_protocol().and_then(Alpn::from_protocol);
        self.metrics.handshake("inbound", &name, &version);
        debug!(%peer, client = %name, %version, ?alpn, "mTLS connection accepted");
        Some((stream, ClientIdentity { name, alpn }))
    }

    /// Counts and logs (rate-limited: a flood of refused connections must not flood the log) a
    /// refused connection; the caller closes it.
    pub fn refuse(&self, peer: SocketAddr, reason: TlsRefusal, detail: &str) {
        self.metrics.refused("inbound", reason.as_str());
        if let Some(suppressed) = self.log_limit.admit() {
            warn!(
                %peer,
                reason = reason.as_str(),
                suppressed,
                "inbound connection refused: {detail}"
            );
        }
    }
}

/// At most one log line per second; counts what it held back.
#[derive(Default)]
struct LogLimit {
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    fn admit(&self) -> Option<u64> {
        let now = crate::load::now_ms(Instant::now());
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tells_tls_from_plaintext() {
        let mut plain: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(matches!(
            read_first_bytes(&mut plain, Duration::from_secs(1)).await,
            Ok(Some(FirstBytes::Plain(_)))
        ));
        let mut empty: &[u8] = b"";
        assert!(matches!(
            read_first_bytes(&mut empty, Duration::from_secs(1)).await,
            Ok(None)
        ));
        // A truncated ClientHello from a client that then closes.
        let mut truncated: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        assert!(matches!(
            read_first_bytes(&mut truncated, Duration::from_secs(1)).await,
            Ok(None)
        ));
    }
}

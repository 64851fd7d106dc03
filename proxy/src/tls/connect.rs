//! Outbound mTLS: TLS 1.3 to an endpoint that must prove an identity, presenting the proxy's own
//! certificate. The endpoint's address is its proxy's inbound port; SNI is the expected identity;
//! ALPN says what the connection carries, so the peer proxy needs no protocol detection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::version::TLS13;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::{debug, warn};

use crate::identity::credentials::Credentials;
use crate::metrics::MtlsMetrics;
use crate::tls::Alpn;
use crate::tls::peer::{PeerIdentity, dns_identity, version_label};
use crate::tls::refusal::{TlsRefusal, describe_io};
use crate::tls::resolve::CurrentCertificate;
use crate::tls::verify::CurrentBundle;

#[derive(Debug, thiserror::Error)]
#[error("mTLS to {addr} as {identity} refused ({}): {detail}", reason.as_str())]
pub struct TlsConnectError {
    pub addr: SocketAddr,
    pub identity: String,
    pub reason: TlsRefusal,
    pub detail: String,
}

impl TlsConnectError {
    /// Whether the endpoint is at fault (and should be ejected): not when this proxy simply has no
    /// certificate or bundle yet.
    pub fn blames_endpoint(&self) -> bool {
        !matches!(
            self.reason,
            TlsRefusal::NotCertified | TlsRefusal::NoTrustBundle
        )
    }
}

pub struct ClientTls {
    /// One configuration per ALPN protocol (ALPN is per configuration in rustls).
    connectors: [TlsConnector; 3],
    credentials: Arc<Credentials>,
    metrics: MtlsMetrics,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.credentials.name())
            .finish()
    }
}

impl ClientTls {
    pub fn new(
        credentials: Arc<Credentials>,
        metrics: MtlsMetrics,
        handshake_timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let connector = |alpn: Alpn| -> Result<TlsConnector, rustls::Error> {
            let mut config = ClientConfig::builder_with_provider(credentials.provider().clone())
                .with_protocol_versions(&[&TLS13])?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CurrentBundle(credentials.clone())))
                .with_client_cert_resolver(Arc::new(CurrentCertificate(credentials.clone())));
            config.alpn_protocols = vec![alpn.protocol().to_vec()];
            // Every handshake verifies the peer against the bundle of the moment; a resumed session
            // would skip that (and connections are long-lived, so resumption saves little).
            config.resumption = Resumption::disabled();
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(Self {
            connectors: [
                connector(Alpn::H2)?,
                connector(Alpn::Http1)?,
                connector(Alpn::Opaque)?,
            ],
            credentials,
            metrics,
            handshake_timeout,
        })
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// The TLS handshake over an open connection to `addr`; refusals are counted and logged here.
    pub async fn connect<IO>(
        &self,
        io: IO,
        addr: SocketAddr,
        peer: &PeerIdentity,
        alpn: Alpn,
    ) -> Result<TlsStream<IO>, TlsConnectError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let refused = |reason: TlsRefusal, detail: String| {
            self.metrics.refused("outbound", reason.as_str());
            let error = TlsConnectError {
                addr,
                identity: peer.name.clone(),
                reason,
                detail,
            };
            warn!("{error}");
            error
        };
        if self.credentials.certificate().is_none() {
            return Err(refused(
                TlsRefusal::NotCertified,
                "this proxy has no certificate yet".into(),
            ));
        }
        let connector = &self.connectors[alpn as usize];
        let handshake = connector.connect(peer.server_name.clone(), io);
        let stream = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                return Err(refused(TlsRefusal::from_io(&error), describe_io(&error)));
            }
            Err(_) => {
                return Err(refused(
                    TlsRefusal::HandshakeTimeout,
                    format!("no handshake within {:?}", self.handshake_timeout),
                ));
            }
        };
        let (_, session) = stream.get_ref();
        // The verifier checked that the leaf names `peer`; report what the leaf actually says.
        let proven = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(dns_identity)
            .unwrap_or_default();
        let version = version_label(session.protocol_version());
        self.metrics.handshake("outbound", &proven, &version);
        debug!(%addr, peer = %proven, %version, "mTLS connection established");
        Ok(stream)
    }
}

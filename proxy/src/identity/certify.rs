//! One certify call to the identity service (`weft_wire::identity`): TLS 1.3 verified against the
//! trust bundle with the service's name `weft-identity.<trust-domain>`, HTTP/2, `POST /v1/certify`
//! with the CSR and the ServiceAccount token. The proxy presents no certificate here: its token
//! is what proves it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::version::TLS13;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weft_wire::identity::{
    CERTIFY_PATH, CertifyError as WireRefusal, CertifyRequest, CertifyResponse,
};

use crate::identity::credentials::Credentials;
use crate::tls::refusal::{TlsRefusal, describe_io};
use crate::tls::verify::CurrentBundle;

/// The service's answer is a few KiB; more is not an answer.
const MAX_ANSWER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("cannot read the token file {path}: {source}")]
    TokenUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    TokenEmpty(String),
    #[error("cannot make the CSR: {0}")]
    Csr(#[from] crate::identity::key::KeyError),
    #[error("cannot resolve the identity service {addr}: {detail}")]
    Resolve { addr: String, detail: String },
    #[error("cannot connect to the identity service {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with the identity service {addr} failed ({}): {detail}", reason.as_str())]
    Tls {
        addr: String,
        reason: TlsRefusal,
        detail: String,
    },
    #[error("HTTP/2 with the identity service: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer from the identity service within {0:?}")]
    Timeout(Duration),
    #[error("the identity service refused ({status}, {reason}): {message}")]
    Refused {
        status: u16,
        reason: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("unexpected answer from the identity service ({status}): {detail}")]
    BadAnswer { status: u16, detail: String },
    #[error("the issued certificate is unusable: {0}")]
    Unusable(String),
}

impl CertifyError {
    /// The `reason` label of `identity_cert_refresh_failures_total`: the service's own refusal
    /// reason (`TokenInvalid`, `RateLimited`, ...) or what failed on the way there.
    pub fn reason(&self) -> &str {
        match self {
            CertifyError::TokenUnreadable { .. } | CertifyError::TokenEmpty(_) => "TokenUnreadable",
            CertifyError::Csr(_) => "Csr",
            CertifyError::Resolve { .. } | CertifyError::Connect { .. } => "Unreachable",
            CertifyError::Tls {
                reason: TlsRefusal::NoTrustBundle,
                ..
            } => "NoTrustBundle",
            CertifyError::Tls { .. } => "ServiceNotTrusted",
            CertifyError::Http(_) => "Http",
            CertifyError::Timeout(_) => "Timeout",
            CertifyError::Refused { reason, .. } => reason,
            CertifyError::BadAnswer { .. } => "BadAnswer",
            CertifyError::Unusable(_) => "CertificateUnusable",
        }
    }

    /// How long the service asked us to wait (`Retry-After` of a rate-limited call).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CertifyError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub struct CertifyClient {
    /// `host:port`, resolved at each call (the service's address may change).
    addr: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
}

impl CertifyClient {
    pub fn new(
        addr: String,
        server_name: &str,
        credentials: &Arc<Credentials>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| format!("{server_name:?} is not a DNS name"))?;
        let mut config = ClientConfig::builder_with_provider(credentials.provider().clone())
            .with_protocol_versions(&[&TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentBundle(credentials.clone())))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        config.resumption = Resumption::disabled();
        Ok(Self {
            addr,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// One call on a fresh connection, within the timeout.
    pub async fn certify(&self, request: &CertifyRequest) -> Result<CertifyResponse, CertifyError> {
        let body = serde_json::to_vec(request).map_err(|e| CertifyError::BadAnswer {
            status: 0,
            detail: format!("cannot encode the request: {e}"),
        })?;
        tokio::time::timeout(self.timeout, self.exchange(body))
            .await
            .map_err(|_| CertifyError::Timeout(self.timeout))?
    }

    async fn exchange(&self, body: Vec<u8>) -> Result<CertifyResponse, CertifyError> {
        let tcp = self.connect_tcp().await?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|error| CertifyError::Tls {
                addr: self.addr.clone(),
                reason: TlsRefusal::from_io(&error),
                detail: describe_io(&error),
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        // Ends once the sender is dropped and the exchange is over.
        tokio::spawn(connection);
        let host = match &self.server_name {
            ServerName::DnsName(name) => name.as_ref().to_string(),
            other => format!("{other:?}"),
        };
        let request = Request::post(format!("https://{host}{CERTIFY_PATH}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CertifyError::BadAnswer {
                status: 0,
                detail: format!("cannot build the request: {e}"),
            })?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| CertifyError::BadAnswer {
                status: status.as_u16(),
                detail: format!("reading the answer: {e}"),
            })?
            .to_bytes();
        if status == StatusCode::OK {
            return serde_json::from_slice(&bytes).map_err(|e| CertifyError::BadAnswer {
                status: status.as_u16(),
                detail: format!("not a certify response: {e}"),
            });
        }
        match serde_json::from_slice::<WireRefusal>(&bytes) {
            Ok(refusal) => Err(CertifyError::Refused {
                status: status.as_u16(),
                reason: refusal.reason,
                message: refusal.message,
                retry_after,
            }),
            Err(_) => Err(CertifyError::BadAnswer {
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }

    /// Tries each address the name resolves to, in order.
    async fn connect_tcp(&self) -> Result<TcpStream, CertifyError> {
        let addrs =
            tokio::net::lookup_host(&self.addr)
                .await
                .map_err(|e| CertifyError::Resolve {
                    addr: self.addr.clone(),
                    detail: e.to_string(),
                })?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(error) => last = Some(error),
            }
        }
        Err(match last {
            Some(source) => CertifyError::Connect {
                addr: self.addr.clone(),
                source,
            },
            None => CertifyError::Resolve {
                addr: self.addr.clone(),
                detail: "no address".into(),
            },
        })
    }
}

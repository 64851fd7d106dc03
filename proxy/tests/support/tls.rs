//! TLS peers for the proxy's mTLS tests, made directly with rustls so that what they observe (the
//! TLS version, the certificate the proxy presented, ALPN) is independent of the proxy's own code.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::pki::{TestCa, TestLeaf};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn roots(anchors: &[&TestCa]) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for anchor in anchors {
        roots.add(CertificateDer::from(anchor.der())).unwrap();
    }
    Arc::new(roots)
}

/// The first DNS SAN of a certificate (parsed with webpki, not with the proxy's code).
pub fn dns_name(cert: &CertificateDer<'_>) -> String {
    webpki::EndEntityCert::try_from(cert)
        .unwrap()
        .valid_dns_names()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A client configuration trusting `anchors`, presenting `leaf` (or nothing), offering TLS 1.3
/// and 1.2 (the proxy must pick 1.3), with ALPN `alpn`.
pub fn client_config(leaf: Option<&TestLeaf>, anchors: &[&TestCa], alpn: &[&[u8]]) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots(anchors));
    let mut config = match leaf {
        Some(leaf) => {
            let (chain, key) = leaf.rustls();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// What a TLS session showed its observer.
#[derive(Clone, Debug)]
pub struct Observed {
    pub version: String,
    pub peer_name: String,
    pub peer_chain_len: usize,
    pub alpn: Option<String>,
}

fn observe(conn: &rustls::CommonState) -> Observed {
    let chain = conn.peer_certificates().unwrap_or_default();
    Observed {
        version: format!("{:?}", conn.protocol_version().unwrap()),
        peer_name: chain.first().map(dns_name).unwrap_or_default(),
        peer_chain_len: chain.len(),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    }
}

/// Connects to `addr` as a client and completes the TLS handshake (in TLS 1.3 the client's
/// certificate is judged after the client considers the handshake done: see [`h2_get`]).
pub async fn connect(
    addr: SocketAddr,
    config: ClientConfig,
    server_name: &str,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Observed)> {
    let tcp = TcpStream::connect(addr).await?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(server_name.to_string()).unwrap(), tcp)
        .await?;
    let observed = observe(stream.get_ref().1);
    Ok((stream, observed))
}

/// One HTTP/2 GET over an established TLS stream; `Err` when the server refuses the connection.
pub async fn h2_get(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    authority: &str,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(format!("http://{authority}/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A TLS 1.3 server presenting `leaf`, requiring a client certificate that chains to
/// `client_anchors`; records what each session showed, and answers every HTTP request with
/// `name` (HTTP/2 or HTTP/1.1).
pub struct TlsPeer {
    pub addr: SocketAddr,
    pub sessions: Arc<Mutex<Vec<Observed>>>,
    pub handshake_errors: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsPeer {
    pub async fn start(name: &str, leaf: &TestLeaf, client_anchors: &[&TestCa]) -> Self {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots(client_anchors), provider())
                .build()
                .unwrap();
        let (chain, key) = leaf.rustls();
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let handshake_errors = Arc::new(Mutex::new(Vec::new()));
        let (seen, errors, name) = (sessions.clone(), handshake_errors.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen, errors, name) =
                    (acceptor.clone(), seen.clone(), errors.clone(), name.clone());
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            return;
                        }
                    };
                    seen.lock().unwrap().push(observe(tls.get_ref().1));
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let body = name.clone();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            sessions,
            handshake_errors,
            task,
        }
    }

    pub fn sessions(&self) -> Vec<Observed> {
        self.sessions.lock().unwrap().clone()
    }
}

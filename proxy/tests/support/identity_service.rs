//! A small identity service that speaks weft's wire protocol (`weft_wire::identity`: TLS 1.3,
//! HTTP/2, `POST /v1/certify` with a CSR and a token) and signs with a test issuer. The proxy under
//! test certifies against it exactly as against the operator, so its key never leaves it. Tests
//! can swap the issuer (rotation), refuse calls, and see the tokens sent. Also the certificate
//! source of `examples/dev_identity.rs` for benchmarks without Kubernetes.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateSigningRequestParams, SanType};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use weft_wire::identity::{
    CERTIFY_PATH, CertifyError, CertifyRequest, CertifyResponse, refusal, service_name,
};

use super::pki::TestCa;

/// Leaves are backdated by this much, as the operator does for clock skew.
const CLOCK_SKEW: Duration = Duration::from_secs(20);

pub struct ServiceState {
    pub trust_domain: String,
    issuer: Mutex<Arc<TestCa>>,
    serving: Mutex<Arc<CertifiedKey>>,
    pub leaf_lifetime: Mutex<Duration>,
    /// When set, every call is refused with this status and reason.
    pub refuse_with: Mutex<Option<(u16, String)>>,
    /// When set, only this token is accepted.
    pub expected_token: Mutex<Option<String>>,
    pub tokens_seen: Mutex<Vec<String>>,
    pub issued: AtomicU64,
    pub refused: AtomicU64,
}

impl ServiceState {
    /// Signs with `issuer` from now on, and serves with a certificate it signed.
    pub fn set_issuer(&self, issuer: Arc<TestCa>) {
        *self.serving.lock().unwrap() = serving_cert(&issuer, &self.trust_domain);
        *self.issuer.lock().unwrap() = issuer;
    }

    pub fn refuse(&self, with: Option<(u16, &str)>) {
        *self.refuse_with.lock().unwrap() = with.map(|(status, reason)| (status, reason.into()));
    }

    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }
}

fn serving_cert(issuer: &TestCa, trust_domain: &str) -> Arc<CertifiedKey> {
    let leaf = issuer.leaf(&service_name(trust_domain), Duration::from_secs(86400));
    let (chain, key) = leaf.rustls();
    let key = rustls::crypto::ring::sign::any_ecdsa_type(&key).expect("serving key");
    Arc::new(CertifiedKey::new(chain, key))
}

#[derive(Debug)]
struct Serving(Arc<ServiceState>);

impl std::fmt::Debug for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceState")
    }
}

impl ResolvesServerCert for Serving {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.serving.lock().unwrap().clone())
    }
}

pub struct IdentityService {
    pub addr: SocketAddr,
    pub state: Arc<ServiceState>,
    task: JoinHandle<()>,
}

impl Drop for IdentityService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IdentityService {
    pub async fn start(issuer: Arc<TestCa>, trust_domain: &str, leaf_lifetime: Duration) -> Self {
        Self::start_on("127.0.0.1:0", issuer, trust_domain, leaf_lifetime).await
    }

    pub async fn start_on(
        addr: &str,
        issuer: Arc<TestCa>,
        trust_domain: &str,
        leaf_lifetime: Duration,
    ) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind identity service");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(ServiceState {
            trust_domain: trust_domain.to_string(),
            serving: Mutex::new(serving_cert(&issuer, trust_domain)),
            issuer: Mutex::new(issuer),
            leaf_lifetime: Mutex::new(leaf_lifetime),
            refuse_with: Mutex::new(None),
            expected_token: Mutex::new(None),
            tokens_seen: Mutex::new(Vec::new()),
            issued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Serving(state.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, state) = (acceptor.clone(), serve_state.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }
}

async fn handle(state: &ServiceState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != CERTIFY_PATH {
        return json(
            StatusCode::NOT_FOUND,
            &refused(refusal::BAD_REQUEST, "no such path"),
        );
    }
    let Ok(body) = req.into_body().collect().await else {
        return json(
            StatusCode::BAD_REQUEST,
            &refused(refusal::BAD_REQUEST, "no body"),
        );
    };
    let request: CertifyRequest = match serde_json::from_slice(&body.to_bytes()) {
        Ok(request) => request,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &refused(refusal::BAD_REQUEST, &e.to_string()),
            );
        }
    };
    state
        .tokens_seen
        .lock()
        .unwrap()
        .push(request.token.clone());
    if let Some((status, reason)) = state.refuse_with.lock().unwrap().clone() {
        state.refused.fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        return json(status, &refused(&reason, "refused by the test"));
    }
    if let Some(expected) = state.expected_token.lock().unwrap().as_deref()
        && expected != request.token
    {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return json(
            StatusCode::FORBIDDEN,
            &refused(refusal::TOKEN_INVALID, "not the expected token"),
        );
    }
    let csr = match CertificateSigningRequestParams::from_pem(&request.csr_pem) {
        Ok(csr) => csr,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &refused(refusal::BAD_CSR, &e.to_string()),
            );
        }
    };
    let names_identity = matches!(
        csr.params.subject_alt_names.as_slice(),
        [SanType::DnsName(name)] if name.as_str() == request.identity
    );
    if !names_identity {
        return json(
            StatusCode::BAD_REQUEST,
            &refused(refusal::BAD_CSR, "the CSR must name exactly the identity"),
        );
    }
    let lifetime = *state.leaf_lifetime.lock().unwrap();
    let now_seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let now = UNIX_EPOCH + Duration::from_secs(now_seconds);
    let not_after = now + lifetime;
    let issuer = state.issuer.lock().unwrap().clone();
    let leaf = issuer.sign_leaf(
        &csr.public_key,
        &request.identity,
        now - CLOCK_SKEW,
        not_after,
    );
    state.issued.fetch_add(1, Ordering::SeqCst);
    json(
        StatusCode::OK,
        &CertifyResponse {
            leaf_pem: leaf.pem(),
            chain_pem: issuer.pem(),
            valid_until_unix: (now_seconds + lifetime.as_secs()) as i64,
        },
    )
}

fn refused(reason: &str, message: &str) -> CertifyError {
    CertifyError {
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).expect("JSON"),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    response
}

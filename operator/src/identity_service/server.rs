//! The HTTPS side: TLS 1.3 only (rustls, certificates from [`ServingCerts`]), HTTP/2 or HTTP/1.1
//! (ALPN), one route: `POST /v1/certify`.

use super::{certify::Certifier, refusal::Refusal, review::Reviewer, serving_cert::ServingCerts};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use rustls::{
    ServerConfig, crypto::CryptoProvider, server::NoServerSessionStorage, version::TLS13,
};
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use weft_wire::identity::CERTIFY_PATH;

/// Largest request body read: a token and a CSR are a few KiB.
const MAX_BODY: usize = 64 * 1024;
/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client that has not sent its headers by then is dropped (slow-loris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration: TLS 1.3 only, no client certificate (proxies prove themselves with their
/// token), `h2` preferred over `http/1.1`.
pub fn tls_config(
    provider: Arc<CryptoProvider>,
    certs: Arc<ServingCerts>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No session resumption: a proxy calls once a day, and every handshake then shows (and the caller
    // verifies) the serving certificate of the current issuer.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Accepts connections until the process ends.
pub async fn serve<R: Reviewer>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    certifier: Arc<Certifier<R>>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "identity service: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, http, certifier) = (acceptor.clone(), http.clone(), certifier.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "identity service: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "identity service: TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |request| {
                let certifier = certifier.clone();
                async move { Ok::<_, Infallible>(route(request, &certifier).await) }
            });
            if let Err(error) = http.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, %error, "identity service: connection ended");
            }
        });
    }
}

async fn route<R: Reviewer>(
    request: Request<Incoming>,
    certifier: &Certifier<R>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != CERTIFY_PATH {
        return plain(StatusCode::NOT_FOUND, "not found: POST /v1/certify\n");
    }
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let refusal = Refusal::bad_request(format!(
                "cannot read the body (at most {MAX_BODY} bytes): {error}"
            ));
            certifier.record_refusal(&refusal);
            return refused(&refusal);
        }
    };
    match certifier.certify(&body).await {
        Ok(response) => json(StatusCode::OK, &response),
        Err(refusal) => refused(&refusal),
    }
}

fn refused(refusal: &Refusal) -> Response<Full<Bytes>> {
    let mut response = json(refusal.status(), &refusal.to_wire());
    if let Some(wait) = refusal.retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // Serialising these plain structs cannot fail; an empty body would still carry the status.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

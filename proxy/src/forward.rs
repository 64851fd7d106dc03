//! Forwards one HTTP/1.1 request (on hyper): resolve the target, pick an endpoint, send, retry on
//! another endpoint when nothing reached the first one, and stream the response back. Also the
//! routing pieces HTTP/2 forwarding (`h2_forward`) shares: the connection context and target
//! resolution.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::debug;

use crate::body::{Completion, ProxyBody};
use crate::endpoint::Endpoint;
use crate::load::now_ms;
use crate::metrics::Outcome;
use crate::router::{Router, Service};

/// Attempts per request, counting the first; only requests that reached no endpoint are retried.
const MAX_ATTEMPTS: usize = 3;
pub(crate) const PROXY_ERROR: HeaderName = HeaderName::from_static("weft-proxy-error");

/// What a served client connection knows about itself.
pub struct ConnCtx {
    pub router: Arc<Router>,
    /// The redirected connection's original destination, when it was redirected.
    pub orig_dst: Option<SocketAddr>,
    /// Every request goes here (inbound: the local application).
    pub fixed_target: Option<Arc<Endpoint>>,
    /// Inbound over mTLS: the identity the client's certificate proved (for authorization).
    pub client_identity: Option<Arc<str>>,
    passthrough: OnceLock<Arc<Endpoint>>,
}

impl ConnCtx {
    pub fn new(
        router: Arc<Router>,
        orig_dst: Option<SocketAddr>,
        fixed_target: Option<Arc<Endpoint>>,
    ) -> Self {
        Self {
            router,
            orig_dst,
            fixed_target,
            client_identity: None,
            passthrough: OnceLock::new(),
        }
    }

    pub fn with_client_identity(mut self, identity: &str) -> Self {
        self.client_identity = Some(identity.into());
        self
    }
}

pub(crate) enum Target {
    Service(Arc<Service>),
    Endpoint(Arc<Endpoint>),
}

// The request travels back by value for the retry; boxing it would allocate on that path.
#[allow(clippy::large_enum_variant)]
enum Failed {
    /// Nothing reached the endpoint: the request may go elsewhere.
    NotSent(Request<Incoming>, String),
    /// The request (or part of it) was sent; the exchange failed.
    Sent(String),
}

pub async fn serve(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(forward(&ctx, req).await)
}

async fn forward(ctx: &ConnCtx, req: Request<Incoming>) -> Response<ProxyBody> {
    let grpc = is_grpc(req.headers());
    let Some(target) = resolve(ctx, &req) else {
        debug!(authority = ?authority_of(&req), "no route");
        return local_error(
            grpc,
            StatusCode::NOT_FOUND,
            "no route to the request's authority",
        );
    };
    let mut req = prepare_request(req);
    let mut last_error = String::from("no endpoint available");
    for _attempt in 0..MAX_ATTEMPTS {
        let endpoint = match &target {
            Target::Endpoint(ep) => ep.clone(),
            Target::Service(svc) => match svc.pick(ctx.router.settings(), Instant::now()) {
                Some(ep) => ep,
                None => {
                    return local_error(
                        grpc,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service has no endpoints",
                    );
                }
            },
        };
        match dispatch(&endpoint, req, grpc).await {
            Ok(response) => return response,
            Err(Failed::NotSent(returned, why)) => {
                debug!(endpoint = %endpoint.addr, %why, "request not sent; retrying on another endpoint");
                req = returned;
                last_error = why;
            }
            Err(Failed::Sent(why)) => {
                debug!(endpoint = %endpoint.addr, %why, "request failed");
                endpoint.http.request();
                let series = endpoint.http.status(StatusCode::BAD_GATEWAY.as_u16());
                endpoint.http.response(&series, grpc, Outcome::Error);
                return local_error(grpc, StatusCode::BAD_GATEWAY, "endpoint failed the request");
            }
        }
    }
    debug!(error = %last_error, "giving up");
    local_error(
        grpc,
        StatusCode::SERVICE_UNAVAILABLE,
        "no endpoint could be reached",
    )
}

pub(crate) fn resolve<B>(ctx: &ConnCtx, req: &Request<B>) -> Option<Target> {
    if let Some(ep) = &ctx.fixed_target {
        return Some(Target::Endpoint(ep.clone()));
    }
    if let Some(authority) = authority_of(req)
        && let Some(svc) = ctx.router.route(authority)
    {
        return Some(Target::Service(svc));
    }
    let dst = ctx.orig_dst?;
    if let Some(svc) = ctx.router.route_addr(dst) {
        return Some(Target::Service(svc));
    }
    Some(Target::Endpoint(
        ctx.passthrough
            .get_or_init(|| ctx.router.standalone_endpoint(dst, "outbound"))
            .clone(),
    ))
}

fn authority_of<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Counts an endpoint's request as pending until its response headers (or a failure) arrive.
/// The caller has called `endpoint.load.start()`.
pub(crate) struct Pending<'a> {
    endpoint: &'a Endpoint,
    done: bool,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(endpoint: &'a Endpoint) -> Self {
        Self {
            endpoint,
            done: false,
        }
    }

    /// Ends the pending request at `now`, feeding its round-trip time when it got a response.
    pub(crate) fn finish(mut self, rtt: Option<std::time::Duration>, now: Instant) {
        self.done = true;
        let ep = self.endpoint;
        ep.load.finish(&ep.settings().ewma, rtt, now_ms(now));
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let ep = self.endpoint;
            ep.load
                .finish(&ep.settings().ewma, None, now_ms(Instant::now()));
        }
    }
}

async fn dispatch(
    endpoint: &Arc<Endpoint>,
    req: Request<Incoming>,
    grpc: bool,
) -> Result<Response<ProxyBody>, Failed> {
    let start = Instant::now();
    endpoint.load.start();
    let pending = Pending {
        endpoint,
        done: false,
    };
    let mut sender = match endpoint.http1().await {
        Ok(sender) => sender,
        Err(e) => {
            endpoint.record_connect_failure(now_ms(Instant::now()), &e);
            return Err(Failed::NotSent(req, e.to_string()));
        }
    };
    let response = match sender.try_send_request(req).await {
        Ok(response) => response,
        Err(mut e) => {
            return Err(match e.take_message() {
                Some(req) => Failed::NotSent(req, e.into_error().to_string()),
                None => {
                    let error = e.into_error();
                    if error.is_incomplete_message() || error.is_closed() {
                        endpoint.record_failure(now_ms(Instant::now()), &error);
                    }
                    Failed::Sent(error.to_string())
                }
            });
        }
    };
    let end = Instant::now();
    let rtt = end - start;
    pending.finish(Some(rtt), end);
    let (mut parts, body) = response.into_parts();
    let completion =
        Completion::on_response_head(endpoint.clone(), &parts, rtt, grpc, Some(sender));
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        ProxyBody::upstream(body, completion),
    ))
}

/// Makes a server-side request fit to send to an HTTP/1.1 endpoint.
fn prepare_request(mut req: Request<Incoming>) -> Request<Incoming> {
    *req.version_mut() = Version::HTTP_11;
    strip_hop_by_hop(req.headers_mut());
    // Absolute-form targets (as sent to a forward proxy) go out in origin form.
    if req.uri().scheme().is_some() {
        let origin = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *req.uri_mut() = origin;
    }
    req
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.remove(header::CONNECTION)
        && let Ok(listed) = connection.to_str()
    {
        for name in listed.split(',') {
            let name = name.trim();
            if !name.eq_ignore_ascii_case("close") && !name.eq_ignore_ascii_case("keep-alive") {
                headers.remove(name);
            }
        }
    }
    for name in ["keep-alive", "proxy-connection", "upgrade"] {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
    if let Some(te) = headers.get(header::TE)
        && te.as_bytes() != b"trailers"
    {
        headers.remove(header::TE);
    }
}

/// A response the proxy makes itself. gRPC clients get a trailers-only gRPC error (UNAVAILABLE,
/// or UNIMPLEMENTED for an unknown route) that their libraries understand.
fn local_error(grpc: bool, status: StatusCode, reason: &'static str) -> Response<ProxyBody> {
    local_error_head(grpc, status, reason).map(|()| {
        if grpc {
            ProxyBody::empty()
        } else {
            ProxyBody::text(local_error_text(reason))
        }
    })
}

/// The head of a response the proxy makes itself, for HTTP/1.1 and HTTP/2 alike: for gRPC a
/// complete trailers-only response, otherwise `status` with a `text/plain` body to follow
/// ([`local_error_text`]).
pub(crate) fn local_error_head(
    grpc: bool,
    status: StatusCode,
    reason: &'static str,
) -> Response<()> {
    let mut response = Response::new(());
    if !grpc {
        *response.status_mut() = status;
    }
    let headers = response.headers_mut();
    headers.insert(PROXY_ERROR, HeaderValue::from_static(reason));
    if grpc {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        let code = if status == StatusCode::NOT_FOUND {
            "12"
        } else {
            "14"
        };
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert("grpc-message", HeaderValue::from_static(reason));
    } else {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}

/// The body of a non-gRPC local error.
pub(crate) fn local_error_text(reason: &str) -> String {
    format!("{reason}\n")
}

//! The admin server: `/metrics`, `/ready`, `/live`, and `POST /shutdown`.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::body::ProxyBody;
use crate::lifecycle::{Lifecycle, Phase};
use crate::metrics::Metrics;

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
}

impl Admin {
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req, peer.ip().is_loopback())) }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%error, "admin connection failed");
                }
            });
        }
    }

    fn handle(&self, req: Request<Incoming>, from_loopback: bool) -> Response<ProxyBody> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut response = Response::new(ProxyBody::text(self.metrics.render()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            (&Method::GET, "/ready") => self.ready(),
            (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
            (&Method::POST, "/shutdown") if from_loopback => {
                info!("shutdown requested through the admin server");
                self.lifecycle.advance(Phase::Stopping);
                text(StatusCode::OK, "shutdown\n")
            }
            (&Method::POST, "/shutdown") => text(
                StatusCode::FORBIDDEN,
                "shutdown is only allowed from localhost\n",
            ),
            (_, "/metrics" | "/ready" | "/live" | "/shutdown") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn ready(&self) -> Response<ProxyBody> {
        if self.lifecycle.phase() != Phase::Serving {
            return text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n");
        }
        match self.lifecycle.not_ready_reason() {
            None => text(StatusCode::OK, "ready\n"),
            Some(reason) => {
                let mut response = Response::new(ProxyBody::text(format!("not ready: {reason}\n")));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
            }
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(body));
    *response.status_mut() = status;
    response
}

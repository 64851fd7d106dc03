//! The response body the proxy hands back to clients: either a short local message, or the
//! endpoint's body streamed frame by frame while watching for its end (to classify the response
//! for metrics, read gRPC trailers, and return an HTTP/1.1 connection to its pool).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use crate::endpoint::Endpoint;
use crate::metrics::{Outcome, StatusMetrics};

pub struct ProxyBody {
    kind: Kind,
}

enum Kind {
    Local(Option<Bytes>),
    Upstream {
        inner: Incoming,
        done: Option<Completion>,
    },
}

/// What to do once an upstream response ends.
pub struct Completion {
    pub endpoint: Arc<Endpoint>,
    pub series: Arc<StatusMetrics>,
    pub grpc: bool,
    /// `grpc-status` seen in the response headers (a trailers-only gRPC response).
    pub grpc_status: Option<u32>,
    /// The HTTP/1.1 connection that carried the exchange; reusable once the body ends.
    pub http1: Option<http1::SendRequest<Incoming>>,
}

impl Completion {
    /// The endpoint answered with `head` after `rtt`: counts the request and its status, records
    /// the latency, and returns what to record once the body ends. Shared by HTTP/1.1 and HTTP/2.
    pub(crate) fn on_response_head(
        endpoint: Arc<Endpoint>,
        head: &http::response::Parts,
        rtt: std::time::Duration,
        grpc: bool,
        http1: Option<http1::SendRequest<Incoming>>,
    ) -> Self {
        endpoint.record_success();
        endpoint.http.request();
        let series = endpoint.http.status(head.status.as_u16());
        series.observe_latency(rtt);
        Self {
            endpoint,
            series,
            grpc,
            grpc_status: if grpc {
                grpc_status(&head.headers)
            } else {
                None
            },
            http1,
        }
    }

    pub(crate) fn finish(mut self, complete: bool) {
        let outcome = if complete {
            Outcome::Complete {
                grpc_status: self.grpc_status,
            }
        } else {
            Outcome::Error
        };
        self.endpoint
            .http
            .response(&self.series, self.grpc, outcome);
        if complete && let Some(sender) = self.http1.take() {
            self.endpoint.release_http1(sender);
        }
    }
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Reads `grpc-status` from headers or trailers.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(GRPC_STATUS)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse().ok())
}

impl ProxyBody {
    pub fn empty() -> Self {
        Self {
            kind: Kind::Local(None),
        }
    }

    pub fn text(text: impl Into<Bytes>) -> Self {
        let bytes = text.into();
        Self {
            kind: Kind::Local((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub fn upstream(inner: Incoming, done: Completion) -> Self {
        Self {
            kind: Kind::Upstream {
                inner,
                done: Some(done),
            },
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.kind {
            Kind::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, done } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(trailers) = frame.trailers_ref()
                            && let Some(done) = done.as_mut()
                        {
                            done.grpc_status = grpc_status(trailers).or(done.grpc_status);
                        }
                        if inner.is_end_stream()
                            && let Some(done) = done.take()
                        {
                            done.finish(true);
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some(done) = done.take() {
                            done.finish(true);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(done) = done.take() {
                            done.finish(false);
                        }
                    }
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(bytes) => bytes.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Kind::Upstream { inner, done } = &mut self.kind
            && let Some(done) = done.take()
        {
            // A body with nothing left (e.g. a response to HEAD, or a trailers-only gRPC response)
            // is never polled: it completed. Anything else was abandoned mid-stream.
            done.finish(inner.is_end_stream());
        }
    }
}

//! The answers the backend sends: a small plain body, or a gRPC unary reply (one length-prefixed
//! message followed by `grpc-status: 0` trailers).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

/// Body of a plain (non-gRPC) answer.
pub const PLAIN_BODY: &[u8] = b"ok\n";

/// A gRPC message frame: flag 0 (uncompressed), length 4 (big-endian), then the protobuf encoding
/// of a message whose field 1 is the string "ok" - any `message { string text = 1; }` decodes it.
pub const GRPC_FRAME: &[u8] = &[0, 0, 0, 0, 4, 0x0a, 0x02, b'o', b'k'];

/// True when the request asks for gRPC (`content-type: application/grpc[+proto|...]`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// Response body: at most one data frame, then optional trailers. Small and allocation-free, as the
/// backend must never be the bottleneck of the benchmark.
#[derive(Debug, Default)]
pub struct ReplyBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl ReplyBody {
    pub fn full(data: impl Into<Bytes>) -> Self {
        ReplyBody {
            data: Some(data.into()),
            trailers: None,
        }
    }
}

pub fn plain() -> Response<ReplyBody> {
    Response::new(ReplyBody::full(Bytes::from_static(PLAIN_BODY)))
}

pub fn grpc_ok() -> Response<ReplyBody> {
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = ReplyBody {
        data: Some(Bytes::from_static(GRPC_FRAME)),
        trailers: Some(trailers),
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

pub fn text(status: StatusCode, text: String) -> Response<ReplyBody> {
    let mut response = Response::new(ReplyBody::full(text));
    *response.status_mut() = status;
    response
}

// === impl ReplyBody ===

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn grpc_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_grpc(&headers));
    }

    #[tokio::test]
    async fn grpc_reply_is_one_framed_message_then_status_trailer() {
        let response = grpc_ok();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        let bytes = collected.to_bytes();
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(bytes[0], 0, "uncompressed");
        assert_eq!(bytes.len(), 5 + len, "one whole message");
    }

    #[tokio::test]
    async fn plain_reply_has_no_trailers() {
        let collected = plain().into_body().collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes(), PLAIN_BODY);
    }
}

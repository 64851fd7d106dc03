//! weft-bench-grpc-check: makes real unary gRPC calls over h2c and checks what a gRPC client
//! relies on: status 200, `content-type: application/grpc`, exactly one length-prefixed message,
//! and `grpc-status: 0` in the trailers (not the headers). h2load cannot see trailers, so
//! `bench/run.sh` runs this through each proxy before trusting its gRPC row.
//!
//! usage: weft-bench-grpc-check <http://host:port/pkg.Service/Method> [calls]
//! Prints "ok" and exits 0, or prints what was wrong and exits 1.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// The request message: protobuf {1: "ping"} behind the 5-byte gRPC prefix.
const REQUEST_FRAME: &[u8] = &[0, 0, 0, 0, 6, 0x0a, 0x04, b'p', b'i', b'n', b'g'];
const DEADLINE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let (Some(url), calls) = (argv.next(), argv.next()) else {
        eprintln!("usage: weft-bench-grpc-check <http://host:port/pkg.Service/Method> [calls]");
        return ExitCode::from(2);
    };
    let calls = match calls.map(|c| c.parse::<u32>()) {
        None => 3,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("calls must be a positive number");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(DEADLINE, check(&url, calls))
                    .await
                    .unwrap_or_else(|_| Err(format!("no complete answer within {DEADLINE:?}")))
            })
        });
    match result {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("{why}");
            ExitCode::FAILURE
        }
    }
}

/// `calls` unary calls over one HTTP/2 connection (so a balancing proxy spreads them).
async fn check(url: &str, calls: u32) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("url {url:?} has no host:port"))?;
    let stream = TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
    tokio::spawn(connection);

    for call in 1..=calls {
        let request = Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(REQUEST_FRAME)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("call {call}: request failed: {e}"))?;
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(format!("call {call}: HTTP status {}", parts.status));
        }
        let content_type = parts.headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
        if !content_type.is_some_and(|ct| ct.starts_with(b"application/grpc")) {
            return Err(format!(
                "call {call}: content-type is {content_type:?}, not application/grpc"
            ));
        }
        if let Some(status) = parts.headers.get("grpc-status") {
            return Err(format!(
                "call {call}: grpc-status {status:?} in the headers, not the trailers"
            ));
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| format!("call {call}: response body failed: {e}"))?;
        let trailers = collected.trailers().cloned();
        let message = collected.to_bytes();
        match message_count(&message) {
            Some(1) => {}
            Some(n) => return Err(format!("call {call}: {n} messages, expected one")),
            None => {
                return Err(format!(
                    "call {call}: body of {} bytes is not gRPC framing",
                    message.len()
                ));
            }
        }
        match trailers.as_ref().and_then(|t| t.get("grpc-status")) {
            Some(status) if status == "0" => {}
            Some(status) => return Err(format!("call {call}: grpc-status {status:?}")),
            None => {
                return Err(format!(
                    "call {call}: no grpc-status trailer (trailers lost)"
                ));
            }
        }
    }
    Ok(())
}

/// Number of whole length-prefixed messages in `body`, or None if it is not a sequence of them.
fn message_count(mut body: &[u8]) -> Option<usize> {
    let mut count = 0;
    while !body.is_empty() {
        let header = body.get(..5)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        body = body.get(5 + len..)?;
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::message_count;

    #[test]
    fn framing() {
        assert_eq!(message_count(&[]), Some(0));
        assert_eq!(message_count(&[0, 0, 0, 0, 2, 1, 2]), Some(1));
        assert_eq!(message_count(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9]), Some(2));
        assert_eq!(
            message_count(&[0, 0, 0, 0, 3, 1]),
            None,
            "truncated message"
        );
        assert_eq!(message_count(&[0, 0, 0]), None, "truncated prefix");
    }
}

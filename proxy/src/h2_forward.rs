//! HTTP/2 forwarding on the `h2` crate directly, without hyper in between.
//!
//! Why: with hyper on both sides a request cost two task spawns (hyper's server stream task and
//! hyper's client response task), a channel hop to hyper's client connection task, and a oneshot
//! back. Here one task per stream (run inside the connection's task, not spawned) opens the
//! upstream stream itself and pipes both bodies; a request body that is still streaming after the
//! response headers arrive (client or bidirectional streaming) gets its own spawned pipe.
//! The measured effect is in README.md.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{Request, Response, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::body::Completion;
use crate::endpoint::Endpoint;
use crate::forward::{
    ConnCtx, Pending, Target, is_grpc, local_error_head, local_error_text, resolve,
};
use crate::h2_pipe::{BodyPipe, PipeError};
use crate::lifecycle::{Phase, reached};
use crate::metrics::Outcome;
use crate::server::ServerSettings;

pub const STREAM_WINDOW: u32 = 1 << 20;
pub const CONNECTION_WINDOW: u32 = 4 << 20;
/// hyper's default; a larger header block is refused (the 1 MB header test).
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const MAX_ATTEMPTS: usize = 3;

/// Serves one h2c client connection until it closes (or the proxy stops: GOAWAY, then drain).
pub async fn serve_connection<IO>(
    io: IO,
    ctx: Arc<ConnCtx>,
    settings: &ServerSettings,
    mut phase: watch::Receiver<Phase>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(settings.detect_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            debug!(%error, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            debug!("HTTP/2 handshake timed out");
            return;
        }
    };
    let mut streams = FuturesUnordered::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            // Streams first: every stream that can progress queues its frames before the
            // connection is polled again, so one poll of the connection flushes them in one write.
            biased;
            Some(()) = streams.next(), if !streams.is_empty() => {}
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => streams.push(forward_stream(ctx.clone(), req, respond)),
                Some(Err(error)) => {
                    debug!(%error, "HTTP/2 client connection failed");
                    break;
                }
                None => break,
            },
            _ = reached(&mut phase, Phase::Stopping), if !stopping => {
                stopping = true;
                conn.graceful_shutdown();
            }
        }
    }
    // The connection is gone: whatever streams remain fail fast on their handles.
    while streams.next().await.is_some() {}
}

/// Forwards one stream: pick an endpoint (retrying elsewhere while nothing was sent), open the
/// upstream stream, and pipe bodies both ways.
///
/// What needs the whole request (routing, the gRPC check) happens here, before the future exists,
/// and the future uses what it captured without rebinding it: the future is allocated and copied
/// once per stream, and every binding held across an await is a field of it (an `async fn` would
/// keep the request twice, as its argument and as a local).
fn forward_stream(
    ctx: Arc<ConnCtx>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> impl Future<Output = ()> {
    let grpc = is_grpc(req.headers());
    let target = resolve(&ctx, &req);
    let (parts, body) = req.into_parts();
    let end_of_stream = body.is_end_stream();
    let mut upstream_req = Some(Request::from_parts(parts, ()));
    // Taken by the attempt that opens the upstream stream; it then streams through a pipe.
    let mut request_body = Some(body);
    async move {
        let Some(target) = target.as_ref() else {
            local_error(
                &mut respond,
                grpc,
                StatusCode::NOT_FOUND,
                "no route to the request's authority",
            );
            return;
        };
        for _attempt in 0..MAX_ATTEMPTS {
            // One clock read serves the pick, the round-trip time and the estimate's stamp.
            let start = Instant::now();
            let endpoint = match target {
                Target::Endpoint(ep) => ep.clone(),
                Target::Service(svc) => match svc.pick(ctx.router.settings(), start) {
                    Some(ep) => ep,
                    None => {
                        local_error(
                            &mut respond,
                            grpc,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "service has no endpoints",
                        );
                        return;
                    }
                },
            };
            // Scoped so that what only the exchange needs is not part of the future while the
            // response body streams.
            let (mut response_pipe, mut completion) = {
                endpoint.load.start();
                let pending = Pending::new(&endpoint);
                let mut sender = match endpoint.http2().await {
                    Ok(sender) => sender,
                    Err(error) => {
                        debug!(endpoint = %endpoint.addr, %error, "request not sent; retrying on another endpoint");
                        continue;
                    }
                };
                // Only the attempt that reached an endpoint takes the request (so this always
                // has it).
                let Some(req) = upstream_req.take() else {
                    return;
                };
                // `send_request` only fails when the connection broke right after `ready`; the
                // request is consumed by then, so it is answered rather than retried.
                let (mut response, request_tx) = match sender.send_request(req, end_of_stream) {
                    Ok(sent) => sent,
                    Err(error) => {
                        debug!(endpoint = %endpoint.addr, %error, "request failed");
                        drop(pending);
                        return fail_sent(&endpoint, &mut respond, grpc);
                    }
                };
                drop(sender);
                // The request body streams concurrently with waiting for the response.
                let mut request_pipe = request_body
                    .take()
                    .filter(|_| !end_of_stream)
                    .map(|body| BodyPipe::new(body, request_tx));
                let response = loop {
                    let next = poll_fn(|cx| {
                        if let Poll::Ready(reason) = respond.poll_reset(cx) {
                            return Poll::Ready(Step::ClientReset(reason.ok()));
                        }
                        if let Some(pipe) = request_pipe.as_mut()
                            && let Poll::Ready(result) = Pin::new(pipe).poll(cx)
                        {
                            return Poll::Ready(Step::RequestSent(result));
                        }
                        Pin::new(&mut response).poll(cx).map(Step::Response)
                    })
                    .await;
                    match next {
                        Step::Response(result) => break result,
                        Step::RequestSent(result) => {
                            if let Err(error) = result {
                                debug!(%error, "request body not forwarded");
                            }
                            request_pipe = None;
                        }
                        Step::ClientReset(reason) => {
                            debug!(?reason, "client reset the stream before the response");
                            // Dropping the upstream handles resets the upstream stream (CANCEL).
                            return;
                        }
                    }
                };
                let response = match response {
                    Ok(response) => response,
                    Err(error) => {
                        debug!(endpoint = %endpoint.addr, %error, "endpoint failed the request");
                        drop(pending);
                        return fail_sent(&endpoint, &mut respond, grpc);
                    }
                };
                // A request body still streaming (client or bidirectional streaming) keeps going
                // on its own.
                if let Some(pipe) = request_pipe {
                    tokio::spawn(async move {
                        if let Err(error) = pipe.await {
                            debug!(%error, "request body not forwarded");
                        }
                    });
                }
                let end = Instant::now();
                let rtt = end - start;
                pending.finish(Some(rtt), end);
                match send_response_headers(endpoint, &mut respond, response, rtt, grpc) {
                    Some(pipe_and_completion) => pipe_and_completion,
                    None => return,
                }
            };
            let result = (&mut response_pipe).await;
            completion.grpc_status = response_pipe
                .trailers_grpc_status()
                .or(completion.grpc_status);
            if let Err(error) = &result {
                debug!(%error, "response body not forwarded");
            }
            completion.finish(result.is_ok());
            return;
        }
        local_error(
            &mut respond,
            grpc,
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoint could be reached",
        );
    }
}

/// The endpoint answered: records it and sends the response headers to the client. Returns the
/// pipe for the response body (and trailers) with what to record when it ends, or `None` when
/// the response is complete already (or the client went away).
fn send_response_headers(
    endpoint: Arc<Endpoint>,
    respond: &mut SendResponse<Bytes>,
    response: Response<RecvStream>,
    rtt: std::time::Duration,
    grpc: bool,
) -> Option<(BodyPipe, Completion)> {
    let (parts, body) = response.into_parts();
    let completion = Completion::on_response_head(endpoint, &parts, rtt, grpc, None);
    let body_done = body.is_end_stream();
    match respond.send_response(Response::from_parts(parts, ()), body_done) {
        Ok(_) if body_done => {
            completion.finish(true);
            None
        }
        Ok(response_tx) => Some((BodyPipe::new(body, response_tx), completion)),
        Err(error) => {
            debug!(%error, "client went away before the response");
            completion.finish(false);
            None
        }
    }
}

enum Step {
    Response(Result<Response<RecvStream>, h2::Error>),
    RequestSent(Result<(), PipeError>),
    ClientReset(Option<Reason>),
}

/// The request reached the endpoint and failed there: count it, answer 502 (gRPC: UNAVAILABLE).
fn fail_sent(endpoint: &Endpoint, respond: &mut SendResponse<Bytes>, grpc: bool) {
    endpoint.http.request();
    let series = endpoint.http.status(StatusCode::BAD_GATEWAY.as_u16());
    endpoint.http.response(&series, grpc, Outcome::Error);
    local_error(
        respond,
        grpc,
        StatusCode::BAD_GATEWAY,
        "endpoint failed the request",
    );
}

/// A response the proxy makes itself (the head is shared with HTTP/1.1: `forward::local_error_head`).
fn local_error(
    respond: &mut SendResponse<Bytes>,
    grpc: bool,
    status: StatusCode,
    reason: &'static str,
) {
    let response = local_error_head(grpc, status, reason);
    if grpc {
        let _ = respond.send_response(response, true);
    } else if let Ok(mut tx) = respond.send_response(response, false) {
        let _ = tx.send_data(Bytes::from(local_error_text(reason)), true);
    }
}

//! Accept loop, request handling and the counters behind `/__count` and `/__delay_ms`.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::Args;
use crate::reply::{self, ReplyBody};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// What the backend has served, and how long it waits before answering.
#[derive(Debug)]
struct Backend {
    served: AtomicU64,
    delay_ms: AtomicU64,
}

/// Largest body accepted by `PUT /__delay_ms`.
const CONTROL_BODY_LIMIT: usize = 64;

pub async fn run(args: Args) -> Result<(), ServeError> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.listen,
            source,
        })?;
    // Port 0 is allowed (tests): report the port actually bound.
    let addr = listener.local_addr().unwrap_or(args.listen);
    let backend = Arc::new(Backend {
        served: AtomicU64::new(0),
        delay_ms: AtomicU64::new(args.delay.as_millis() as u64),
    });

    let mut http = auto::Builder::new(TokioExecutor::new());
    // Enough streams and window for h2load's 32 streams per connection and for proxies that
    // multiplex many clients over one upstream connection.
    http.http2()
        .max_concurrent_streams(1024)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20);
    let http = Arc::new(http);

    let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    announce(format_args!("listening {addr}"));

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small replies must leave at once, not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let http = http.clone();
                    let backend = backend.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(backend.clone(), req));
                        // Peers closing or resetting connections is normal at the end of a load run.
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off briefly, keep serving.
                    eprintln!("weft-bench-backend {addr}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    announce(format_args!(
        "served {addr} {}",
        backend.served.load(Ordering::Relaxed)
    ));
    Ok(())
}

/// Prints one line to stdout and flushes it, so scripts waiting on it see it at once.
fn announce(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn handle(
    backend: Arc<Backend>,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/__count") => {
            let served = backend.served.load(Ordering::Relaxed);
            return Ok(reply::text(StatusCode::OK, format!("{served}\n")));
        }
        (&Method::PUT | &Method::POST, "/__delay_ms") => return Ok(set_delay(&backend, req).await),
        _ => {}
    }

    let grpc = reply::is_grpc(req.headers());
    // A unary reply follows the whole request: read the body to its end (it is small here).
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if let Err(e) = frame {
            return Ok(reply::text(
                StatusCode::BAD_REQUEST,
                format!("request body failed: {e}\n"),
            ));
        }
    }
    let delay_ms = backend.delay_ms.load(Ordering::Relaxed);
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    backend.served.fetch_add(1, Ordering::Relaxed);
    Ok(if grpc {
        reply::grpc_ok()
    } else {
        reply::plain()
    })
}

async fn set_delay(backend: &Backend, req: Request<Incoming>) -> Response<ReplyBody> {
    let limited = http_body_util::Limited::new(req.into_body(), CONTROL_BODY_LIMIT);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return reply::text(StatusCode::BAD_REQUEST, format!("bad body: {e}\n")),
    };
    match std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(ms) => {
            backend.delay_ms.store(ms, Ordering::Relaxed);
            reply::text(StatusCode::OK, format!("{ms}\n"))
        }
        None => reply::text(
            StatusCode::BAD_REQUEST,
            "body must be a whole number of milliseconds\n".to_string(),
        ),
    }
}

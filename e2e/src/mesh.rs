//! Pieces to run a small mesh in end-to-end tests: `weft-proxy` processes certified by the real
//! operator, the files a pod's proxy reads (its projected ServiceAccount token and the mounted trust
//! bundle, written here as the kubelet would), a tonic gRPC server and client, and a TLS tap that
//! watches the bytes between two proxies without being able to read them.

use crate::{paths, poll_until, process::Process};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

// === pod files ===

/// What the kubelet puts in a meshed pod for its proxy: the projected ServiceAccount token
/// (audience `identity.weft.dev`) and the trust-bundle ConfigMap's `ca-bundle.crt`.
pub struct PodFiles {
    pub dir: PathBuf,
    pub token: PathBuf,
    pub bundle: PathBuf,
}

impl PodFiles {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create pod dir");
        Self {
            token: dir.join("token"),
            bundle: dir.join("ca-bundle.crt"),
            dir: dir.to_path_buf(),
        }
    }

    /// Replaces the token at once, as the kubelet rotates a projected token (write, then rename:
    /// a reader never sees half a file).
    pub fn write_token(&self, token: &str) {
        replace(&self.dir, &self.token, token);
    }

    /// Replaces the bundle at once, as the kubelet updates a mounted ConfigMap.
    pub fn write_bundle(&self, pem: &str) {
        replace(&self.dir, &self.bundle, pem);
    }
}

fn replace(dir: &Path, path: &Path, text: &str) {
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

// === proxies ===

/// A `weft-proxy` process and where it listens.
pub struct MeshProxy {
    pub process: Process,
    pub outbound: SocketAddr,
    pub inbound: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub config: PathBuf,
}

impl MeshProxy {
    /// Starts `weft-proxy` with `config` (JSON) and `args`; outbound and admin on free ports, and
    /// inbound too unless `args` say `--inbound off`. Waits until it listens.
    pub async fn spawn(run_dir: &Path, name: &str, config: &str, args: &[String]) -> Self {
        let config_path = run_dir.join(format!("{name}-config.json"));
        replace(run_dir, &config_path, config);
        let inbound_off = args
            .windows(2)
            .any(|w| w[0] == "--inbound" && w[1] == "off");
        let mut command = Command::new(paths::binary("weft-proxy"));
        command
            .arg("--config")
            .arg(&config_path)
            .args(["--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--config-poll", "100ms"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WEFT_E2E_PROXY_LOG").unwrap_or_else(|_| "info".into()),
            );
        if !inbound_off && !args.iter().any(|a| a == "--inbound") {
            command.args(["--inbound", "127.0.0.1:0"]);
        }
        let process = Process::spawn(
            &format!("proxy {name}"),
            command,
            &run_dir.join(format!("proxy-{name}.log")),
        );
        let (outbound, admin, inbound) = poll_until(
            &format!("proxy {name} listening"),
            Duration::from_secs(30),
            || async {
                let log = process.log();
                let find = |what: &str| {
                    log.lines().find_map(|line| {
                        line.split_once(&format!("{what} listening on "))
                            .and_then(|(_, addr)| addr.trim().parse::<SocketAddr>().ok())
                    })
                };
                match (find("outbound"), find("admin"), find("inbound")) {
                    (Some(o), Some(a), i) if inbound_off || i.is_some() => Ok((o, a, i)),
                    _ => Err(format!("log so far:\n{log}")),
                }
            },
        )
        .await;
        Self {
            process,
            outbound,
            inbound,
            admin,
            config: config_path,
        }
    }

    pub async fn metrics(&self) -> Result<String, String> {
        admin_get(self.admin, "/metrics")
            .await
            .map(|(_, body)| body)
    }

    /// `(status, body)` of `/ready`.
    pub async fn ready(&self) -> Result<(u16, String), String> {
        admin_get(self.admin, "/ready").await
    }

    pub async fn wait_ready(&self, deadline: Duration) {
        poll_until("the proxy to be ready", deadline, || async {
            match self.ready().await? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            }
        })
        .await
    }

    /// The sum of `name{labels}` in `/metrics` now (0 when absent).
    pub async fn sample(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await.unwrap_or_default();
        sample_sum(&text, name, labels)
    }
}

/// A GET over HTTP/1.1 to an admin server; `(status, body)`.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {response}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head}"))?;
    Ok((status, body.to_string()))
}

/// The sum of the samples of `name` whose labels include all of `labels` (Prometheus text).
pub fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A service whose endpoints must prove identities (the proxy's JSON configuration).
pub fn meshed_service(
    name: &str,
    authority: &str,
    endpoints: &[(SocketAddr, &str)],
) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "authorities": [authority],
        "endpoints": endpoints
            .iter()
            .map(|(addr, identity)| serde_json::json!({ "addr": addr.to_string(), "identity": identity }))
            .collect::<Vec<_>>(),
    })
}

// === gRPC ===

/// The message of the test service `weft.e2e.Greeter/Hello`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
}

pub const HELLO_PATH: &str = "/weft.e2e.Greeter/Hello";

/// A tonic gRPC server answering `Hello` with `hello <name>`, counting calls.
pub struct GreeterServer {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for GreeterServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Greeter {
    calls: Arc<AtomicU64>,
}

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "weft.e2e.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct HelloMethod(Arc<AtomicU64>);

impl tonic::server::UnaryService<Hello> for HelloMethod {
    type Response = Hello;
    type Future = BoxFuture<Result<tonic::Response<Hello>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<Hello>) -> Self::Future {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let hello = request.into_inner();
            Ok(tonic::Response::new(Hello {
                name: format!("hello {}", hello.name),
                seq: hello.seq,
            }))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Greeter {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let calls = self.calls.clone();
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(tonic_prost::ProstCodec::<Hello, Hello>::default());
            Ok(match request.uri().path() {
                HELLO_PATH => grpc.unary(HelloMethod(calls), request).await,
                _ => tonic::Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

impl GreeterServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC server");
        let addr = listener.local_addr().expect("local addr");
        let calls = Arc::new(AtomicU64::new(0));
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        let service = Greeter {
            calls: calls.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self { addr, calls, task }
    }
}

/// A tonic client sending `Hello` to a proxy's outbound side with `authority`.
#[derive(Clone)]
pub struct GreeterClient {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl GreeterClient {
    pub async fn connect(proxy: SocketAddr, authority: &str) -> Result<Self, String> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
            .map_err(|e| e.to_string())?
            .origin(
                format!("http://{authority}")
                    .parse()
                    .map_err(|e| format!("{e}"))?,
            )
            .connect()
            .await
            .map_err(|e| format!("connect {proxy}: {e}"))?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    pub async fn hello(&mut self, name: &str, seq: u64) -> Result<Hello, tonic::Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let reply: Hello = self
            .grpc
            .unary(
                tonic::Request::new(Hello {
                    name: name.to_string(),
                    seq,
                }),
                http::uri::PathAndQuery::from_static(HELLO_PATH),
                tonic_prost::ProstCodec::<Hello, Hello>::default(),
            )
            .await?
            .into_inner();
        if reply.name != format!("hello {name}") || reply.seq != seq {
            return Err(tonic::Status::data_loss(format!("wrong reply {reply:?}")));
        }
        Ok(reply)
    }
}

/// One `Hello` call as raw HTTP/2 over an established stream (e.g. a TLS session the test made
/// itself); returns the reply or why it failed.
pub async fn hello_over<IO>(io: IO, authority: &str, name: &str) -> Result<Hello, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use prost::Message as _;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(connection);
    let message = Hello {
        name: name.to_string(),
        seq: 0,
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend(message);
    let request = http::Request::post(format!("http://{authority}{HELLO_PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(http_body_util::Full::new(Bytes::from(frame)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status.as_deref() != Some("0") {
        return Err(format!("grpc-status {status:?}"));
    }
    let mut body = collected.to_bytes();
    if body.len() < 5 {
        return Err("no message".into());
    }
    body.advance(5);
    Hello::decode(body).map_err(|e| e.to_string())
}

// === TLS tap ===

/// A TCP relay between two proxies that keeps the first bytes each side sent: enough to read the
/// ClientHello (SNI, ALPN) and the ServerHello (the negotiated version), and to see that nothing
/// after the ServerHello is a plaintext handshake message (in TLS 1.3 the certificates are
/// encrypted). It cannot read anything else.
pub struct TlsTap {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<TapConnection>>>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct TapConnection {
    from_client: Mutex<BytesMut>,
    from_server: Mutex<BytesMut>,
}

/// What the tap saw of one connection.
#[derive(Debug, Clone)]
pub struct TapView {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The version the ServerHello selected (supported_versions), e.g. 0x0304 for TLS 1.3.
    pub selected_version: Option<u16>,
    /// Record types the server sent, in order (0x16 handshake, 0x14 change_cipher_spec, 0x17
    /// application data).
    pub server_record_types: Vec<u8>,
}

const TAP_KEEP: usize = 16 * 1024;

impl Drop for TlsTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsTap {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tap");
        let addr = listener.local_addr().expect("local addr");
        let connections: Arc<Mutex<Vec<Arc<TapConnection>>>> = Arc::default();
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let connection = Arc::new(TapConnection::default());
                seen.lock().expect("tap lock").push(connection.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let up = relay(client_read, server_write, connection.clone(), true);
                    let down = relay(server_read, client_write, connection, false);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    /// Connections relayed so far.
    pub fn connections(&self) -> usize {
        self.connections.lock().expect("tap lock").len()
    }

    pub fn views(&self) -> Vec<TapView> {
        self.connections
            .lock()
            .expect("tap lock")
            .iter()
            .map(|c| {
                view(
                    &c.from_client.lock().expect("tap lock"),
                    &c.from_server.lock().expect("tap lock"),
                )
            })
            .collect()
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    connection: Arc<TapConnection>,
    client_side: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let kept = if client_side {
                &connection.from_client
            } else {
                &connection.from_server
            };
            let mut kept = kept.lock().expect("tap lock");
            let room = TAP_KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn view(from_client: &[u8], from_server: &[u8]) -> TapView {
    // The ClientHello, read by rustls's own parser.
    let mut acceptor = rustls::server::Acceptor::default();
    let mut input = from_client;
    let (mut sni, mut alpn) = (None, Vec::new());
    while !input.is_empty() {
        match acceptor.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Ok(Some(accepted)) = acceptor.accept() {
        let hello = accepted.client_hello();
        sni = hello.server_name().map(str::to_string);
        alpn = hello
            .alpn()
            .map(|list| {
                list.map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .unwrap_or_default();
    }
    let mut server_record_types = Vec::new();
    let mut selected_version = None;
    let mut rest = from_server;
    while rest.len() >= 5 {
        let kind = rest[0];
        let length = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if rest.len() < 5 + length {
            break;
        }
        let body = &rest[5..5 + length];
        if kind == 0x16 && server_record_types.is_empty() {
            selected_version = server_hello_version(body);
        }
        server_record_types.push(kind);
        rest = &rest[5 + length..];
    }
    TapView {
        sni,
        alpn,
        selected_version,
        server_record_types,
    }
}

/// The `supported_versions` extension of a ServerHello handshake message.
fn server_hello_version(message: &[u8]) -> Option<u16> {
    let mut m = message;
    if m.first() != Some(&0x02) || m.len() < 4 + 2 + 32 + 1 {
        return None;
    }
    m = &m[4..]; // type + 24-bit length
    m = &m[2 + 32..]; // legacy_version + random
    let session_id = *m.first()? as usize;
    m = m.get(1 + session_id..)?;
    m = m.get(2 + 1..)?; // cipher suite + compression
    let total = u16::from_be_bytes([*m.first()?, *m.get(1)?]) as usize;
    let mut extensions = m.get(2..2 + total)?;
    while extensions.len() >= 4 {
        let kind = u16::from_be_bytes([extensions[0], extensions[1]]);
        let len = u16::from_be_bytes([extensions[2], extensions[3]]) as usize;
        let data = extensions.get(4..4 + len)?;
        if kind == 0x002b && len == 2 {
            return Some(u16::from_be_bytes([data[0], data[1]]));
        }
        extensions = &extensions[4 + len..];
    }
    None
}

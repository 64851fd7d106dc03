//! Real peers for the proxy's integration tests: the proxy binary itself, HTTP/1.1 + h2c backends,
//! HTTP clients, and h2load.
#![allow(dead_code)]

pub mod identity_service;
pub mod pki;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub type TestBody = BoxBody<Bytes, hyper::Error>;

pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Waits for `condition` with a deadline; panics with `what` when it never holds.
pub async fn eventually(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weft-proxy-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// === Backend ===

/// An HTTP/1.1 + h2c server that counts requests, answers with its name, and can be slowed down
/// or killed. `/echo` streams the request body back; `/status/<code>` answers with that status.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

#[derive(Default)]
pub struct BackendState {
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub delay_ms: AtomicU64,
    pub killed: AtomicBool,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener)
    }

    pub fn serve(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState::default());
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let name = name.to_string();
        let (accept_state, accept_tasks, accept_name) =
            (state.clone(), tasks.clone(), name.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (state, name) = (accept_state.clone(), accept_name.clone());
                accept_tasks.lock().unwrap().spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), name.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            name,
            addr,
            state,
            tasks,
        }
    }

    pub fn count(&self) -> u64 {
        self.state.finished.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> u64 {
        self.state.started.load(Ordering::Relaxed) - self.state.finished.load(Ordering::Relaxed)
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Closes the listener and every connection at once, abandoning requests in flight; returns
    /// once every task is gone, with the number of requests that were in flight here.
    pub async fn kill(&self) -> u64 {
        self.state.killed.store(true, Ordering::SeqCst);
        loop {
            // Take the set out of the lock: an accept racing with the kill may still add a task.
            let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
            if tasks.is_empty() {
                return self.in_flight();
            }
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

async fn handle(
    state: Arc<BackendState>,
    name: String,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    state.started.fetch_add(1, Ordering::Relaxed);
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let path = req.uri().path().to_string();
    let mut response = if let Some(code) = path.strip_prefix("/grpc/") {
        // A gRPC-shaped response: empty message stream, status in the trailers.
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", code.parse().unwrap());
        let frames = futures::stream::iter([Ok::<_, hyper::Error>(hyper::body::Frame::trailers(
            trailers,
        ))]);
        let mut r = Response::new(http_body_util::StreamBody::new(frames).boxed());
        r.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        r
    } else if path == "/echo" {
        Response::new(req.into_body().boxed())
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(name.clone()));
        *r.status_mut() = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        r
    } else {
        Response::new(full(name.clone()))
    };
    response
        .headers_mut()
        .insert("x-backend", name.parse().unwrap());
    if !state.killed.load(Ordering::SeqCst) {
        state.finished.fetch_add(1, Ordering::Relaxed);
    }
    Ok(response)
}

// === Proxy ===

pub struct ProxyProcess {
    child: Child,
    pub config_path: PathBuf,
    pub outbound: SocketAddr,
    pub inbound: Option<SocketAddr>,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

pub fn service_json(name: &str, authorities: &[&str], endpoints: &[SocketAddr]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(r#"{{"addr":"{a}","identity":null,"labels":{{"pod":"{name}-{i}"}}}}"#)
        })
        .collect();
    let auths: Vec<String> = authorities.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"{{"name":"{name}","authorities":[{}],"ports":[],"endpoints":[{}]}}"#,
        auths.join(","),
        eps.join(",")
    )
}

pub fn config_json(services: &[String]) -> String {
    format!(r#"{{"services":[{}]}}"#, services.join(","))
}

pub fn write_config(path: &Path, json: &str) {
    // Write then rename, as a config management tool would: the proxy never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl ProxyProcess {
    pub async fn start(config: &str, extra_args: &[&str]) -> ProxyProcess {
        let dir = temp_dir("proxy");
        let config_path = dir.join("config.json");
        write_config(&config_path, config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_weft-proxy"));
        command
            .arg("--config")
            .arg(&config_path)
            .args([
                "--outbound",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--config-poll",
                "100ms",
            ])
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !extra_args.contains(&"--inbound") {
            command.args(["--inbound", "127.0.0.1:0"]);
        }
        let mut child = command.spawn().expect("start weft-proxy");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let reader_logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("WEFT_TEST_ECHO").is_some() {
                    eprintln!("proxy: {line}");
                }
                reader_logs.lock().unwrap().push(line);
            }
        });
        let mut listening: HashMap<String, SocketAddr> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(listening.contains_key("outbound")
            && listening.contains_key("admin")
            && listening.contains_key("inbound"))
        {
            assert!(
                Instant::now() < deadline,
                "proxy did not start: {:?}",
                logs.lock().unwrap()
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("proxy exited with {status}: {:?}", logs.lock().unwrap());
            }
            for line in logs.lock().unwrap().iter() {
                if let Some((before, addr)) = line.split_once(" listening on ") {
                    let what = before.rsplit(' ').next().unwrap_or_default().to_string();
                    listening.insert(what, addr.trim().parse().unwrap());
                }
            }
            if extra_args.windows(2).any(|w| w == ["--inbound", "off"]) {
                listening
                    .entry("inbound".into())
                    .or_insert(SocketAddr::from(([0, 0, 0, 0], 0)));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let inbound = listening.get("inbound").copied().filter(|a| a.port() != 0);
        ProxyProcess {
            child,
            config_path,
            outbound: listening["outbound"],
            inbound,
            admin: listening["admin"],
            logs,
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "proxy did not exit: {:?}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        http1_request(
            self.admin,
            Request::get(path)
                .header("host", "admin")
                .body(full(""))
                .unwrap(),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await.1
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === Clients ===

pub type H2Client = hyper::client::conn::http2::SendRequest<TestBody>;

pub async fn h2_client(addr: SocketAddr) -> H2Client {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one request; returns the status and the whole body as text.
pub async fn h2_request(
    client: &mut H2Client,
    req: Request<TestBody>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let response = client.send_request(req).await.expect("h2 request");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("h2 body").to_bytes();
    (parts.status, parts.headers, bytes)
}

pub async fn http1_request(addr: SocketAddr, req: Request<TestBody>) -> (StatusCode, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.expect("http1 request");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("http1 body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub fn get(authority: &str, path: &str) -> Request<TestBody> {
    Request::get(format!("http://{authority}{path}"))
        .body(full(""))
        .unwrap()
}

// === h2load ===

pub struct H2LoadResult {
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub output: String,
}

/// Runs h2load (Debian's nghttp2-client) against the proxy's outbound listener with `authority`.
pub fn h2load(target: SocketAddr, authority: &str, args: &[&str]) -> H2LoadResult {
    let output = Command::new("h2load")
        .args(args)
        .args(["-H", &format!(":authority: {authority}")])
        .arg(format!("http://{target}/"))
        .output()
        .expect("h2load (apt-get install nghttp2-client)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // "requests: 30000 total, 30000 started, 30000 done, 30000 succeeded, 0 failed, 0 errored, 0 timeout"
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("h2load output: {text}"));
    let field = |name: &str| -> u64 {
        line.split(',')
            .find(|part| part.trim().ends_with(name))
            .and_then(|part| part.trim().split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    H2LoadResult {
        succeeded: field("succeeded"),
        failed: field("failed"),
        errored: field("errored"),
        output: text,
    }
}

// === identity and mTLS ===

pub const TRUST_DOMAIN: &str = "cluster.local";

/// The identity name of ServiceAccount `sa` in namespace `shop`.
pub fn identity(sa: &str) -> String {
    format!("{sa}.shop.serviceaccount.identity.{TRUST_DOMAIN}")
}

/// The files a meshed pod has: its projected ServiceAccount token and the mounted trust bundle.
pub struct IdentityFiles {
    pub dir: PathBuf,
    pub token: PathBuf,
    pub bundle: PathBuf,
}

impl IdentityFiles {
    pub fn new(token: &str, anchors: &[&pki::TestCa]) -> Self {
        let dir = temp_dir("identity");
        let files = Self {
            token: dir.join("token"),
            bundle: dir.join("ca-bundle.crt"),
            dir,
        };
        files.write_token(token);
        files.write_bundle(anchors);
        files
    }

    /// Replaces the bundle at once (write, then rename), as the kubelet updates a mounted ConfigMap.
    pub fn write_bundle(&self, anchors: &[&pki::TestCa]) {
        let pem: String = anchors.iter().map(|a| a.pem()).collect();
        self.write_bundle_text(&pem);
    }

    pub fn write_bundle_text(&self, text: &str) {
        let tmp = self.dir.join("ca-bundle.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.bundle).unwrap();
    }

    pub fn write_token(&self, token: &str) {
        let tmp = self.dir.join("token.tmp");
        std::fs::write(&tmp, token).unwrap();
        std::fs::rename(&tmp, &self.token).unwrap();
    }

    /// The proxy flags of identity `name` certified by the service at `service`.
    pub fn args(&self, name: &str, service: SocketAddr) -> Vec<String> {
        vec![
            "--identity-name".into(),
            name.into(),
            "--identity-addr".into(),
            service.to_string(),
            "--identity-token-file".into(),
            self.token.display().to_string(),
            "--trust-bundle-file".into(),
            self.bundle.display().to_string(),
        ]
    }
}

/// A service whose endpoints must prove identities.
pub fn meshed_service_json(
    name: &str,
    authority: &str,
    endpoints: &[(SocketAddr, &str)],
) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|(addr, identity)| format!(r#"{{"addr":"{addr}","identity":"{identity}"}}"#))
        .collect();
    format!(
        r#"{{"name":"{name}","authorities":["{authority}"],"endpoints":[{}]}}"#,
        eps.join(",")
    )
}

/// The sum of the samples of `name` whose labels include all of `labels`.
pub fn sample_sum(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
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

impl ProxyProcess {
    /// Starts a proxy with extra arguments given as owned strings.
    pub async fn start_with(config: &str, args: &[String]) -> ProxyProcess {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start(config, &args).await
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.admin_get("/ready").await;
            if status == StatusCode::OK {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proxy not ready after {timeout:?}: {body}; logs: {:?}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the sum of `name{labels}` reaches `at_least`; returns it.
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.metrics().await;
            let value = sample_sum(&text, name, labels);
            if value >= at_least {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} stayed at {value} < {at_least} for {timeout:?}:\n{text}\nlogs: {:?}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

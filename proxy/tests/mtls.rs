//! mTLS between proxies with real TLS handshakes: proxies certified by a test identity service
//! that speaks the wire protocol (their keys never leave them), peers and clients made directly
//! with rustls that observe the TLS version and the certificates the proxies present.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::identity_service::IdentityService;
use support::pki::TestCa;
use support::tls::{TlsPeer, client_config, connect, h2_get};
use support::*;

const LEAF_LIFETIME: Duration = Duration::from_secs(3600);
const READY: Duration = Duration::from_secs(20);

/// A test mesh: one anchor, one issuer, an identity service.
struct Mesh {
    anchor: TestCa,
    issuer: Arc<TestCa>,
    service: IdentityService,
}

impl Mesh {
    async fn start() -> Self {
        let anchor = TestCa::anchor("test anchor");
        let issuer = Arc::new(anchor.issuer("test issuer"));
        let service = IdentityService::start(issuer.clone(), TRUST_DOMAIN, LEAF_LIFETIME).await;
        Self {
            anchor,
            issuer,
            service,
        }
    }

    /// A proxy with identity `sa`, its inbound side forwarding to `app`.
    async fn server_proxy(
        &self,
        sa: &str,
        app: std::net::SocketAddr,
        extra: &[&str],
    ) -> ProxyProcess {
        let files = IdentityFiles::new(&format!("token-{sa}"), &[&self.anchor]);
        let mut args = files.args(&identity(sa), self.service.addr);
        args.extend(["--inbound-app".to_string(), app.to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let proxy = ProxyProcess::start_with(&config_json(&[]), &args).await;
        std::mem::forget(files);
        proxy
    }

    /// A proxy with identity `sa` and the given outbound configuration, no inbound side.
    async fn client_proxy(&self, sa: &str, config: &str) -> (ProxyProcess, IdentityFiles) {
        let files = IdentityFiles::new(&format!("token-{sa}"), &[&self.anchor]);
        let mut args = files.args(&identity(sa), self.service.addr);
        args.extend(["--inbound".to_string(), "off".to_string()]);
        (ProxyProcess::start_with(config, &args).await, files)
    }
}

#[tokio::test]
async fn a_request_crosses_two_proxies_over_mtls_with_tls13_and_the_expected_sans() {
    let mesh = Mesh::start().await;
    let app = Backend::start("app").await;
    let server = mesh.server_proxy("server", app.addr, &[]).await;
    let server_inbound = server.inbound.unwrap();
    // An endpoint made by the test: it records the certificate the client proxy presents.
    let peer_leaf = mesh.issuer.leaf(&identity("peer"), LEAF_LIFETIME);
    let peer = TlsPeer::start("peer", &peer_leaf, &[&mesh.anchor]).await;
    let config = config_json(&[
        meshed_service_json(
            "web",
            "web.shop:80",
            &[(server_inbound, &identity("server"))],
        ),
        meshed_service_json("peer", "peer.shop:80", &[(peer.addr, &identity("peer"))]),
    ]);
    let (client, _files) = mesh.client_proxy("client", &config).await;
    client.wait_ready(READY).await;
    server.wait_ready(READY).await;

    // HTTP/2 (ALPN h2) and HTTP/1.1 (ALPN http/1.1) through both proxies.
    let mut h2 = h2_client(client.outbound).await;
    let (status, _, body) = h2_request(&mut h2, get("web.shop:80", "/")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"app"[..]));
    let (status, body) = http1_request(client.outbound, get("web.shop:80", "/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "app"));

    // What each proxy proved about the other (peer_id comes from the verified certificate).
    client
        .wait_metric(
            "tls_handshake_total",
            &[
                ("direction", "outbound"),
                ("peer_id", &identity("server")),
                ("tls_version", "TLSv1_3"),
            ],
            2.0,
            READY,
        )
        .await;
    server
        .wait_metric(
            "tls_handshake_total",
            &[
                ("direction", "inbound"),
                ("peer_id", &identity("client")),
                ("tls_version", "TLSv1_3"),
            ],
            2.0,
            READY,
        )
        .await;
    let client_metrics = client.metrics().await;
    assert_eq!(
        sample_sum(
            &client_metrics,
            "request_total",
            &[("tls", "true"), ("server_id", &identity("server"))]
        ),
        2.0,
        "{client_metrics}"
    );
    let server_metrics = server.metrics().await;
    assert_eq!(
        sample_sum(
            &server_metrics,
            "request_total",
            &[
                ("direction", "inbound"),
                ("tls", "true"),
                ("client_id", &identity("client"))
            ]
        ),
        2.0,
        "{server_metrics}"
    );

    // The server side, seen by an independent rustls client with its own certificate: TLS 1.3,
    // the server's identity as SAN, a chain that verifies against the anchor.
    let visitor = mesh.issuer.leaf(&identity("visitor"), LEAF_LIFETIME);
    let (stream, seen) = connect(
        server_inbound,
        client_config(Some(&visitor), &[&mesh.anchor], &[b"h2"]),
        &identity("server"),
    )
    .await
    .expect("handshake with the server proxy");
    assert_eq!(seen.version, "TLSv1_3");
    assert_eq!(seen.peer_name, identity("server"));
    assert_eq!(seen.peer_chain_len, 2, "leaf and issuer");
    assert_eq!(seen.alpn.as_deref(), Some("h2"));
    assert_eq!(h2_get(stream, "web.shop").await, Ok((200, "app".into())));

    // The client side, seen by an independent rustls server: TLS 1.3, the client's identity.
    let (status, _, body) = h2_request(&mut h2, get("peer.shop:80", "/")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"peer"[..]));
    let sessions = peer.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].version, "TLSv1_3");
    assert_eq!(sessions[0].peer_name, identity("client"));
    assert_eq!(sessions[0].alpn.as_deref(), Some("h2"));
}

#[tokio::test]
async fn outbound_refuses_peers_from_another_anchor_expired_or_naming_another_identity() {
    let mesh = Mesh::start().await;
    let other_anchor = TestCa::anchor("another anchor");
    let other_issuer = other_anchor.issuer("another issuer");
    let now = std::time::SystemTime::now();
    let expected = identity("db");
    let peers = [
        (
            "foreign",
            other_issuer.leaf(&expected, LEAF_LIFETIME),
            "UnknownIssuer",
        ),
        (
            "expired",
            mesh.issuer.leaf_between(
                &expected,
                now - Duration::from_secs(7200),
                now - Duration::from_secs(3600),
            ),
            "Expired",
        ),
        (
            "impostor",
            mesh.issuer.leaf(&identity("cache"), LEAF_LIFETIME),
            "IdentityMismatch",
        ),
    ];
    let mut started = Vec::new();
    let mut services = Vec::new();
    for (name, leaf, _) in &peers {
        let peer = TlsPeer::start(name, leaf, &[&mesh.anchor, &other_anchor]).await;
        services.push(meshed_service_json(
            name,
            &format!("{name}.shop:80"),
            &[(peer.addr, &expected)],
        ));
        started.push(peer);
    }
    let (client, _files) = mesh.client_proxy("client", &config_json(&services)).await;
    client.wait_ready(READY).await;
    let mut h2 = h2_client(client.outbound).await;
    for (name, _, reason) in &peers {
        let (status, headers, _) = h2_request(&mut h2, get(&format!("{name}.shop:80"), "/")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert_eq!(
            headers["weft-proxy-error"], "no endpoint could be reached",
            "{name}"
        );
        client
            .wait_metric(
                "tls_refused_total",
                &[("direction", "outbound"), ("reason", reason)],
                1.0,
                READY,
            )
            .await;
        assert!(
            client.log_contains(&format!("({reason})")),
            "no log line names {reason}: {:?}",
            client.logs()
        );
    }
    for peer in &started {
        assert!(peer.sessions().is_empty(), "no session may complete");
    }
    assert!(
        client.log_contains(&identity("cache")),
        "the mismatch log names what the peer presented: {:?}",
        client.logs()
    );
}

#[tokio::test]
async fn inbound_refuses_plaintext_foreign_expired_and_anonymous_clients() {
    let mesh = Mesh::start().await;
    let app = Backend::start("app").await;
    let server = mesh.server_proxy("server", app.addr, &[]).await;
    server.wait_ready(READY).await;
    let inbound = server.inbound.unwrap();
    let name = identity("server");

    // Plaintext HTTP/2 to a strict port: the connection is closed, counted, logged.
    let stream = tokio::net::TcpStream::connect(inbound).await.unwrap();
    let refused = hyper::client::conn::http2::handshake::<_, _, TestBody>(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await;
    if let Ok((mut sender, conn)) = refused {
        tokio::spawn(conn);
        assert!(sender.send_request(get("web", "/")).await.is_err());
    }
    server
        .wait_metric(
            "tls_refused_total",
            &[("direction", "inbound"), ("reason", "Plaintext")],
            1.0,
            READY,
        )
        .await;
    assert!(
        server.log_contains("which requires mTLS"),
        "{:?}",
        server.logs()
    );

    let other_anchor = TestCa::anchor("another anchor");
    let now = std::time::SystemTime::now();
    let clients = [
        (
            Some(
                other_anchor
                    .issuer("another issuer")
                    .leaf(&identity("client"), LEAF_LIFETIME),
            ),
            "UnknownIssuer",
        ),
        (
            Some(mesh.issuer.leaf_between(
                &identity("client"),
                now - Duration::from_secs(7200),
                now - Duration::from_secs(3600),
            )),
            "Expired",
        ),
        (None, "NoClientCertificate"),
    ];
    for (leaf, reason) in &clients {
        let config = client_config(leaf.as_ref(), &[&mesh.anchor], &[b"h2"]);
        // TLS 1.3 judges the client's certificate after the client's side of the handshake: the
        // refusal shows on the first exchange.
        let outcome = match connect(inbound, config, &name).await {
            Ok((stream, _)) => h2_get(stream, "web").await,
            Err(e) => Err(e.to_string()),
        };
        assert!(outcome.is_err(), "{reason}: {outcome:?}");
        server
            .wait_metric(
                "tls_refused_total",
                &[("direction", "inbound"), ("reason", reason)],
                1.0,
                READY,
            )
            .await;
    }

    // A good client is still served.
    let good = mesh.issuer.leaf(&identity("client"), LEAF_LIFETIME);
    let (stream, _) = connect(
        inbound,
        client_config(Some(&good), &[&mesh.anchor], &[b"h2"]),
        &name,
    )
    .await
    .unwrap();
    assert_eq!(h2_get(stream, "web").await, Ok((200, "app".into())));
    assert_eq!(
        app.count(),
        1,
        "only the mTLS request reached the application"
    );
}

#[tokio::test]
async fn a_permissive_port_takes_plaintext_and_foreign_tls_passes_through() {
    let mesh = Mesh::start().await;
    let app = Backend::start("app").await;
    let server = mesh
        .server_proxy("server", app.addr, &["--inbound-permissive", "all"])
        .await;
    server.wait_ready(READY).await;
    let inbound = server.inbound.unwrap();
    let mut h2 = h2_client(inbound).await;
    let (status, _, body) = h2_request(&mut h2, get("web", "/")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"app"[..]));
    let metrics = server.metrics().await;
    assert_eq!(
        sample_sum(
            &metrics,
            "request_total",
            &[("direction", "inbound"), ("tls", "no_identity")]
        ),
        1.0,
        "{metrics}"
    );
    // mTLS still works on the same port.
    let good = mesh.issuer.leaf(&identity("client"), LEAF_LIFETIME);
    let (stream, seen) = connect(
        inbound,
        client_config(Some(&good), &[&mesh.anchor], &[b"h2"]),
        &identity("server"),
    )
    .await
    .unwrap();
    assert_eq!(seen.peer_name, identity("server"));
    assert_eq!(h2_get(stream, "web").await, Ok((200, "app".into())));
}

#[tokio::test]
async fn not_ready_until_certified_with_the_reason_then_refreshes_with_the_current_token() {
    let anchor = TestCa::anchor("test anchor");
    let issuer = Arc::new(anchor.issuer("test issuer"));
    // 14 s leaves: refreshed after 10 s (70 % is 9.8 s, clamped to the 10 s minimum).
    let service =
        IdentityService::start(issuer.clone(), TRUST_DOMAIN, Duration::from_secs(14)).await;
    service.state.refuse(Some((503, "NoIssuer")));
    let app = Backend::start("app").await;
    let files = IdentityFiles::new("token-1", &[&anchor]);
    let mut args = files.args(&identity("server"), service.addr);
    args.extend(["--inbound-app".to_string(), app.addr.to_string()]);
    let proxy = ProxyProcess::start_with(&config_json(&[]), &args).await;

    // Retried with the reason visible on /ready, in the metrics and in the log.
    proxy
        .wait_metric(
            "identity_cert_refresh_failures_total",
            &[("reason", "NoIssuer")],
            3.0,
            READY,
        )
        .await;
    let (status, body) = proxy.admin_get("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("NoIssuer"), "{body}");
    assert!(proxy.log_contains("not certified"), "{:?}", proxy.logs());
    // mTLS is refused while not certified.
    let client_leaf = issuer.leaf(&identity("client"), LEAF_LIFETIME);
    let attempt = connect(
        proxy.inbound.unwrap(),
        client_config(Some(&client_leaf), &[&anchor], &[b"h2"]),
        &identity("server"),
    )
    .await;
    assert!(attempt.is_err(), "no certificate to present yet");

    service.state.refuse(None);
    proxy.wait_ready(READY).await;
    let metrics = proxy.metrics().await;
    assert_eq!(
        sample_sum(&metrics, "identity_cert_refresh_count", &[]),
        1.0,
        "{metrics}"
    );
    let expiry = sample_sum(&metrics, "identity_cert_expiration_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now + 5.0..=now + 15.0).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    assert!(
        proxy.log_contains("next_refresh_in=10s"),
        "{:?}",
        proxy.logs()
    );

    // The token is read from its file at each call (the kubelet rotates it).
    files.write_token("token-2");
    proxy
        .wait_metric(
            "identity_cert_refresh_count",
            &[],
            2.0,
            Duration::from_secs(20),
        )
        .await;
    let tokens = service.state.tokens_seen.lock().unwrap().clone();
    assert_eq!(
        tokens.last().map(String::as_str),
        Some("token-2"),
        "{tokens:?}"
    );
    assert!(tokens.iter().all(|t| !t.contains("PRIVATE")));

    // A broken bundle file is ignored (logged); the last good bundle stays in use.
    files.write_bundle_text("-----BEGIN CERTIFICATE-----\ngarbage\n");
    let deadline = std::time::Instant::now() + READY;
    while !proxy.log_contains("keeping the last good bundle") {
        assert!(std::time::Instant::now() < deadline, "{:?}", proxy.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stream, _) = connect(
        proxy.inbound.unwrap(),
        client_config(Some(&client_leaf), &[&anchor], &[b"h2"]),
        &identity("server"),
    )
    .await
    .unwrap();
    assert_eq!(h2_get(stream, "web").await, Ok((200, "app".into())));
    let (status, _) = proxy.admin_get("/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!proxy.logs().iter().any(|l| l.contains("PRIVATE KEY")));
}

/// A load of HTTP/2 requests over one connection to a proxy's outbound side, until stopped.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<std::sync::atomic::AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(target: std::net::SocketAddr, authority: &str, concurrency: usize) -> Self {
        use std::sync::atomic::Ordering;
        let client = h2_client(target).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..concurrency)
            .map(|_| {
                let (mut client, stop, ok, failed) =
                    (client.clone(), stop.clone(), ok.clone(), failed.clone());
                let authority = authority.to_string();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match client.send_request(get(&authority, "/")).await {
                            Ok(response) if response.status() == StatusCode::OK => {
                                use http_body_util::BodyExt;
                                match response.into_body().collect().await {
                                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                                    Err(e) => {
                                        failed.lock().unwrap().push(format!("body: {e}"));
                                        0
                                    }
                                };
                            }
                            Ok(response) => failed
                                .lock()
                                .unwrap()
                                .push(format!("status {}", response.status())),
                            Err(e) => failed.lock().unwrap().push(format!("request: {e}")),
                        }
                        // Continuous, but leaves the shared machine some room.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(std::sync::atomic::Ordering::Relaxed), failed)
    }
}

async fn refreshes(proxy: &ProxyProcess) -> f64 {
    sample_sum(&proxy.metrics().await, "identity_cert_refresh_count", &[])
}

async fn wait_anchors(proxy: &ProxyProcess, anchors: f64) {
    let deadline = std::time::Instant::now() + READY;
    loop {
        let text = proxy.metrics().await;
        if sample_sum(&text, "identity_trust_anchors", &[]) == anchors {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn leaf_issuer_and_anchor_rotations_under_load_fail_nothing_and_keep_connections() {
    let old_anchor = TestCa::anchor("anchor 1");
    let issuer = Arc::new(old_anchor.issuer("issuer 1"));
    // 14 s leaves: every proxy refreshes every 10 s.
    let service =
        IdentityService::start(issuer.clone(), TRUST_DOMAIN, Duration::from_secs(14)).await;
    let app = Backend::start("app").await;
    let server_files = IdentityFiles::new("token-server", &[&old_anchor]);
    let mut args = server_files.args(&identity("server"), service.addr);
    args.extend(["--inbound-app".to_string(), app.addr.to_string()]);
    let server = ProxyProcess::start_with(&config_json(&[]), &args).await;
    let config = config_json(&[meshed_service_json(
        "web",
        "web.shop:80",
        &[(server.inbound.unwrap(), &identity("server"))],
    )]);
    let client_files = IdentityFiles::new("token-client", &[&old_anchor]);
    let mut args = client_files.args(&identity("client"), service.addr);
    args.extend(["--inbound".to_string(), "off".to_string()]);
    let client = ProxyProcess::start_with(&config, &args).await;
    client.wait_ready(READY).await;
    server.wait_ready(READY).await;

    let load = Load::start(client.outbound, "web.shop:80", 4).await;
    let proxies = [&client, &server];
    let wait_refresh = |after: [f64; 2]| async move {
        for (proxy, count) in proxies.iter().zip(after) {
            proxy
                .wait_metric(
                    "identity_cert_refresh_count",
                    &[],
                    count + 1.0,
                    Duration::from_secs(25),
                )
                .await;
        }
    };

    // 1. A leaf refresh.
    wait_refresh([1.0, 1.0]).await;
    // 2. An issuer rotation: new leaves come from the new issuer.
    service
        .state
        .set_issuer(Arc::new(old_anchor.issuer("issuer 2")));
    let before = [refreshes(&client).await, refreshes(&server).await];
    wait_refresh(before).await;
    // 3. An anchor rotation: bundle old+new, issuer from the new anchor, proxies refresh, bundle
    //    new only.
    let new_anchor = TestCa::anchor("anchor 2");
    client_files.write_bundle(&[&old_anchor, &new_anchor]);
    server_files.write_bundle(&[&old_anchor, &new_anchor]);
    wait_anchors(&client, 2.0).await;
    wait_anchors(&server, 2.0).await;
    service
        .state
        .set_issuer(Arc::new(new_anchor.issuer("issuer 3")));
    let before = [refreshes(&client).await, refreshes(&server).await];
    wait_refresh(before).await;
    client_files.write_bundle(&[&new_anchor]);
    server_files.write_bundle(&[&new_anchor]);
    wait_anchors(&client, 1.0).await;
    wait_anchors(&server, 1.0).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // load keeps running on the new bundle

    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(ok > 1000, "only {ok} requests");
    eprintln!("{ok} requests, none failed");

    // The connection between the proxies was never torn down.
    let client_metrics = client.metrics().await;
    assert_eq!(
        sample_sum(
            &client_metrics,
            "tcp_open_total",
            &[("peer", "dst"), ("server_id", &identity("server"))]
        ),
        1.0,
        "{client_metrics}"
    );
    assert_eq!(
        sample_sum(
            &server.metrics().await,
            "tls_handshake_total",
            &[("direction", "inbound")]
        ),
        1.0
    );

    // New handshakes use the new material: the server proves itself through the new anchor,
    // and a client certificate from the old anchor is refused.
    let new_issuer_leaf = new_anchor
        .issuer("visitor issuer")
        .leaf(&identity("visitor"), LEAF_LIFETIME);
    let (stream, seen) = connect(
        server.inbound.unwrap(),
        client_config(Some(&new_issuer_leaf), &[&new_anchor], &[b"h2"]),
        &identity("server"),
    )
    .await
    .expect("the server's certificate chains to the new anchor");
    assert_eq!(seen.peer_name, identity("server"));
    assert_eq!(h2_get(stream, "web").await, Ok((200, "app".into())));
    let old_leaf = old_anchor
        .issuer("old issuer")
        .leaf(&identity("visitor"), LEAF_LIFETIME);
    let refused = match connect(
        server.inbound.unwrap(),
        client_config(Some(&old_leaf), &[&new_anchor], &[b"h2"]),
        &identity("server"),
    )
    .await
    {
        Ok((stream, _)) => h2_get(stream, "web").await,
        Err(e) => Err(e.to_string()),
    };
    assert!(refused.is_err(), "{refused:?}");
    server
        .wait_metric(
            "tls_refused_total",
            &[("direction", "inbound"), ("reason", "UnknownIssuer")],
            1.0,
            READY,
        )
        .await;
}

#[tokio::test]
async fn alpn_tells_the_inbound_side_what_an_mtls_connection_carries() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mesh = Mesh::start().await;
    let app = Backend::start("app").await;
    let server = mesh.server_proxy("server", app.addr, &[]).await;
    server.wait_ready(READY).await;
    let leaf = mesh.issuer.leaf(&identity("client"), LEAF_LIFETIME);
    let request = b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n";
    // `http/1.1`: served as HTTP/1.1; `weft.dev/opaque`: forwarded as bytes (the application
    // answers them); no ALPN: the protocol is detected inside the TLS session.
    for alpn in [&b"http/1.1"[..], b"weft.dev/opaque", b""] {
        let protocols: Vec<&[u8]> = if alpn.is_empty() { vec![] } else { vec![alpn] };
        let (mut stream, seen) = connect(
            server.inbound.unwrap(),
            client_config(Some(&leaf), &[&mesh.anchor], &protocols),
            &identity("server"),
        )
        .await
        .unwrap();
        assert_eq!(
            seen.alpn.as_deref().map(str::as_bytes),
            (!alpn.is_empty()).then_some(alpn)
        );
        stream.write_all(request).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok();
        assert!(
            response.starts_with("HTTP/1.1 200") && response.ends_with("app"),
            "ALPN {:?}: {response}",
            String::from_utf8_lossy(alpn)
        );
    }
    assert_eq!(app.count(), 3);
}

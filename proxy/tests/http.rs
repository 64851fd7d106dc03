//! Forwarding over HTTP/1.1 and h2c, outbound and inbound, with real servers and clients.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::*;

const AUTHORITY: &str = "web.test:8080";

async fn proxy_to(backends: &[&Backend], extra: &[&str]) -> ProxyProcess {
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    ProxyProcess::start(
        &config_json(&[service_json("web", &[AUTHORITY], &addrs)]),
        extra,
    )
    .await
}

#[tokio::test]
async fn h2c_requests_reach_the_backend_over_one_multiplexed_connection() {
    let backend = Backend::start("b1").await;
    let proxy = proxy_to(&[&backend], &[]).await;
    let mut client = h2_client(proxy.outbound).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            h2_request(&mut c, get(AUTHORITY, "/")).await
        }));
    }
    for task in tasks {
        let (status, headers, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-backend"], "b1");
        assert_eq!(body, "b1");
    }
    let (status, _, _) = h2_request(&mut client, get(AUTHORITY, "/status/503")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backend.count(), 51);
    // 50 concurrent requests, one connection to the endpoint.
    assert!(
        proxy
            .metrics()
            .await
            .lines()
            .any(|l| l.starts_with("tcp_open_total{")
                && l.contains(r#"peer="dst""#)
                && l.ends_with(" 1")),
        "expected exactly one endpoint connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_serve_h2c_and_http1_under_load() {
    let backends = [Backend::start("b1").await, Backend::start("b2").await];
    let proxy = proxy_to(&[&backends[0], &backends[1]], &["--workers", "2"]).await;
    let outbound = proxy.outbound;
    let result = tokio::task::spawn_blocking(move || {
        h2load(outbound, AUTHORITY, &["-n", "20000", "-c", "4", "-m", "16"])
    })
    .await
    .unwrap();
    assert_eq!(result.succeeded, 20_000, "{}", result.output);
    let result = tokio::task::spawn_blocking(move || {
        h2load(outbound, AUTHORITY, &["-n", "2000", "-c", "8", "--h1"])
    })
    .await
    .unwrap();
    assert_eq!(result.succeeded, 2_000, "{}", result.output);
    assert_eq!(backends[0].count() + backends[1].count(), 22_000);
    assert!(backends.iter().all(|b| b.count() > 5_000));
}

#[tokio::test]
async fn http1_requests_reach_the_backend_by_host_header() {
    let backend = Backend::start("b1").await;
    let proxy = proxy_to(&[&backend], &[]).await;
    for _ in 0..3 {
        let req = Request::get("/hello")
            .header("host", AUTHORITY)
            .body(full(""))
            .unwrap();
        let (status, body) = http1_request(proxy.outbound, req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "b1"));
    }
    // Keep-alive: many sequential requests on one client connection.
    let stream = tokio::net::TcpStream::connect(proxy.outbound)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, TestBody>(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..20 {
        sender.ready().await.unwrap();
        let req = Request::get("/")
            .header("host", "WEB.test:8080")
            .body(full(""))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(backend.count(), 23);
}

#[tokio::test]
async fn ten_megabyte_bodies_stream_both_ways_over_h2c_and_http1() {
    let backend = Backend::start("b1").await;
    let proxy = proxy_to(&[&backend], &[]).await;
    let payload: Bytes = (0..10 * 1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();

    let mut client = h2_client(proxy.outbound).await;
    let req = Request::post(format!("http://{AUTHORITY}/echo"))
        .body(full(payload.clone()))
        .unwrap();
    let (status, _, body) = h2_request(&mut client, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == payload, "h2c echo differs (len {})", body.len());

    let req = Request::post("/echo")
        .header("host", AUTHORITY)
        .body(full(payload.clone()))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(proxy.outbound)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        body == payload,
        "HTTP/1.1 echo differs (len {})",
        body.len()
    );
}

#[tokio::test]
async fn unknown_authority_gets_a_clean_404() {
    let backend = Backend::start("b1").await;
    let proxy = proxy_to(&[&backend], &[]).await;
    let mut client = h2_client(proxy.outbound).await;
    let (status, headers, _) = h2_request(&mut client, get("nobody.test:80", "/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.contains_key("weft-proxy-error"));
    // The connection still works for known authorities.
    let (status, _, _) = h2_request(&mut client, get(AUTHORITY, "/")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn inbound_forwards_h2c_http1_and_opaque_bytes_to_the_local_app() {
    let app = Backend::start("app").await;
    let proxy =
        ProxyProcess::start(&config_json(&[]), &["--inbound-app", &app.addr.to_string()]).await;
    let inbound = proxy.inbound.unwrap();
    let client = h2_client(inbound).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            h2_request(&mut c, get("anything", "/")).await
        }));
    }
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"app"[..]));
    }
    let metrics = proxy.metrics().await;
    let app_conns: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tcp_open_total{")
                && l.contains(r#"direction="inbound""#)
                && l.contains(r#"peer="dst""#)
        })
        .collect();
    assert_eq!(app_conns.len(), 1, "{metrics}");
    assert!(
        app_conns[0].ends_with(" 1"),
        "HTTP/2 to the app is multiplexed: {}",
        app_conns[0]
    );
    let (status, body) = http1_request(
        inbound,
        Request::get("/")
            .header("host", "x")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "app"));

    // Not HTTP: forwarded as bytes to an opaque app.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let opaque = ProxyProcess::start(
        &config_json(&[]),
        &[
            "--inbound-app",
            &echo_addr.to_string(),
            "--detect-timeout",
            "300ms",
        ],
    )
    .await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(opaque.inbound.unwrap())
        .await
        .unwrap();
    conn.write_all(b"\x00\x01binary protocol\n").await.unwrap();
    let mut buf = [0u8; 18];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"\x00\x01binary protocol\n");
}

/// A server-speaks-first application (MySQL, PostgreSQL, Redis, SMTP...) behind the inbound port:
/// on an opaque port the proxy connects it at once, so its greeting reaches the client instead of
/// waiting out the detection timeout for a first byte the client will never send.
#[tokio::test]
async fn a_server_speaks_first_app_on_an_opaque_port_greets_without_waiting_for_detection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let greeter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let greeter_addr = greeter.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = greeter.accept().await {
            tokio::spawn(async move {
                s.write_all(b"220 ready\r\n").await.unwrap();
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let start = |opaque_ports: String| {
        let args = [
            "--inbound-app".to_string(),
            greeter_addr.to_string(),
            "--detect-timeout".to_string(),
            "60s".to_string(),
            "--opaque-ports".to_string(),
            opaque_ports,
        ];
        async move { ProxyProcess::start_with(&config_json(&[]), &args).await }
    };

    let opaque = start(greeter_addr.port().to_string()).await;
    let mut conn = tokio::net::TcpStream::connect(opaque.inbound.unwrap())
        .await
        .unwrap();
    let mut greeting = [0u8; 11];
    // Far below the 60 s detection timeout: only skipping detection can meet it.
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut greeting))
        .await
        .expect("the greeting arrives without waiting for detection")
        .unwrap();
    assert_eq!(&greeting, b"220 ready\r\n");
    conn.write_all(b"QUIT\r\n").await.unwrap();
    let mut echoed = [0u8; 6];
    conn.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"QUIT\r\n");

    // The control: with the port not opaque, the proxy is still waiting for the client.
    let detected = start("none".to_string()).await;
    let mut conn = tokio::net::TcpStream::connect(detected.inbound.unwrap())
        .await
        .unwrap();
    let held = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut greeting)).await;
    assert!(held.is_err(), "the proxy forwarded before detecting");
}

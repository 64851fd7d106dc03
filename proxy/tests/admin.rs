//! Admin server: metrics equal what was sent, readiness, and shutdown (admin and SIGTERM).

mod support;

use std::time::Duration;

use http::{Request, StatusCode};
use support::*;

const AUTHORITY: &str = "web.test:8080";

/// The value of the one series whose line contains every needle.
fn value(metrics: &str, name: &str, needles: &[&str]) -> f64 {
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && needles.iter().all(|n| l.contains(n)))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{name} {needles:?} matched {lines:?} in\n{metrics}"
    );
    lines[0].rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_requests_sent_by_classification() {
    let backend = Backend::start("b1").await;
    let proxy = ProxyProcess::start(
        &config_json(&[service_json("web", &[AUTHORITY], &[backend.addr])]),
        &[],
    )
    .await;
    let mut client = h2_client(proxy.outbound).await;
    let grpc = |code: u32| {
        Request::post(format!("http://{AUTHORITY}/grpc/{code}"))
            .header("content-type", "application/grpc")
            .body(full(""))
            .unwrap()
    };
    for _ in 0..20 {
        h2_request(&mut client, get(AUTHORITY, "/")).await;
    }
    for _ in 0..5 {
        h2_request(&mut client, get(AUTHORITY, "/status/503")).await;
    }
    for _ in 0..3 {
        h2_request(&mut client, get(AUTHORITY, "/status/404")).await;
    }
    for _ in 0..4 {
        h2_request(&mut client, grpc(0)).await;
    }
    for _ in 0..2 {
        h2_request(&mut client, grpc(14)).await;
    }
    for _ in 0..6 {
        let req = Request::get("/")
            .header("host", AUTHORITY)
            .body(full(""))
            .unwrap();
        http1_request(proxy.outbound, req).await;
    }
    let m = proxy.metrics().await;
    let ep = [
        r#"direction="outbound""#,
        r#"authority="web.test:8080""#,
        r#"dst_service="web""#,
        r#"dst_pod="web-0""#,
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        ep.iter().copied().chain(extra.iter().copied()).collect()
    };
    assert_eq!(value(&m, "request_total", &ep), 40.0);
    let success = r#"classification="success""#;
    let failure = r#"classification="failure""#;
    assert_eq!(
        value(
            &m,
            "response_total",
            &with(&[success, r#"status_code="200""#, r#"grpc_status_code="""#])
        ),
        26.0
    );
    assert_eq!(
        value(
            &m,
            "response_total",
            &with(&[failure, r#"status_code="503""#])
        ),
        5.0
    );
    assert_eq!(
        value(
            &m,
            "response_total",
            &with(&[success, r#"status_code="404""#])
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "response_total",
            &with(&[success, r#"grpc_status_code="0""#])
        ),
        4.0
    );
    assert_eq!(
        value(
            &m,
            "response_total",
            &with(&[failure, r#"grpc_status_code="14""#])
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "response_latency_ms_count",
            &with(&[r#"status_code="200""#])
        ),
        32.0
    );
    assert_eq!(
        value(
            &m,
            "response_latency_ms_bucket",
            &with(&[r#"status_code="200""#, r#"le="+Inf""#])
        ),
        32.0
    );
    // One h2 client connection and six HTTP/1.1 ones were accepted; one h2 and some HTTP/1.1 opened.
    assert_eq!(
        value(
            &m,
            "tcp_open_total",
            &[r#"direction="outbound""#, r#"peer="src""#]
        ),
        7.0
    );
    assert!(
        value(
            &m,
            "tcp_read_bytes_total",
            &[r#"direction="outbound""#, r#"peer="src""#]
        ) > 0.0
    );
    assert!(value(&m, "tcp_write_bytes_total", &with(&[r#"peer="dst""#])) > 0.0);
    assert!(value(&m, "tcp_open_connections", &with(&[r#"peer="dst""#])) >= 1.0);
}

#[tokio::test]
async fn ready_live_and_admin_shutdown() {
    let mut proxy = ProxyProcess::start(&config_json(&[]), &[]).await;
    assert_eq!(
        proxy.admin_get("/ready").await,
        (StatusCode::OK, "ready\n".into())
    );
    assert_eq!(
        proxy.admin_get("/live").await,
        (StatusCode::OK, "live\n".into())
    );
    assert_eq!(
        proxy.admin_get("/shutdown").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let req = Request::post("/shutdown")
        .header("host", "admin")
        .body(full(""))
        .unwrap();
    assert_eq!(http1_request(proxy.admin, req).await.0, StatusCode::OK);
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_serving_new_requests_until_the_application_is_gone() {
    let backend = Backend::start("b1").await;
    let app = Backend::start("app").await;
    let mut proxy = ProxyProcess::start(
        &config_json(&[service_json("web", &[AUTHORITY], &[backend.addr])]),
        &[
            "--inbound-app",
            &app.addr.to_string(),
            "--shutdown-grace",
            "60s",
        ],
    )
    .await;
    let mut before = h2_client(proxy.outbound).await;
    proxy.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.admin_get("/ready").await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            std::time::Instant::now() < deadline,
            "still ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Existing and new outbound connections, and inbound, are all still served.
    assert_eq!(
        h2_request(&mut before, get(AUTHORITY, "/")).await.0,
        StatusCode::OK
    );
    let mut after = h2_client(proxy.outbound).await;
    assert_eq!(
        h2_request(&mut after, get(AUTHORITY, "/")).await.0,
        StatusCode::OK
    );
    let req = Request::get("/")
        .header("host", AUTHORITY)
        .body(full(""))
        .unwrap();
    assert_eq!(http1_request(proxy.outbound, req).await.0, StatusCode::OK);
    let mut inbound = h2_client(proxy.inbound.unwrap()).await;
    let (status, _, body) = h2_request(&mut inbound, get("x", "/")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"app"[..]));
    assert!(proxy.is_running());
    // The application exits: the proxy follows, cleanly.
    app.kill().await;
    drop((before, after, inbound));
    assert_eq!(proxy.wait_exit(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn sigterm_without_a_known_application_exits_after_the_grace_period() {
    let backend = Backend::start("b1").await;
    let mut proxy = ProxyProcess::start(
        &config_json(&[service_json("web", &[AUTHORITY], &[backend.addr])]),
        &["--shutdown-grace", "1s"],
    )
    .await;
    let started = std::time::Instant::now();
    proxy.signal("TERM");
    let mut client = h2_client(proxy.outbound).await;
    assert_eq!(
        h2_request(&mut client, get(AUTHORITY, "/")).await.0,
        StatusCode::OK
    );
    drop(client);
    assert_eq!(proxy.wait_exit(Duration::from_secs(15)).await, Some(0));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

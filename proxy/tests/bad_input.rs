//! Bad input: the proxy answers or closes cleanly, and keeps serving everyone else.

mod support;

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AUTHORITY: &str = "web.test:8080";

async fn proxy(backend: &Backend) -> ProxyProcess {
    ProxyProcess::start(
        &config_json(&[service_json("web", &[AUTHORITY], &[backend.addr])]),
        &["--detect-timeout", "1s"],
    )
    .await
}

/// Reads until the proxy closes the connection; returns what it sent. Panics if it stays open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

async fn still_serves(proxy: &ProxyProcess) {
    let mut client = h2_client(proxy.outbound).await;
    assert_eq!(
        h2_request(&mut client, get(AUTHORITY, "/")).await.0,
        StatusCode::OK
    );
    let req = Request::get("/")
        .header("host", AUTHORITY)
        .body(full(""))
        .unwrap();
    assert_eq!(http1_request(proxy.outbound, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn garbage_bytes_are_closed() {
    let backend = Backend::start("b1").await;
    let proxy = proxy(&backend).await;
    let mut garbage = TcpStream::connect(proxy.outbound).await.unwrap();
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    garbage.write_all(&junk).await.unwrap();
    read_until_closed(&mut garbage, Duration::from_secs(5)).await;
    still_serves(&proxy).await;
}

#[tokio::test]
async fn an_h2_preface_followed_by_junk_gets_a_goaway() {
    let backend = Backend::start("b1").await;
    let proxy = proxy(&backend).await;
    let mut conn = TcpStream::connect(proxy.outbound).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&[0xff; 64]).await.unwrap();
    let answer = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    // Walk the frames the server sent: one must be GOAWAY (type 0x7), saying why it closes.
    let mut frame_types = Vec::new();
    let mut rest = &answer[..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        frame_types.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(
        frame_types.contains(&0x7),
        "no GOAWAY among frames {frame_types:?}"
    );
    still_serves(&proxy).await;
}

#[tokio::test]
async fn a_one_megabyte_header_is_refused() {
    let backend = Backend::start("b1").await;
    let proxy = proxy(&backend).await;
    let huge = "x".repeat(1024 * 1024);

    // HTTP/1.1: 431 (or a close), never a crash.
    let mut conn = TcpStream::connect(proxy.outbound).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {AUTHORITY}\r\nX-Huge: {huge}\r\n\r\n");
    let _ = conn.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );

    // HTTP/2: the stream or connection is refused; the client sees an error or a 431.
    let mut client = h2_client(proxy.outbound).await;
    let req = Request::get(format!("http://{AUTHORITY}/"))
        .header("x-huge", huge)
        .body(full(""))
        .unwrap();
    match client.send_request(req).await {
        Ok(response) => assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ),
        Err(error) => eprintln!("h2 client error, as expected: {error}"),
    }
    assert_eq!(backend.count(), 0);
    still_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_without_starving_others() {
    let backend = Backend::start("b1").await;
    let proxy = proxy(&backend).await;
    let mut lorises = Vec::new();
    for i in 0..20 {
        let mut conn = TcpStream::connect(proxy.outbound).await.unwrap();
        // Half stall during detection, half after the request line, inside the headers.
        let start: &[u8] = if i % 2 == 0 {
            b"GE"
        } else {
            b"GET / HTTP/1.1\r\nHost: web.test:8080\r\nX-Slow: "
        };
        conn.write_all(start).await.unwrap();
        lorises.push(conn);
    }
    let started = Instant::now();
    // Meanwhile, others are served.
    still_serves(&proxy).await;
    for conn in &mut lorises {
        // Trickle one byte, which a naive timeout would count as progress.
        let _ = conn.write_all(b"a").await;
    }
    for mut conn in lorises {
        read_until_closed(&mut conn, Duration::from_secs(5)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(backend.count(), 2);
    still_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_file_keeps_the_last_good_configuration() {
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let proxy = proxy(&b1).await;
    write_config(
        &proxy.config_path,
        r#"{"services": [ {"name": "web", "authorities": ["#,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log_contains("ignoring invalid configuration file") {
        assert!(Instant::now() < deadline, "{:?}", proxy.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = proxy
        .logs()
        .into_iter()
        .find(|l| l.contains("ignoring invalid configuration file"))
        .unwrap();
    assert!(
        line.contains("invalid JSON") && line.contains("line 1"),
        "the log says why: {line}"
    );
    still_serves(&proxy).await;

    // A semantically invalid one is refused too.
    write_config(
        &proxy.config_path,
        &config_json(&[
            service_json("a", &["x:1"], &[b1.addr]),
            service_json("b", &["X:1"], &[b2.addr]),
        ]),
    );
    eventually(
        "the duplicate authority is reported",
        Duration::from_secs(10),
        || proxy.log_contains("claimed by both"),
    )
    .await;
    still_serves(&proxy).await;

    // And the watcher still applies the next good one.
    write_config(
        &proxy.config_path,
        &config_json(&[service_json("web", &[AUTHORITY], &[b2.addr])]),
    );
    let mut client = h2_client(proxy.outbound).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers, _) = h2_request(&mut client, get(AUTHORITY, "/")).await;
        assert_eq!(status, StatusCode::OK);
        if headers["x-backend"] == "b2" {
            break;
        }
        assert!(Instant::now() < deadline, "new configuration never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

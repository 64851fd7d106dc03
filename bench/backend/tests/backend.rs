//! The backend and the gRPC check client against each other, as real processes over loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// A backend process on an ephemeral port, killed when dropped.
struct Backend {
    child: Child,
    addr: String,
}

impl Backend {
    fn start(extra: &[&str]) -> Backend {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft-bench-backend"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start weft-bench-backend");
        // The first line, printed once the socket is bound, is our readiness signal.
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_string();
        Backend { child, addr }
    }

    /// A plain HTTP/1.1 request; returns the response body.
    fn http1(&self, method: &str, path: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
        assert!(head.starts_with("HTTP/1.1 "), "{head}");
        body.to_string()
    }

    fn count(&self) -> u64 {
        self.http1("GET", "/__count", "")
            .trim()
            .parse()
            .expect("a number")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn grpc_check(url: &str, calls: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft-bench-grpc-check"))
        .args([url, calls])
        .output()
        .expect("run weft-bench-grpc-check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn grpc_calls_get_trailers_and_are_counted() {
    let backend = Backend::start(&[]);
    assert_eq!(backend.count(), 0);
    let (ok, said) = grpc_check(
        &format!("http://{}/weft.bench.Echo/Ping", backend.addr),
        "5",
    );
    assert!(ok, "grpc check failed: {said}");
    assert_eq!(said, "ok");
    assert_eq!(
        backend.count(),
        5,
        "every call counted, /__count itself not"
    );
}

#[test]
fn plain_http1_requests_get_a_small_body() {
    let backend = Backend::start(&[]);
    assert_eq!(backend.http1("GET", "/anything", ""), "ok\n");
    assert_eq!(backend.http1("POST", "/x", "some body"), "ok\n");
    assert_eq!(backend.count(), 2);
}

#[test]
fn delay_can_be_changed_and_bad_values_are_refused() {
    let backend = Backend::start(&["--delay-ms", "0"]);
    assert_eq!(backend.http1("PUT", "/__delay_ms", "30"), "30\n");
    let started = std::time::Instant::now();
    backend.http1("GET", "/", "");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(30),
        "the delay applies"
    );
    assert!(
        backend
            .http1("PUT", "/__delay_ms", "soon")
            .contains("whole number")
    );
    assert_eq!(backend.http1("PUT", "/__delay_ms", "0"), "0\n");
}

#[test]
fn grpc_check_reports_an_unreachable_peer() {
    // Bind then drop a listener: its port is very likely free, so nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, said) = grpc_check(&format!("http://127.0.0.1:{port}/x"), "1");
    assert!(!ok);
    assert!(said.contains("cannot connect"), "{said}");
}
